"""Sign-up (README, "HTTP API", POST /auth/register): no composition rules; 8 to 256
characters; common passwords refused from the shipped list; usernames and emails unique
case-insensitively; a clear 400 per field; a refused sign-up changes nothing (but its
address's sign-up count, README "Throttling", when it passed the field rules)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import pytest_asyncio

from authority.accounts.registration import common_passwords
from tests.helpers.world import World, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="module")
GOOD = "plain lowercase words are fine"
_addresses = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def taken(running_world: World) -> None:
    response = await register(
        running_world, username="taken", email="taken@example.org", password=GOOD
    )
    assert response.status_code == 201


async def register(world: World, **fields: Any) -> Any:
    body = {"delivery": "body", **fields}
    # Each from an address of its own: sign-ups are throttled per address.
    return await world.browser(next(_addresses)).post("/auth/register", json=body)


async def test_the_shipped_list_holds_thousands_of_common_passwords() -> None:
    listed = common_passwords()
    assert len(listed) > 5000
    assert {"password", "12345678", "iloveyou"} <= listed
    assert all(len(p) >= 8 for p in listed)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8"),
        ("x" * 257, "at most 256"),
        ("password", "too common"),
        ("Password", "too common"),
        ("qwertyuiop", "too common"),
        ("newuser1", "username"),
        ("NEWUSER1@example.org", "username or email"),
    ],
)
async def test_weak_passwords_get_a_400_with_the_reason(
    world: World, password: str, reason: str
) -> None:
    async with world.unchanged():
        response = await register(
            world, username="newuser1", email="newuser1@example.org", password=password
        )
    assert response.status_code == 400
    assert reason in response.json()["errors"]["password"]
    assert set(response.json()["errors"]) == {"password"}


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaaaaaaaaab", "no digits no capitals", "12345678901234567890x", "Ünïcödé passw"],
)
async def test_no_composition_rules(world: World, password: str) -> None:
    name = f"comp{abs(hash(password)) % 10**8}"
    response = await register(world, username=name, email=f"{name}@example.org", password=password)
    assert response.status_code == 201, response.text


async def test_each_bad_field_is_named(world: World) -> None:
    async with world.unchanged():
        response = await register(world, username="bad name!", email="not-an-email", password="x")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"username", "email", "password"}


@pytest.mark.parametrize(
    ("username", "email", "field"),
    [
        ("Taken", "fresh1@example.org", "username"),
        ("TAKEN", "fresh2@example.org", "username"),
        ("fresh3", "TAKEN@Example.ORG", "email"),
    ],
)
async def test_usernames_and_emails_are_unique_case_insensitively(
    taken: None, world: World, username: str, email: str, field: str
) -> None:
    before = await snapshot(world.settings.database_url)
    response = await register(world, username=username, email=email, password=GOOD)
    after = await snapshot(world.settings.database_url)
    assert {**after, "login_throttle": []} == {**before, "login_throttle": []}
    assert response.status_code == 400
    assert "already exists" in response.json()["errors"][field]


async def test_registration_logs_in_with_the_chosen_delivery(world: World) -> None:
    body = await register(world, username="deliver", email="deliver@example.org", password=GOOD)
    assert body.status_code == 201
    assert set(body.json()) == {"user", "tokens"}
    client = world.browser()
    token = (await client.get("/auth/csrf")).json()["csrf_token"]
    cookie = await client.post(
        "/auth/register",
        json={"username": "deliver2", "email": "deliver2@example.org", "password": GOOD},
        headers={"X-CSRFToken": token},
    )
    assert cookie.status_code == 201
    assert set(cookie.json()) == {"user"}
    assert (await client.get("/auth/me")).json()["username"] == "deliver2"


async def test_usernames_with_an_at_sign_or_control_characters_are_refused(world: World) -> None:
    for username in ("a@b", "tab\there", "nul\x00", ""):
        response = await register(world, username=username, email="x@example.org", password=GOOD)
        assert response.status_code == 400
        assert "username" in response.json()["errors"]
