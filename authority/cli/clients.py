"""``authority clients``: create, list, show, rotate secrets, disable, enable, delete.

Commands after ``create`` address a client by its name, or by its client id when no
client has that name (names are unique, and no name is another client's id). The grant
types a client may be given are the registry's (``authority.grants``);
``authority.cli.main`` passes them in, so that this module stays below the grants."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection

from authority.accounts.clients import (
    FIRST_PARTY_CLIENT_ID,
    MAX_AUDIENCE,
    MAX_OVERLAP,
    SCOPE_TOKEN,
    ClientNameTaken,
    ClientRecord,
    create_client,
    delete_client,
    find_client,
    hash_secret,
    list_clients,
    name_problem,
    new_secret,
    rotate_secret,
    set_client_active,
)
from authority.accounts.redirects import redirect_uri_problem
from authority.cli.common import (
    DASHED_ARGUMENT,
    CommandError,
    console,
    json_option,
    run_command,
    when,
    with_database,
)
from authority.sessions.families import revoke_client_families
from authority.settings import Settings
from authority.status.store import set_client_bits
from authority.storage import audit
from authority.storage.database import Database


async def existing_client(db: Database, ref: str) -> ClientRecord:
    client = await db.read(find_client, ref)
    if client is None:
        raise CommandError(f"no client {ref!r}")
    return client


def not_first_party(client: ClientRecord, action: str) -> None:
    if client.client_id == FIRST_PARTY_CLIENT_ID:
        raise CommandError(
            f"{FIRST_PARTY_CLIENT_ID} is the built-in client of /auth: it cannot be {action}"
        )


def audience_problem(audience: str) -> str | None:
    if not audience or len(audience) > MAX_AUDIENCE or not audience.isprintable():
        return f"invalid audience {audience!r}: 1 to {MAX_AUDIENCE} printable characters"
    if any(c.isspace() for c in audience):
        return f"invalid audience {audience!r}: no spaces"
    return None


def describe(client: ClientRecord, settings: Settings, now: float) -> dict[str, Any]:
    """What ``clients show`` prints: never a secret or its hash."""
    until = client.previous_secret_valid_until(now)
    return {
        "client_id": client.client_id,
        "name": client.name,
        "public": client.is_public,
        "grant_types": sorted(client.grant_types),
        "scopes": sorted(client.scopes),
        "audiences": list(client.audiences),
        "default_audience": client.default_audience(settings.audience),
        "active": client.is_active,
        "created_at": when(client.created_at),
        "previous_secret_valid_until": when(until) if until is not None else None,
        "first_party": client.first_party,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
    }


def redirect_problems(
    grants: list[str], redirect_uris: tuple[str, ...], post_logout: tuple[str, ...]
) -> list[str | None]:
    """What is wrong with a new client's redirect URIs (``authority.accounts.redirects``)."""
    problems = [redirect_uri_problem(uri) for uri in (*redirect_uris, *post_logout)]
    if "authorization_code" in grants and not redirect_uris:
        problems.append("authorization_code needs at least one --redirect-uri")
    if (redirect_uris or post_logout) and "authorization_code" not in grants:
        problems.append("redirect URIs are for clients with --grant authorization_code")
    return problems


def show_fields(r: dict[str, Any]) -> None:
    for name, value in r.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        shown = " ".join(value) if isinstance(value, list) else value
        console.print(
            f"{name + ':':<28} {'' if shown is None else shown}", highlight=False, markup=False
        )


def clients_group(grant_types: Sequence[str]) -> click.Group:
    """The ``clients`` command group, offering ``grant_types`` to ``create --grant``."""

    @click.group()
    def clients() -> None:
        """OAuth clients: create, list, show, rotate-secret, disable, enable, delete."""

    @clients.command("create")
    @click.argument("name")
    @click.option("--public", is_flag=True, help="A public client (no secret; SPAs, mobile apps).")
    @click.option(
        "--grant",
        "grants",
        multiple=True,
        type=click.Choice(grant_types),
        help="Allowed grant type (repeatable). Default: client_credentials, or "
        "refresh_token for public clients.",
    )
    @click.option("--scope", "scopes", multiple=True, help="Allowed scope (repeatable).")
    @click.option(
        "--audience",
        "audiences",
        multiple=True,
        help="Audience the client may request besides AUTHORITY_AUDIENCE (repeatable); "
        "the first is what it gets when a request names none.",
    )
    @click.option(
        "--redirect-uri",
        "redirect_uris",
        multiple=True,
        help="Exact redirect URI for authorization_code (repeatable): https://, http:// "
        "on loopback only, or a native app's private-use scheme.",
    )
    @click.option(
        "--post-logout-redirect-uri",
        "post_logout",
        multiple=True,
        help="Where /oauth/logout may send the browser back to (repeatable).",
    )
    @click.option("--first-party", is_flag=True, help="Skip the consent page (your own apps only).")
    @json_option
    def clients_create(
        name: str,
        public: bool,
        grants: tuple[str, ...],
        scopes: tuple[str, ...],
        audiences: tuple[str, ...],
        redirect_uris: tuple[str, ...],
        post_logout: tuple[str, ...],
        first_party: bool,
        as_json: bool,
    ) -> None:
        """Create a client; a confidential client's secret is printed once, never again."""
        chosen = list(grants) or (["refresh_token"] if public else ["client_credentials"])

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            problems = [name_problem(name)] + [audience_problem(a) for a in audiences]
            if public and "client_credentials" in chosen:
                problems.append("a public client cannot use client_credentials")
            problems += [f"invalid scope {s!r}" for s in scopes if not SCOPE_TOKEN.fullmatch(s)]
            problems += redirect_problems(chosen, redirect_uris, post_logout)
            if any(problems):
                raise CommandError(*filter(None, problems))
            secret = None if public else new_secret()
            secret_hash = hash_secret(settings.secret_key_bytes(), secret) if secret else None
            try:
                client = await db.write(
                    _create,
                    name=name,
                    secret_hash=secret_hash,
                    grant_types=chosen,
                    scopes=list(scopes),
                    audiences=list(audiences),
                    now=time.time(),
                    redirect_uris=list(redirect_uris),
                    post_logout_redirect_uris=list(post_logout),
                    first_party=first_party,
                )
            except ClientNameTaken as exc:
                raise CommandError(str(exc)) from None
            return {
                "client_id": client.client_id,
                "client_secret": secret,
                "name": name,
                "public": public,
                "grant_types": sorted(client.grant_types),
                "scopes": sorted(client.scopes),
                "audiences": list(client.audiences),
                "first_party": client.first_party,
                "redirect_uris": list(client.redirect_uris),
                "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
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
                cells = (
                    r["client_id"],
                    r["name"],
                    "public" if r["public"] else "confidential",
                    " ".join(r["grant_types"]),
                    " ".join(r["scopes"]),
                    "yes" if r["active"] else "no",
                )
                table.add_row(*map(Text, cells))  # as given, never read as markup
            console.print(table)

        run_command(as_json, with_database(body), show)

    @clients.command("show", context_settings=DASHED_ARGUMENT)
    @click.argument("name")
    @json_option
    def clients_show(name: str, as_json: bool) -> None:
        """One client: its grants, scopes, audiences, state and secret overlap."""

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            return describe(await existing_client(db, name), settings, time.time())

        run_command(as_json, with_database(body), show_fields)

    @clients.command("rotate-secret", context_settings=DASHED_ARGUMENT)
    @click.argument("name")
    @click.option(
        "--overlap",
        type=click.IntRange(0, MAX_OVERLAP),
        default=0,
        show_default=True,
        help="Seconds the old secret keeps working, at most 30 days (0: it stops now).",
    )
    @json_option
    def clients_rotate_secret(name: str, overlap: int, as_json: bool) -> None:
        """Give a confidential client a new secret, printed once."""

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            client = await existing_client(db, name)
            if client.is_public:
                raise CommandError(f"{client.name!r} is a public client: it has no secret")
            secret = new_secret()
            secret_hash = hash_secret(settings.secret_key_bytes(), secret)
            until = await db.write(_rotate, client, secret_hash, time.time(), overlap)
            return {
                "client_id": client.client_id,
                "name": client.name,
                "client_secret": secret,
                "previous_secret_valid_until": when(until) if until is not None else None,
            }

        def show(r: dict[str, Any]) -> None:
            console.print(f"client_id:     [bold]{r['client_id']}[/]")
            console.print(f"client_secret: [bold]{r['client_secret']}[/]")
            console.print("store the secret now: it is not kept and cannot be shown again")
            until = r["previous_secret_valid_until"]
            console.print(
                f"the old secret works until {until}" if until else "the old secret stops now"
            )

        run_command(as_json, with_database(body), show)

    @clients.command("disable", context_settings=DASHED_ARGUMENT)
    @click.argument("name")
    @json_option
    def clients_disable(name: str, as_json: bool) -> None:
        """Refuse the client's authentication and revoke its sessions (refresh tokens)."""

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            client = await existing_client(db, name)
            not_first_party(client, "disabled (disable its users instead)")
            revoked = await db.write(_disable, client, time.time())
            return {**_named(client), "active": False, "sessions_revoked": revoked}

        run_command(as_json, with_database(body), show_fields)

    @clients.command("enable", context_settings=DASHED_ARGUMENT)
    @click.argument("name")
    @json_option
    def clients_enable(name: str, as_json: bool) -> None:
        """Let a disabled client authenticate again (its revoked sessions stay revoked)."""

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            client = await existing_client(db, name)
            await db.write(_enable, client, time.time())
            return {**_named(client), "active": True}

        run_command(as_json, with_database(body), show_fields)

    @clients.command("delete", context_settings=DASHED_ARGUMENT)
    @click.argument("name")
    @json_option
    def clients_delete(name: str, as_json: bool) -> None:
        """Delete a client and its sessions (refresh tokens)."""

        async def body(settings: Settings, db: Database) -> dict[str, Any]:
            client = await existing_client(db, name)
            not_first_party(client, "deleted")
            await db.write(_delete, client, time.time())
            return {**_named(client), "deleted": True}

        run_command(as_json, with_database(body), show_fields)

    return clients


def _named(client: ClientRecord) -> dict[str, Any]:
    return {"client_id": client.client_id, "name": client.name}


# One transaction each: the change and its audit event (README, "Clients").


def _event(conn: Connection, kind: audit.EventType, client: ClientRecord, now: float) -> None:
    audit.record(conn, kind, at=now, client_id=client.client_id, detail={"name": client.name})


def _create(conn: Connection, /, *, now: float, **fields: Any) -> ClientRecord:
    client = create_client(conn, now=now, **fields)
    _event(conn, "client.created", client, now)
    return client


def _rotate(
    conn: Connection, client: ClientRecord, secret_hash: bytes, now: float, overlap: int
) -> float | None:
    until = rotate_secret(conn, client.client_id, secret_hash, now, overlap)
    _event(conn, "client.secret_rotated", client, now)
    return until


def _disable(conn: Connection, client: ClientRecord, now: float) -> int:
    """The client is disabled and its families revoked together, its access tokens'
    status bits set (those of its ``client_credentials`` tokens too); the families'
    count."""
    if set_client_active(conn, client.client_id, False):
        _event(conn, "client.disabled", client, now)
    set_client_bits(conn, client.client_id, now)
    return revoke_client_families(conn, client.client_id, "client_disabled", now)


def _enable(conn: Connection, client: ClientRecord, now: float) -> None:
    if set_client_active(conn, client.client_id, True):
        _event(conn, "client.enabled", client, now)


def _delete(conn: Connection, client: ClientRecord, now: float) -> None:
    """The client's access tokens' status bits are set before its families go with it
    (disabled first: its row locked against a concurrent ``record_client_tokens``)."""
    set_client_active(conn, client.client_id, False)
    set_client_bits(conn, client.client_id, now)
    revoke_client_families(conn, client.client_id, "client_deleted", now)
    if delete_client(conn, client.client_id):
        _event(conn, "client.deleted", client, now)
