"""Security events of users and sessions land in ``audit_events`` (README, "Audit
trail"): with their user, client, address and the request's id, stored in the
transaction of what they record, never with a secret; at ``/auth`` and at
``/oauth/token`` alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from authority.storage.tables import AuditEvent, RefreshFamily
from tests.helpers.world import PASSWORD, World, WorldConfig, csrf

pytestmark = pytest.mark.asyncio(loop_scope="module")
ADDRESS = "198.51.100.44"


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    return WorldConfig(
        settings={
            "login_max_failures_account": 2,
            "login_max_failures_address": 1000,
            "refresh_reuse_grace": 0,
        }
    )


async def events(world: World, **which: Any) -> list[dict[str, Any]]:
    """The matching rows of ``audit_events``, oldest first, read through the tests' own
    engine (not the app's), with ``detail`` decoded."""
    table = AuditEvent.__table__
    query = select(table).where(*(table.c[k] == v for k, v in which.items())).order_by(table.c.id)
    rows = await world.db.read(lambda conn: conn.execute(query).mappings().all())
    return [{**row, "detail": json.loads(row["detail"])} for row in rows]


async def user_id(world: World, name: str) -> int:
    from authority.accounts.users import find_user

    user = await world.db.read(find_user, name)
    assert user is not None
    return user.id


def without_secrets(event: dict[str, Any], *secrets: str) -> None:
    text = json.dumps(event)
    for secret in secrets:
        assert secret not in text


async def login(world: World, username: str, password: str, request_id: str) -> int:
    response = await world.browser(ADDRESS).post(
        "/auth/login",
        json={"username": username, "password": password, "delivery": "body"},
        headers={"X-Request-ID": request_id},
    )
    return response.status_code


async def test_logins_record_success_and_each_reason_of_failure_never_the_password(
    world: World,
) -> None:
    name, _ = await world.new_user()
    uid = await user_id(world, name)
    assert await login(world, name, PASSWORD, "req-ok-1") == 200
    assert await login(world, name, "wrong guess 1", "req-bad-1") == 401

    [ok] = await events(world, user_id=uid, type="login.succeeded")
    assert ok["username"] == name
    assert ok["client_id"] == "authority-web"
    assert (ok["address"], ok["request_id"]) == (ADDRESS, "req-ok-1")
    [bad] = await events(world, user_id=uid, type="login.failed")
    assert bad["detail"] == {"reason": "bad_password"}
    assert bad["request_id"] == "req-bad-1"
    without_secrets(bad, "wrong guess 1", PASSWORD)
    without_secrets(ok, PASSWORD)


async def test_a_login_at_an_unknown_user_is_recorded_without_what_was_typed(
    world: World,
) -> None:
    # What was typed as a name is often a password typed in the wrong field.
    assert await login(world, "Tr0ub4dor&3-typed-as-name", "x", "req-unknown") == 401
    [event] = [
        e for e in await events(world, type="login.failed") if e["request_id"] == "req-unknown"
    ]
    assert event["user_id"] is None
    assert event["username"] is None
    assert event["detail"] == {"reason": "unknown_user"}
    without_secrets(event, "Tr0ub4dor&3-typed-as-name")


async def test_a_login_of_a_disabled_user_is_recorded_as_inactive(world: World) -> None:
    from authority.accounts.users import set_active

    name, _ = await world.new_user()
    uid = await user_id(world, name)
    await world.db.write(set_active, uid, False)
    assert await login(world, name, PASSWORD, "req-inactive") == 401
    [event] = await events(world, user_id=uid, type="login.failed")
    assert event["detail"] == {"reason": "inactive"}


async def test_a_throttled_login_is_recorded(world: World) -> None:
    name, _ = await world.new_user()
    uid = await user_id(world, name)
    statuses = [await login(world, name, f"guess {i}", f"req-t-{i}") for i in range(4)]
    assert statuses[-1] == 429
    throttled = await events(world, user_id=uid, type="login.throttled")
    assert throttled
    assert throttled[-1]["request_id"] == "req-t-3"
    assert throttled[-1]["detail"]["retry_after"] > 0


async def test_the_password_grant_records_its_logins_with_its_client(world: World) -> None:
    session = await world.with_session()
    [ok] = await events(world, user_id=session.user_id, type="login.succeeded")
    assert ok["client_id"] == world.client_id("app")
    assert ok["request_id"]
    refused = await session.token(
        {"grant_type": "password", "username": session.username, "password": "nope nope"},
        client="other",
    )
    assert refused.status_code == 400
    [bad] = await events(world, user_id=session.user_id, type="login.failed")
    assert bad["client_id"] == world.client_id("other")
    without_secrets(bad, "nope nope")


async def test_a_sign_up_is_recorded_with_its_request(world: World) -> None:
    browser = world.browser(ADDRESS)
    response = await browser.post(
        "/auth/register",
        json={
            "username": "newcomer",
            "email": "newcomer@example.org",
            "password": "a fine new passphrase",
            "delivery": "body",
        },
        headers={"X-Request-ID": "req-signup"},
    )
    assert response.status_code == 201, response.text
    uid = response.json()["user"]["id"]
    [event] = await events(world, user_id=uid, type="user.registered")
    assert (event["username"], event["client_id"]) == ("newcomer", "authority-web")
    assert (event["address"], event["request_id"]) == (ADDRESS, "req-signup")
    without_secrets(event, "a fine new passphrase")


async def test_reuse_at_auth_is_recorded_with_the_revocation_of_its_family(world: World) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    sid = world.decode(tokens["access"])["sid"]
    first = await world.browser().post("/auth/refresh", json={"refresh": tokens["refresh"]})
    assert first.status_code == 200
    reused = await world.browser().post(
        "/auth/refresh",
        json={"refresh": tokens["refresh"]},
        headers={"X-Request-ID": "req-reuse"},
    )
    assert reused.status_code == 401
    family = await world.db.read(
        lambda conn: conn.execute(
            RefreshFamily.__table__.select().where(RefreshFamily.id == sid)
        ).one()
    )
    assert family.revoke_reason == "reuse"
    uid = await user_id(world, name)
    [event] = await events(world, user_id=uid, type="refresh.reuse_detected")
    assert event["at"] == family.revoked_at  # the same transaction, the same instant
    assert event["detail"] == {"family_id": sid}
    assert (event["client_id"], event["request_id"]) == ("authority-web", "req-reuse")
    without_secrets(event, tokens["refresh"])


async def test_reuse_at_the_token_endpoint_is_recorded(world: World) -> None:
    session = await world.with_session()
    await session.assert_refresh_works(session.refresh_token)
    reused = await session.refresh(session.refresh_token)
    assert reused.status_code == 400
    [event] = await events(world, user_id=session.user_id, type="refresh.reuse_detected")
    assert event["client_id"] == world.client_id("app")
    assert event["username"] == session.username


async def test_logout_and_logout_all_record_the_sessions_they_end(world: World) -> None:
    name, _ = await world.new_user()
    uid = await user_id(world, name)
    one = await world.body_login(name)
    browser = await world.logged_in(name)
    other = await world.body_login(name)
    logout = await world.browser().post("/auth/logout", json={"refresh": one["refresh"]})
    assert logout.status_code == 200
    everywhere = await browser.post("/auth/logout-all", headers=csrf(browser))
    assert everywhere.json()["revoked"] == 2

    first, second = await events(world, user_id=uid, type="session.revoked")
    assert first["detail"] == {
        "families": [world.decode(one["access"])["sid"]],
        "reason": "logout",
    }
    assert second["detail"]["reason"] == "logout-all"
    assert world.decode(other["access"])["sid"] in second["detail"]["families"]
    assert len(second["detail"]["families"]) == 2
    assert second["request_id"]


async def test_a_password_change_records_itself_and_the_sessions_it_ends(world: World) -> None:
    name, _ = await world.new_user()
    uid = await user_id(world, name)
    this = await world.body_login(name)
    other = await world.body_login(name)
    changed = await world.browser().post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "the next passphrase"},
        headers={"Authorization": f"Bearer {this['access']}", "X-Request-ID": "req-pw"},
    )
    assert changed.status_code == 200, changed.text
    [event] = await events(world, user_id=uid, type="password.changed")
    assert event["detail"] == {"by": "user", "sessions_revoked": 1}
    assert event["request_id"] == "req-pw"
    [ended] = await events(world, user_id=uid, type="session.revoked")
    assert ended["detail"] == {
        "families": [world.decode(other["access"])["sid"]],
        "reason": "password changed",
    }
    without_secrets(event, PASSWORD, "the next passphrase")


async def test_ending_one_session_records_it(world: World) -> None:
    name, _ = await world.new_user()
    phone = await world.body_login(name)
    browser = await world.logged_in(name)
    sid = world.decode(phone["access"])["sid"]
    assert (await browser.delete(f"/auth/sessions/{sid}", headers=csrf(browser))).status_code == 204
    [event] = await events(world, user_id=await user_id(world, name), type="session.revoked")
    assert event["detail"] == {"families": [sid], "reason": "ended by user"}
    assert event["client_id"] == "authority-web"


async def test_each_event_is_also_one_json_log_line(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    name, _ = await world.new_user()
    with caplog.at_level("INFO", logger="authority.audit"):
        assert await login(world, name, PASSWORD, "req-logged") == 200
    lines = [
        json.loads(r.getMessage())["audit"] for r in caplog.records if r.name == "authority.audit"
    ]
    assert [(line["type"], line["request_id"]) for line in lines] == [
        ("login.succeeded", "req-logged")
    ]


async def test_revoking_a_refresh_token_at_the_revocation_endpoint_is_recorded(
    world: World,
) -> None:
    session = await world.with_session()
    answer = await world.post(
        "/oauth/revoke",
        {"token": session.refresh_token},
        auth=world.basic("app"),
        headers={"X-Request-ID": "req-revoke"},
    )
    assert answer.status_code == 200
    [event] = await events(world, user_id=session.user_id, type="session.revoked")
    assert event["client_id"] == world.client_id("app")
    assert event["request_id"] == "req-revoke"
    assert event["detail"]["reason"] == "revoked"
    without_secrets(event, session.refresh_token)
    again = await world.post(
        "/oauth/revoke", {"token": session.refresh_token}, auth=world.basic("app")
    )
    assert again.status_code == 200
    assert len(await events(world, user_id=session.user_id, type="session.revoked")) == 1
