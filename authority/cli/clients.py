"""``authority clients``: create and list OAuth clients.

The grant types a client may be given are the registry's (``authority.grants``);
``authority.cli.main`` passes them in, so that this module stays below the grants."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from authority.accounts.clients import (
    SCOPE_TOKEN,
    create_client,
    hash_secret,
    list_clients,
    new_secret,
)
from authority.cli.common import CommandError, console, json_option, run_command, with_database
from authority.settings import Settings
from authority.storage.database import Database


def clients_group(grant_types: Sequence[str]) -> click.Group:
    """The ``clients`` command group, offering ``grant_types`` to ``create --grant``."""

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
        type=click.Choice(grant_types),
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

    return clients
