"""The ``authority`` command (SPEC section 7): serve, migrate, and manage keys.

Every command takes ``--json`` and then prints one JSON document; errors print one
line on stderr (and ``{"error": ...}`` with ``--json``) and exit non-zero.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

try:
    import click
    from rich.table import Table
except ImportError as missing:  # the base install is only the verifier library
    raise SystemExit(
        f"error: the authority server is not installed ({missing.name} is missing): "
        "pip install 'authority[server]'"
    ) from None

from authority.cli.admin import clients, tokens, users
from authority.cli.common import (
    CommandError,
    arun,
    console,
    json_option,
    load_settings,
    open_database,
    open_keystore,
    reported,
    run_command,
    when,
)
from authority.storage.database import DatabaseUnavailable
from authority.signing.keys import system_clock
from authority.signing.stores import KeyStore
from authority.settings import Settings

T = TypeVar("T")
# How ``authority serve`` runs uvicorn; the benchmarks serve their baselines the same way.
UVICORN_OPTIONS: dict[str, Any] = {
    "factory": True,
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "server_header": False,
    "proxy_headers": False,
    "access_log": False,
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="authority")
def main() -> None:
    """Token authority: RS256 access tokens, rotating keys, refresh token families."""


# --- serve ---------------------------------------------------------------------------


@main.command()
@click.option("--host", help="Listen address (AUTHORITY_HOST).")
@click.option("--port", type=int, help="Listen port (AUTHORITY_PORT).")
@click.option("--workers", type=int, help="Worker processes (AUTHORITY_WORKERS).")
@json_option
def serve(host: str | None, port: int | None, workers: int | None, as_json: bool) -> None:
    """Serve the HTTP API (refuses to start without a database and a signing key)."""
    for name, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"AUTHORITY_{name}"] = str(value)

    with reported(as_json):
        settings = load_settings()
        problems = settings.production_problems()
        if problems:
            raise CommandError("; ".join(problems))
        arun(_preflight(settings))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "issuer": settings.issuer,
                    "host": settings.host,
                    "port": settings.port,
                    "workers": settings.workers,
                }
            )
        )
    _serve(settings)


async def _preflight(settings: Settings) -> None:
    from authority.web.app import make_keystore
    from authority.signing.manager import KeyManager

    settings.secret_key_bytes()
    async with open_database(settings) as db:
        store = make_keystore(settings, db)
        await store.check_writable()
        await KeyManager(store, settings).load()


def _serve(settings: Settings) -> None:
    import uvicorn

    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authority-metrics-")
    uvicorn.run(
        "authority.web.app:app_from_env",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # Client addresses (login throttling) come from X-Forwarded-For only when the
        # peer is a configured proxy, never from whoever sends the header.
        **{
            **UVICORN_OPTIONS,
            "proxy_headers": bool(settings.trusted_proxies),
            "forwarded_allow_ips": list(settings.trusted_proxies) or None,
        },
    )


@main.command()
@json_option
def setup(as_json: bool) -> None:
    """First-run setup, safe to repeat: migrate the database, create the first key."""
    from authority.storage.migrate import upgrade
    from authority.signing.manager import ensure_key

    def work() -> dict[str, Any]:
        settings = load_settings()
        upgrade(settings.database_url)

        async def key() -> str | None:
            async with open_keystore(settings, create_directory=True) as store:
                created = await ensure_key(store, settings)
                return created.kid if created else None

        return {"issuer": settings.issuer, "database": "migrated", "created_key": arun(key())}

    def show(result: dict[str, Any]) -> None:
        if result["created_key"]:
            console.print(f"created the first signing key [bold]{result['created_key']}[/]")
        console.print(f"issuer: [bold]{result['issuer']}[/]")
        console.print(
            "create the first user with: "
            "[bold]authority users create NAME --email E --password-stdin[/]"
        )

    run_command(as_json, work, show)


# --- db ------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Apply the packaged migrations (safe to repeat)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from authority.storage.database import describe_db_error
    from authority.storage.migrate import head_revision, upgrade

    def work() -> dict[str, Any]:
        settings = load_settings()
        try:
            upgrade(settings.database_url)
        except (OSError, OperationalError, DBAPIError) as exc:
            raise DatabaseUnavailable(describe_db_error(exc)) from None
        return {"revision": head_revision()}

    run_command(as_json, work, lambda r: console.print(f"database at revision {r['revision']}"))


# --- keys ----------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Signing keys: list, rotate, revoke, prune."""


def _key_command(
    body: Callable[[Settings, KeyStore], Coroutine[Any, Any, T]], create_directory: bool = False
) -> Callable[[], T]:
    def work() -> T:
        settings = load_settings()

        async def go() -> T:
            async with open_keystore(settings, create_directory) as store:
                return await body(settings, store)

        return arun(go())

    return work


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """Show every key with its state."""
    from authority.signing.manager import statuses

    async def body(settings: Settings, store: KeyStore) -> list[dict[str, Any]]:
        return [
            {
                "kid": s.record.kid,
                "state": s.state,
                "size": s.record.size,
                "created_at": s.record.created_at,
                "activate_at": s.record.activate_at,
                "retired_at": s.retired_at,
                "remove_after": s.remove_after,
                "encrypted": s.record.encrypted,
            }
            for s in statuses(await store.load(), settings, system_clock())
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table(
            "kid", "state", "size", "created", "signs from", "retired", "removed after", "encrypted"
        )
        for r in rows:
            table.add_row(
                r["kid"],
                r["state"],
                str(r["size"]),
                when(r["created_at"]),
                when(r["activate_at"]),
                when(r["retired_at"]),
                when(r["remove_after"]),
                "yes" if r["encrypted"] else "NO",
            )
        console.print(table)

    run_command(as_json, _key_command(body), show)


@keys.command("rotate")
@click.option(
    "--now",
    "now_",
    is_flag=True,
    help="Make the new key current at once (emergencies: tokens signed with it "
    "fail at verifiers whose JWKS cache predates it).",
)
@click.option("--size", type=click.Choice(["2048", "3072", "4096"]), help="RSA key size.")
@json_option
def keys_rotate(now_: bool, size: str | None, as_json: bool) -> None:
    """Publish a new key; it signs after KEY_PUBLISH_DELAY (or at once with --now)."""
    from authority.signing.manager import rotate

    async def body(settings: Settings, store: KeyStore) -> dict[str, Any]:
        result = await rotate(store, settings, now_=now_, size=int(size) if size else None)
        return {"outcome": result.outcome, "kid": result.kid, "activate_at": result.activate_at}

    def show(r: dict[str, Any]) -> None:
        messages = {
            "created": "published new key",
            "promoted": "promoted pending key",
            "pending": "a next key is already pending, nothing to do:",
        }
        console.print(
            f"{messages[r['outcome']]} [bold]{r['kid']}[/], signs from {when(r['activate_at'])}"
        )

    run_command(as_json, _key_command(body, create_directory=True), show)


@keys.command("revoke")
@click.argument("kid")
@json_option
def keys_revoke(kid: str, as_json: bool) -> None:
    """Remove a key from the JWKS now (compromise); tokens it signed stop verifying."""
    from authority.signing.manager import revoke

    async def body(settings: Settings, store: KeyStore) -> dict[str, Any]:
        replacement = await revoke(store, settings, kid)
        return {"revoked": kid, "replacement": replacement.kid if replacement else None}

    def show(r: dict[str, Any]) -> None:
        console.print(f"revoked [bold]{r['revoked']}[/]")
        if r["replacement"]:
            console.print(f"[bold]{r['replacement']}[/] signs from now on")

    run_command(as_json, _key_command(body), show)


@keys.command("prune")
@json_option
def keys_prune(as_json: bool) -> None:
    """Delete retired keys whose tokens have all expired."""
    from authority.signing.manager import prune

    async def body(settings: Settings, store: KeyStore) -> dict[str, Any]:
        return {"pruned": await prune(store, settings)}

    run_command(
        as_json, _key_command(body), lambda r: console.print(f"pruned {len(r['pruned'])} key(s)")
    )


main.add_command(users)
main.add_command(clients)
main.add_command(tokens)
