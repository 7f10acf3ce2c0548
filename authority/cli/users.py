"""``authority users``: create, list, disable and enable users, set a password, and
see a user's sessions. Each change is an audit event (``authority.storage.audit``)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.table import Table

from authority.accounts.passwords import ahash_password
from authority.accounts.registration import password_problem, registration_problems
from authority.accounts.users import UserExists, list_users
from authority.cli.common import (
    CommandError,
    console,
    existing_user,
    json_option,
    reported,
    run_command,
    when,
    with_database,
)
from authority.sessions.lifecycle import (
    create_audited_user,
    live_session_counts,
    live_sessions,
    set_password,
    set_user_active,
)
from authority.settings import Settings
from authority.storage.database import Database


@click.group()
def users() -> None:
    """Users: create, list, disable, enable, set-password, sessions."""


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
                create_audited_user,
                username=username,
                email=email,
                password_hash=password_hash,
                now=time.time(),
                event="user.created",
            )
        except UserExists as exc:
            raise CommandError(str(exc)) from None
        return {"id": user.id, "username": user.username, "email": user.email}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(f"created user [bold]{r['username']}[/] (id {r['id']})"),
    )


@users.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """List users: name, email, active, when they joined, live sessions."""

    async def body(settings: Settings, db: Database) -> list[dict[str, Any]]:
        found = await db.read(list_users)
        counts = await db.read(live_session_counts, time.time())
        return [
            {
                "username": u.username,
                "email": u.email,
                "active": u.is_active,
                "date_joined": when(u.date_joined),
                "sessions": counts.get(u.id, 0),
            }
            for u in found
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table("username", "email", "active", "joined", "sessions")
        for r in rows:
            table.add_row(
                r["username"],
                r["email"],
                "yes" if r["active"] else "no",
                r["date_joined"],
                str(r["sessions"]),
            )
        console.print(table)

    run_command(as_json, with_database(body), show)


@users.command("disable")
@click.argument("username")
@json_option
def users_disable(username: str, as_json: bool) -> None:
    """Disable a user and revoke every session they have."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        revoked = await db.write(set_user_active, user, False, time.time())
        return {"username": user.username, "disabled": True, "sessions_revoked": len(revoked)}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"disabled [bold]{r['username']}[/], revoked {r['sessions_revoked']} session(s)"
        ),
    )


@users.command("enable")
@click.argument("username")
@json_option
def users_enable(username: str, as_json: bool) -> None:
    """Enable a disabled user again (their old sessions stay revoked)."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        await db.write(set_user_active, user, True, time.time())
        return {"username": user.username, "enabled": True, "was_active": user.is_active}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"[bold]{r['username']}[/] was already enabled"
            if r["was_active"]
            else f"enabled [bold]{r['username']}[/]"
        ),
    )


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_set_password(username: str, password_stdin: bool, as_json: bool) -> None:
    """Set a user's password (sign-up's rules) and revoke every session they have."""
    with reported(as_json):
        password = read_password(password_stdin)

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        problem = password_problem(password, user.username, user.email)
        if problem is not None:
            raise CommandError(problem)
        password_hash = await ahash_password(password)
        revoked = await db.write(set_password, user, password_hash, time.time())
        return {"username": user.username, "password_set": True, "sessions_revoked": len(revoked)}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"set the password of [bold]{r['username']}[/], "
            f"revoked {r['sessions_revoked']} session(s)"
        ),
    )


@users.command("sessions")
@click.argument("username")
@json_option
def users_sessions(username: str, as_json: bool) -> None:
    """A user's live sessions: client, opened, last used, address, user agent."""

    async def body(settings: Settings, db: Database) -> list[dict[str, Any]]:
        user = await existing_user(db, username)
        return [
            {
                "id": s.id,
                "client_id": s.client_id,
                "created_at": when(s.created_at),
                "last_used_at": when(s.last_used_at),
                "address": s.address,
                "user_agent": s.user_agent,
            }
            for s in await db.read(live_sessions, user.id, time.time())
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table("id", "client", "opened", "last used", "address", "user agent")
        for r in rows:
            table.add_row(
                r["id"],
                r["client_id"],
                r["created_at"],
                r["last_used_at"],
                r["address"] or "",
                r["user_agent"] or "",
            )
        console.print(table)

    run_command(as_json, with_database(body), show)
