"""``authority users``: create and disable users."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from sqlalchemy import Connection

from authority.accounts.passwords import ahash_password
from authority.accounts.registration import registration_problems
from authority.accounts.users import UserExists, create_user, set_active
from authority.cli.common import (
    CommandError,
    console,
    existing_user,
    json_option,
    reported,
    run_command,
    with_database,
)
from authority.sessions.families import revoke_user_families
from authority.settings import Settings
from authority.storage.database import Database


@click.group()
def users() -> None:
    """Users: create, disable."""


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: give it with --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users.command("create")
@click.argument("username")
@click.option("--email", required=True, help="The user's email address.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_create(username: str, email: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (asks for the password unless --password-stdin)."""
    with reported(as_json):
        password = read_password(password_stdin)

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        # The same rules as sign-up (/auth/register), one line each.
        problems = registration_problems(username, email, password)
        if problems:
            raise CommandError(*problems.values())
        password_hash = await ahash_password(password)
        try:
            user = await db.write(
                create_user,
                username=username,
                email=email,
                password_hash=password_hash,
                now=time.time(),
            )
        except UserExists as exc:
            raise CommandError(str(exc)) from None
        return {"id": user.id, "username": user.username, "email": user.email}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(f"created user [bold]{r['username']}[/] (id {r['id']})"),
    )


def disable_user(conn: Connection, user_id: int, now: float) -> int:
    """Disable and revoke every session in one transaction; returns the sessions."""
    set_active(conn, user_id, False)
    return revoke_user_families(conn, user_id, "user disabled", now)


@users.command("disable")
@click.argument("username")
@json_option
def users_disable(username: str, as_json: bool) -> None:
    """Disable a user and revoke every session they have."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        revoked = await db.write(disable_user, user.id, time.time())
        return {"username": user.username, "disabled": True, "sessions_revoked": revoked}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"disabled [bold]{r['username']}[/], revoked {r['sessions_revoked']} session(s)"
        ),
    )
