"""Look-alike usernames and password forms (README, "Logging in users"): a username may
not mix scripts like a spoof (UTS #39 section 5.2); a password of only whitespace is
refused; passwords are NFKC-normalised before hashing (NIST SP 800-63B section
5.1.1.2), and users hashed before that still log in and are re-hashed."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from authority.accounts.passwords import HASHER, normalize
from authority.accounts.registration import registration_problems, username_problem
from authority.storage.tables import User
from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")
GOOD = "plain lowercase words are fine"
_addresses = (f"198.19.{n // 250}.{n % 250 + 1}" for n in itertools.count())


async def register(world: World, username: str, password: str = GOOD) -> httpx.Response:
    body = {"username": username, "email": f"{abs(hash(username))}@example.org"}
    return await world.browser(next(_addresses)).post(
        "/auth/register", json={"delivery": "body", "password": password, **body}
    )


async def log_in(world: World, username: str, password: str) -> httpx.Response:
    return await world.browser(next(_addresses)).post(
        "/auth/login", json={"username": username, "password": password, "delivery": "body"}
    )


async def stored_hash(world: World, username: str) -> str:
    def read(conn: Any) -> str:
        return str(
            conn.execute(select(User.password_hash).where(User.username == username)).scalar_one()
        )

    return await world.db.read(read)


async def test_a_username_mixing_scripts_is_refused_next_to_its_look_alike(world: World) -> None:
    assert (await register(world, "dave")).status_code == 201
    spoof = await register(world, "d\u0430ve")  # a Cyrillic "a"
    assert spoof.status_code == 400
    assert "scripts" in spoof.json()["errors"]["username"]


@pytest.mark.parametrize(
    "name",
    [
        "\u0421\u0435\u0440\u0433\u0435\u0439",  # Cyrillic only
        "\u0395\u03bb\u03ad\u03bd\u03b7",  # Greek only
        "山田たろう",
        "김민준",
        "jean-luc.o_k+1",
    ],
)
async def test_names_in_one_script_or_a_cjk_set_are_accepted(name: str) -> None:
    assert username_problem(name) is None


@pytest.mark.parametrize("name", ["p\u0430ypal", "\u03b1dmin", "r00t\u0421\u0415\u041e"])
async def test_names_mixing_latin_with_cyrillic_or_greek_are_refused(name: str) -> None:
    assert username_problem(name) == "a username may not mix letters of different scripts"


@pytest.mark.parametrize("password", [" " * 8, " \t " * 4, "\u3000" * 8, "\u00a0" * 12])
async def test_a_password_of_only_whitespace_is_refused(world: World, password: str) -> None:
    assert registration_problems("blank", "blank@example.org", password) == {
        "password": "a password cannot be only spaces"
    }
    async with world.unchanged():
        response = await register(world, "blank", password)
    assert response.status_code == 400


async def test_a_password_typed_in_another_unicode_form_logs_in(world: World) -> None:
    fullwidth = "".join(c if c == " " else chr(ord(c) + 0xFEE0) for c in GOOD)
    assert (await register(world, "wide", fullwidth)).status_code == 201
    assert (await log_in(world, "wide", GOOD)).status_code == 200
    assert (await log_in(world, "wide", fullwidth)).status_code == 200


async def test_a_user_hashed_before_normalisation_logs_in_and_is_rehashed(world: World) -> None:
    typed = "ﬁve ﬂuﬀy ﬁnches"  # ligatures: NFKC spells them out
    assert normalize(typed) != typed
    await world.add_user("legacy", "legacy@example.org", HASHER.hash(typed))
    assert (await log_in(world, "legacy", typed)).status_code == 200
    rehashed = await stored_hash(world, "legacy")
    assert HASHER.verify(rehashed, normalize(typed))
    assert (await log_in(world, "legacy", typed)).status_code == 200
    assert (await log_in(world, "legacy", "wrong " + typed)).status_code == 401
