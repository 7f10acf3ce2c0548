"""``authority users|clients|tokens``: the operator's side of users, clients and sessions."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.table import Table
from sqlalchemy import Connection

from authority.cli.common import (
    CommandError,
    arun,
    console,
    json_option,
    load_settings,
    open_database,
    run_command,
)
from authority.accounts.clients import (
    GRANT_TYPES,
    SCOPE_TOKEN,
    create_client,
    hash_secret,
    list_clients,
    new_secret,
)
from authority.storage.database import Database
from authority.sessions.families import revoke_user_families
from authority.accounts.passwords import MAX_LENGTH, MIN_LENGTH, ahash_password
from authority.sessions.pruning import prune_tokens
from authority.settings import Settings
from authority.accounts.users import (
    MAX_EMAIL,
    MAX_USERNAME,
    UserExists,
    UserRecord,
    create_user,
    find_user,
    set_active,
)

T = TypeVar("T")


def with_database(body: Callable[[Settings, Database], Coroutine[Any, Any, T]]) -> Callable[[], T]:
    def work() -> T:
        settings = load_settings()

        async def go() -> T:
            async with open_database(settings) as db:
                return await body(settings, db)

        return arun(go())

    return work


# --- users ---------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Users: create, disable."""


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_LENGTH:
        raise CommandError(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise CommandError(f"password must be at most {MAX_LENGTH} characters")
    return password


@users.command("create")
@click.argument("username")
@click.option("--email", required=True, help="The user's email address.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
def users_create(username: str, email: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (asks for the password unless --password-stdin)."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        if not 1 <= len(username) <= MAX_USERNAME or username != username.strip():
            raise CommandError(f"username must be 1 to {MAX_USERNAME} characters, no spaces")
        if "@" not in email or len(email) > MAX_EMAIL:
            raise CommandError("email must be an address with @")
        password_hash = await ahash_password(read_password(password_stdin))
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


async def existing_user(db: Database, username: str) -> UserRecord:
    user = await db.read(find_user, username)
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user


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


# --- clients -------------------------------------------------------------------------


@click.group()
def clients() -> None:
    """OAuth clients: create, list."""


@clients.command("create")
@click.argument("name")
@click.option("--public", is_flag=True, help="A public client (no secret; SPAs, mobile apps).")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    type=click.Choice(sorted(GRANT_TYPES)),
    help="Allowed grant type (repeatable). Default: client_credentials, or "
    "refresh_token for public clients.",
)
@click.option("--scope", "scopes", multiple=True, help="Allowed scope (repeatable).")
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="Audience the client may request besides AUTHORITY_AUDIENCE (repeatable).",
)
@json_option
def clients_create(
    name: str,
    public: bool,
    grants: tuple[str, ...],
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a client; a confidential client's secret is printed once, never again."""
    chosen = list(grants) or (["refresh_token"] if public else ["client_credentials"])

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        if public and "client_credentials" in chosen:
            raise CommandError("a public client cannot use client_credentials")
        bad = [s for s in scopes if not SCOPE_TOKEN.fullmatch(s)]
        if bad:
            raise CommandError(f"invalid scope {bad[0]!r}")
        secret = None if public else new_secret()
        secret_hash = hash_secret(settings.secret_key_bytes(), secret) if secret else None
        client = await db.write(
            create_client,
            name=name,
            secret_hash=secret_hash,
            grant_types=chosen,
            scopes=list(scopes),
            audiences=list(audiences),
            now=time.time(),
        )
        return {
            "client_id": client.client_id,
            "client_secret": secret,
            "name": name,
            "public": public,
            "grant_types": sorted(client.grant_types),
            "scopes": sorted(client.scopes),
            "audiences": list(client.audiences),
        }

    def show(r: dict[str, Any]) -> None:
        console.print(f"client_id:     [bold]{r['client_id']}[/]")
        if r["client_secret"]:
            console.print(f"client_secret: [bold]{r['client_secret']}[/]")
            console.print("store the secret now: it is not kept and cannot be shown again")

    run_command(as_json, with_database(body), show)


@clients.command("list")
@json_option
def clients_list(as_json: bool) -> None:
    """List clients (never their secrets)."""

    async def body(settings: Settings, db: Database) -> list[dict[str, Any]]:
        return [
            {
                "client_id": c.client_id,
                "name": c.name,
                "public": c.is_public,
                "grant_types": sorted(c.grant_types),
                "scopes": sorted(c.scopes),
                "audiences": list(c.audiences),
                "active": c.is_active,
            }
            for c in await db.read(list_clients)
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table("client_id", "name", "type", "grants", "scopes", "active")
        for r in rows:
            table.add_row(
                r["client_id"],
                r["name"],
                "public" if r["public"] else "confidential",
                " ".join(r["grant_types"]),
                " ".join(r["scopes"]),
                "yes" if r["active"] else "no",
            )
        console.print(table)

    run_command(as_json, with_database(body), show)


# --- tokens --------------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """Refresh token sessions: prune, revoke."""


@tokens.command("prune")
@json_option
def tokens_prune(as_json: bool) -> None:
    """Delete expired families, expired consumed tokens and expired revocations."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        return {"deleted": await prune_tokens(db, time.time)}

    run_command(
        as_json, with_database(body), lambda r: console.print(f"deleted {r['deleted']} row(s)")
    )


@tokens.command("revoke")
@click.option("--user", "username", required=True, help="Revoke every session of this user.")
@json_option
def tokens_revoke(username: str, as_json: bool) -> None:
    """Revoke every refresh token family (session) of a user."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        revoked = await db.write(revoke_user_families, user.id, "revoked by operator", time.time())
        return {"username": user.username, "sessions_revoked": revoked}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"revoked {r['sessions_revoked']} session(s) of [bold]{r['username']}[/]"
        ),
    )
