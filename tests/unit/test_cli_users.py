"""``authority users`` and ``tokens revoke`` as an operator runs them, against the
database of a running app whose users log in over HTTP: list, enable, set-password
(sign-up's rules, every session revoked), sessions; one-line errors, ``{"error"}``
under ``--json``; each change an audit event."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from authority.cli.main import main
from authority.storage.tables import AuditEvent
from tests.helpers.world import PASSWORD, World

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def cli(world: World, *args: str, input_: str | None = None) -> Result:
    """The command in-process (in a thread: it runs its own event loop), on the app's
    database."""
    env = {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": world.settings.database_url,
        "AUTHORITY_SECRET_KEY": "s" * 40,
    }
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), input=input_, env=env)


async def cli_json(world: World, *args: str, input_: str | None = None) -> Any:
    result = await cli(world, *args, "--json", input_=input_)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def event_types(world: World, username: str) -> list[str]:
    table = AuditEvent.__table__
    query = select(table.c.type).where(table.c.username == username).order_by(table.c.id)
    return list(await world.db.read(lambda conn: conn.execute(query).scalars().all()))


async def can_log_in(world: World, name: str, password: str) -> bool:
    response = await world.browser().post(
        "/auth/login", json={"username": name, "password": password, "delivery": "body"}
    )
    return response.status_code == 200


async def test_users_list_shows_each_user_with_live_sessions_and_iso_dates(
    world: World,
) -> None:
    busy, busy_email = await world.new_user()
    idle, _ = await world.new_user()
    await world.body_login(busy)
    await world.logged_in(busy)
    ended = await world.body_login(busy)
    logout = await world.browser().post("/auth/logout", json={"refresh": ended["refresh"]})
    assert logout.status_code == 200

    rows = {row["username"]: row for row in await cli_json(world, "users", "list")}
    assert rows[busy]["sessions"] == 2  # the ended one does not count
    assert rows[busy]["email"] == busy_email
    assert rows[busy]["active"] is True
    assert rows[idle]["sessions"] == 0
    joined = dt.datetime.fromisoformat(rows[busy]["date_joined"])
    assert joined.utcoffset() == dt.timedelta(0)

    table = await cli(world, "users", "list")
    assert table.exit_code == 0
    assert busy in table.output


async def test_users_sessions_shows_client_times_address_and_user_agent(world: World) -> None:
    name, _ = await world.new_user()
    phone = world.browser("198.51.100.30", **{"User-Agent": "phone-app/3"})
    login = await phone.post(
        "/auth/login", json={"username": name, "password": PASSWORD, "delivery": "body"}
    )
    sid = world.decode(login.json()["tokens"]["access"])["sid"]
    [session] = await cli_json(world, "users", "sessions", name)
    assert session["id"] == sid
    assert session["client_id"] == "authority-web"
    assert (session["address"], session["user_agent"]) == ("198.51.100.30", "phone-app/3")
    assert dt.datetime.fromisoformat(session["last_used_at"]) >= dt.datetime.fromisoformat(
        session["created_at"]
    )
    table = await cli(world, "users", "sessions", name)
    assert sid in table.output


async def test_set_password_applies_sign_up_rules_and_revokes_every_session(
    world: World,
) -> None:
    name, _ = await world.new_user()
    tokens = await world.body_login(name)
    refused = await cli(
        world, "users", "set-password", name, "--password-stdin", input_="password123\n"
    )
    assert refused.exit_code == 1
    assert refused.output.strip() == "error: this password is too common"
    assert await can_log_in(world, name, PASSWORD)

    done = await cli_json(
        world, "users", "set-password", name, "--password-stdin", input_="operator chose this\n"
    )
    assert done == {"username": name, "password_set": True, "sessions_revoked": 2}
    me = await world.browser().get(
        "/auth/me", headers={"Authorization": f"Bearer {tokens['access']}"}
    )
    assert me.status_code == 401
    assert await can_log_in(world, name, "operator chose this")
    assert not await can_log_in(world, name, PASSWORD)
    assert await event_types(world, name) == [
        "login.succeeded",
        "login.succeeded",
        "session.revoked",
        "password.changed",
        "login.succeeded",
        "login.failed",
    ]


async def test_set_password_without_a_terminal_says_to_use_password_stdin(world: World) -> None:
    name, _ = await world.new_user()
    result = await cli(world, "users", "set-password", name)
    assert result.exit_code == 1
    assert result.output == (
        "error: no terminal to ask for the password: give it with --password-stdin\n"
    )
    as_json = await cli(world, "users", "set-password", name, "--json")
    assert as_json.exit_code == 1
    assert "--password-stdin" in json.loads(as_json.stdout)["error"]


async def test_disable_then_enable_lets_the_user_log_in_again(world: World) -> None:
    name, _ = await world.new_user()
    await world.body_login(name)
    disabled = await cli_json(world, "users", "disable", name)
    assert disabled["sessions_revoked"] == 1
    assert not await can_log_in(world, name, PASSWORD)
    rows = {row["username"]: row for row in await cli_json(world, "users", "list")}
    assert rows[name]["active"] is False

    enabled = await cli_json(world, "users", "enable", name)
    assert enabled == {"username": name, "enabled": True, "was_active": False}
    assert await can_log_in(world, name, PASSWORD)
    again = await cli_json(world, "users", "enable", name)
    assert again["was_active"] is True
    assert await event_types(world, name) == [
        "login.succeeded",
        "user.disabled",
        "session.revoked",
        "login.failed",
        "user.enabled",
        "login.succeeded",
    ]


async def test_tokens_revoke_records_the_sessions_it_ends(world: World) -> None:
    name, _ = await world.new_user()
    await world.body_login(name)
    done = await cli_json(world, "tokens", "revoke", "--user", name)
    assert done == {"username": name, "sessions_revoked": 1}
    assert await event_types(world, name) == ["login.succeeded", "session.revoked"]


async def test_users_create_records_who_was_created(world: World) -> None:
    created = await cli_json(
        world,
        "users",
        "create",
        "made-by-cli",
        "--email",
        "made@example.org",
        "--password-stdin",
        input_="a good long passphrase\n",
    )
    assert created["username"] == "made-by-cli"
    assert await event_types(world, "made-by-cli") == ["user.created"]


@pytest.mark.parametrize("command", ["enable", "sessions", "disable", "set-password"])
async def test_an_unknown_user_is_one_line_and_json_under_json(world: World, command: str) -> None:
    args = ["users", command, "no-such-user"]
    if command == "set-password":
        args.append("--password-stdin")
    result = await cli(world, *args, input_="whatever long enough\n")
    assert (result.exit_code, result.output) == (1, "error: no user 'no-such-user'\n")
    as_json = await cli(world, *args, "--json", input_="whatever long enough\n")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"] == "no user 'no-such-user'"
