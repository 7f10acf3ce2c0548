"""A user's own account at ``/auth``: ``POST /auth/password`` (registration's rules,
the current password asked again and throttled, every other session ended at once, this
one renewed), ``GET /auth/sessions`` and ``DELETE /auth/sessions/{id}`` (README,
"Logging in users")."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import pytest

from authority.accounts.passwords import hash_password
from authority.accounts.users import find_user
from authority.sessions.lifecycle import PasswordStale, change_own_password
from authority.storage.tables import RefreshFamily
from tests.helpers.world import PASSWORD, World, WorldConfig, csrf

pytestmark = pytest.mark.asyncio(loop_scope="module")
ACCOUNT_LIMIT = 3
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(
        settings={"login_max_failures_account": ACCOUNT_LIMIT, "login_max_failures_address": 1000}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def change(
    client: httpx.AsyncClient, current: str, new: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        "/auth/password",
        json={"current_password": current, "new_password": new},
        headers=headers,
    )


async def login_works(world: World, name: str, password: str, address: str = "203.0.113.7") -> bool:
    response = await world.browser(address).post(
        "/auth/login", json={"username": name, "password": password, "delivery": "body"}
    )
    return response.status_code == 200


async def revoked(world: World, family_id: str) -> bool:
    row = await world.db.read(
        lambda conn: conn.execute(
            RefreshFamily.__table__.select().where(RefreshFamily.id == family_id)
        ).one()
    )
    return row.revoked_at is not None


# --- POST /auth/password ------------------------------------------------------------------


async def test_a_password_change_keeps_this_session_and_ends_every_other_at_once(
    world: World,
) -> None:
    name, _ = await world.new_user()
    this = await world.body_login(name)
    other = await world.body_login(name)
    browser = await world.logged_in(name)
    assert (await browser.get("/auth/me")).status_code == 200

    response = await change(world.browser(), PASSWORD, NEW_PASSWORD, bearer(this["access"]))
    assert response.status_code == 200, response.text
    body = response.json()
    # Answered as a refresh in body mode: the new pair, at the top level and as tokens.
    assert body["tokens"]["access"] == body["access"]
    assert body["refresh"] != this["refresh"]
    assert world.decode(body["access"])["sid"] == world.decode(this["access"])["sid"]

    # The other sessions' access tokens stop working at /auth at once, and so do their
    # refresh tokens; this session goes on.
    me = world.browser()
    assert (await me.get("/auth/me", headers=bearer(other["access"]))).status_code == 401
    assert (await browser.get("/auth/me")).status_code == 401
    assert (await me.get("/auth/me", headers=bearer(this["access"]))).status_code == 200
    assert (await me.get("/auth/me", headers=bearer(body["access"]))).status_code == 200
    gone = await world.browser().post("/auth/refresh", json={"refresh": other["refresh"]})
    assert gone.status_code == 401
    goes_on = await world.browser().post("/auth/refresh", json={"refresh": body["refresh"]})
    assert goes_on.status_code == 200, goes_on.text

    assert await login_works(world, name, NEW_PASSWORD)
    assert not await login_works(world, name, PASSWORD)


async def test_in_cookie_mode_the_new_tokens_come_back_in_cookies(world: World) -> None:
    name, _ = await world.new_user()
    browser = await world.logged_in(name)
    old_refresh = browser.cookies["refresh_token"]
    response = await change(browser, PASSWORD, NEW_PASSWORD, csrf(browser))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"expires_in", "refresh_expires_in"}
    assert browser.cookies["refresh_token"] != old_refresh
    assert (await browser.get("/auth/me")).status_code == 200
    refreshed = await browser.post("/auth/refresh", headers=csrf(browser))
    assert refreshed.status_code == 200, refreshed.text


async def test_a_cookie_password_change_needs_the_csrf_token(world: World) -> None:
    name, _ = await world.new_user()
    browser = await world.logged_in(name)
    async with world.unchanged():
        response = await change(browser, PASSWORD, NEW_PASSWORD, {})
    assert (response.status_code, response.json()) == (
        403,
        {"detail": "CSRF token missing or incorrect"},
    )


async def test_a_password_change_needs_a_logged_in_user(world: World) -> None:
    async with world.unchanged():
        response = await change(world.browser(), PASSWORD, NEW_PASSWORD, {})
    assert (response.status_code, response.json()) == (401, {"detail": "not authenticated"})


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        ("password123", "this password is too common"),
        ("short", "a password needs at least 8 characters"),
        ("x" * 257, "a password has at most 256 characters"),
        ("        ", "a password cannot be only spaces"),
    ],
)
async def test_a_new_password_follows_the_rules_of_registration(
    world: World, new: str, reason: str
) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    async with world.unchanged():
        response = await change(world.browser(), PASSWORD, new, bearer(tokens["access"]))
    assert response.status_code == 400
    assert response.json() == {"detail": reason, "errors": {"new_password": reason}}


async def test_the_new_password_may_not_be_the_username(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    response = await change(world.browser(), PASSWORD, name, bearer(tokens["access"]))
    assert response.status_code == 400
    assert "new_password" in response.json()["errors"]


async def test_a_wrong_current_password_changes_nothing_and_is_throttled(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    other = await world.body_login(name)
    client = world.browser()
    for _ in range(ACCOUNT_LIMIT):
        wrong = await change(client, "not my password", NEW_PASSWORD, bearer(tokens["access"]))
        assert wrong.status_code == 400
        assert wrong.json()["errors"] == {"current_password": "the current password is wrong"}
    # Counted like failed logins: past the account's budget this address waits.
    throttled = await change(client, "not my password", NEW_PASSWORD, bearer(tokens["access"]))
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    me = await world.browser().get("/auth/me", headers=bearer(other["access"]))
    assert me.status_code == 200
    # The owner, from another address, logs in at once with the password unchanged.
    assert await login_works(world, name, PASSWORD, address="198.51.100.99")


async def test_a_password_confirmed_before_another_change_cannot_win_after_it(
    world: World,
) -> None:
    """Two changes from the same old password: the database decides, one wins."""
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    user = await world.db.read(find_user, name)
    assert user is not None
    sid = world.decode(tokens["access"])["sid"]
    first = await change(world.browser(), PASSWORD, NEW_PASSWORD, bearer(tokens["access"]))
    assert first.status_code == 200, first.text

    async with world.unchanged():
        with pytest.raises(PasswordStale):
            await world.db.write(
                change_own_password,
                user,
                hash_password("another new passphrase"),
                confirmed_hash=user.password_hash,
                session=sid,
                token_hash=b"t" * 32,
                now=time.time(),
                ttl=60,
            )
    assert await login_works(world, name, NEW_PASSWORD)


# --- GET /auth/sessions, DELETE /auth/sessions/{id} ---------------------------------------


async def sessions_of(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/auth/sessions", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["sessions"])


async def test_sessions_list_where_each_was_opened_and_which_is_this_one(world: World) -> None:
    name, _ = await world.new_user()
    phone = world.browser("198.51.100.20", **{"User-Agent": "phone-app/2.1"})
    login = await phone.post(
        "/auth/login", json={"username": name, "password": PASSWORD, "delivery": "body"}
    )
    phone_tokens = login.json()["tokens"]
    laptop = await world.logged_in(name)
    stranger = await world.logged_in()

    listed = await sessions_of(laptop, {})
    assert len(listed) == 2
    by_id = {s["id"]: s for s in listed}
    phone_sid = world.decode(phone_tokens["access"])["sid"]
    laptop_sid = world.decode(laptop.cookies["access_token"])["sid"]
    assert set(by_id) == {phone_sid, laptop_sid}
    assert by_id[phone_sid]["address"] == "198.51.100.20"
    assert by_id[phone_sid]["user_agent"] == "phone-app/2.1"
    assert by_id[phone_sid]["client_id"] == "authority-web"
    assert by_id[laptop_sid]["address"] == "203.0.113.7"
    assert [s["current"] for s in (by_id[phone_sid], by_id[laptop_sid])] == [False, True]
    assert stranger.cookies["access_token"] not in str(listed)

    # The last use is the newest refresh: it moves with a refresh, nothing else writes it.
    before = dt.datetime.fromisoformat(by_id[phone_sid]["last_used_at"])
    assert before == dt.datetime.fromisoformat(by_id[phone_sid]["created_at"])
    assert (await phone.post("/auth/refresh", json={"refresh": phone_tokens["refresh"]})).is_success
    again = {s["id"]: s for s in await sessions_of(laptop, {})}
    assert dt.datetime.fromisoformat(again[phone_sid]["last_used_at"]) > before
    assert again[phone_sid]["created_at"] == by_id[phone_sid]["created_at"]


async def test_sessions_need_a_logged_in_user(world: World) -> None:
    response = await world.browser().get("/auth/sessions")
    assert (response.status_code, response.json()) == (401, {"detail": "not authenticated"})


async def test_ending_another_session_stops_its_tokens_at_once(world: World) -> None:
    name, _ = await world.new_user()
    phone = await world.body_login(name)
    laptop = await world.logged_in(name)
    phone_sid = world.decode(phone["access"])["sid"]
    ended = await laptop.delete(f"/auth/sessions/{phone_sid}", headers=csrf(laptop))
    assert ended.status_code == 204, ended.text
    assert ended.content == b""
    assert await revoked(world, phone_sid)
    me = await world.browser().get("/auth/me", headers=bearer(phone["access"]))
    assert me.status_code == 401
    refresh = await world.browser().post("/auth/refresh", json={"refresh": phone["refresh"]})
    assert refresh.status_code == 401
    assert [s["current"] for s in await sessions_of(laptop, {})] == [True]
    assert (await laptop.get("/auth/me")).status_code == 200
    # Once ended, it is no session of the user's any more.
    again = await laptop.delete(f"/auth/sessions/{phone_sid}", headers=csrf(laptop))
    assert again.status_code == 404


async def test_ending_this_browsers_own_session_logs_it_out(world: World) -> None:
    browser = await world.logged_in()
    sid = world.decode(browser.cookies["access_token"])["sid"]
    ended = await browser.delete(f"/auth/sessions/{sid}", headers=csrf(browser))
    assert ended.status_code == 204
    assert "access_token" not in browser.cookies
    assert (await browser.get("/auth/me")).status_code == 401


@pytest.mark.parametrize("which", ["another user's", "unknown", "malformed", "nul", "huge"])
async def test_a_session_that_is_not_the_users_is_404_whatever_it_is(
    world: World, which: str
) -> None:
    victim = await world.body_login((await world.new_user())[0])
    attacker = await world.body_login((await world.new_user())[0])
    session_id = {
        "another user's": world.decode(victim["access"])["sid"],
        "unknown": "A" * 22,
        "malformed": "not a session!",
        "nul": "abc%00def",
        "huge": "x" * 5000,
    }[which]
    async with world.unchanged():
        response = await world.browser().delete(
            f"/auth/sessions/{session_id}", headers=bearer(attacker["access"])
        )
    assert (response.status_code, response.json()) == (404, {"detail": "no such session"})
    me = await world.browser().get("/auth/me", headers=bearer(victim["access"]))
    assert me.status_code == 200


async def test_ending_a_session_by_cookie_needs_the_csrf_token(world: World) -> None:
    browser = await world.logged_in()
    sid = world.decode(browser.cookies["access_token"])["sid"]
    async with world.unchanged():
        response = await browser.delete(f"/auth/sessions/{sid}")
    assert response.status_code == 403


# --- small ones ----------------------------------------------------------------------------


async def test_logout_all_without_any_credentials_is_401_not_a_csrf_refusal(
    world: World,
) -> None:
    async with world.unchanged():
        response = await world.browser().post("/auth/logout-all")
    assert (response.status_code, response.json()) == (401, {"detail": "not authenticated"})


async def test_an_unknown_field_answers_in_the_auth_error_shape(world: World) -> None:
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/login", json={"username": "x", "password": "y", "admin": True}
        )
    assert response.status_code == 400
    assert response.json() == {"detail": "malformed request: Object contains unknown field `admin`"}


async def test_a_mistyped_field_names_the_field(world: World) -> None:
    response = await world.browser().post("/auth/login", json={"username": 7, "password": "y"})
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"detail", "errors"}
    assert set(body["errors"]) == {"username"}


async def test_an_oversized_body_answers_in_the_auth_error_shape(world: World) -> None:
    async with world.unchanged():
        response = await world.browser().post(
            "/auth/register",
            json={"username": "x", "email": "x@example.org", "password": "p" * 20_000},
        )
    assert (response.status_code, response.json()) == (
        413,
        {"detail": "the body is over 16 KiB"},
    )
