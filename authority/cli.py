"""The ``authority`` command (SPEC section 7): serve, migrate, and manage keys.

Every command takes ``--json`` and then prints one JSON document; errors print one
line on stderr (and ``{"error": ...}`` with ``--json``) and exit non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from authority.db import Database, DatabaseUnavailable
from authority.keys import KeyStoreError, system_clock
from authority.keystore import FileKeyStore, KeyStore
from authority.settings import Settings, SettingsError

T = TypeVar("T")
# Wide enough for a full kid when output goes to a pipe or a file.
console = Console(width=None if sys.stdout.isatty() else 160)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


class CommandError(Exception):
    """A failure to report as one line."""


@contextlib.contextmanager
def reported(as_json: bool) -> Iterator[None]:
    """Turn the failures an operator can fix into one line and exit status 1."""
    try:
        yield
    except (CommandError, SettingsError, KeyStoreError, DatabaseUnavailable) as exc:
        fail(str(exc), as_json)


def run_command(as_json: bool, work: Callable[[], T], show: Callable[[T], None]) -> None:
    with reported(as_json):
        result = work()
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        show(result)


def fail(message: str, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": message}))
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def load_settings() -> Settings:
    return Settings.from_env()


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database, reachable and migrated, or a one-line error."""
    from authority.app import check_database

    db = Database(settings.database_url)
    try:
        await check_database(db)
        yield db
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def open_keystore(
    settings: Settings, create_directory: bool = False
) -> AsyncIterator[KeyStore]:
    if settings.keystore == "file":
        if create_directory:
            try:
                settings.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise CommandError(
                    f"cannot create keys directory {settings.keys_dir}: {exc.strerror}"
                ) from None
        yield FileKeyStore(settings.keys_dir)
        return
    from authority.keystore import DatabaseKeyStore

    async with open_database(settings) as db:
        yield DatabaseKeyStore(db.engine)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


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
    from authority.app import make_keystore
    from authority.rotation import KeyManager

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
        "authority.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        server_header=False,
        proxy_headers=False,
        access_log=False,
    )


@main.command()
@json_option
def setup(as_json: bool) -> None:
    """First-run setup, safe to repeat: migrate the database, create the first key."""
    from authority.migrate import upgrade
    from authority.rotation import ensure_key

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

    from authority.db import describe_db_error
    from authority.migrate import head_revision, upgrade

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
    from authority.rotation import statuses

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
    from authority.rotation import rotate

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
    from authority.rotation import revoke

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
    from authority.rotation import prune

    async def body(settings: Settings, store: KeyStore) -> dict[str, Any]:
        return {"pruned": await prune(store, settings)}

    run_command(
        as_json, _key_command(body), lambda r: console.print(f"pruned {len(r['pruned'])} key(s)")
    )
