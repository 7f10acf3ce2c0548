"""``authority serve``, ``setup`` and ``db``: run the service and prepare what it needs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError, OperationalError

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
)
from authority.logs import log_config
from authority.settings import Settings
from authority.signing.key_events import audit_trail
from authority.signing.manager import KeyManager, ensure_key
from authority.signing.stores import make_keystore
from authority.storage.database import DatabaseUnavailable, describe_db_error
from authority.storage.migrate import head_revision, upgrade
from authority.storage.tables import User

# How ``authority serve`` runs uvicorn; the benchmarks serve their baselines the same way.
UVICORN_OPTIONS: dict[str, Any] = {
    "factory": True,
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "server_header": False,
    "proxy_headers": False,
    # uvicorn's own access log is off: ours (authority.web.requests) knows the route.
    "access_log": False,
    "log_config": log_config(),
}


@click.command()
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
            raise CommandError(*problems)
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
            "log_config": log_config(access_log=settings.access_log),
            "proxy_headers": bool(settings.trusted_proxies),
            "forwarded_allow_ips": list(settings.trusted_proxies) or None,
        },
    )


@click.command()
@json_option
def setup(as_json: bool) -> None:
    """First-run setup, safe to repeat: migrate the database, create the first key."""

    def work() -> dict[str, Any]:
        settings = load_settings()
        migrate(settings.database_url)

        async def prepare() -> tuple[str | None, int]:
            async with (
                open_database(settings) as db,
                open_keystore(settings, create_directory=True, db=db) as store,
            ):
                created = await ensure_key(store, settings, trail=audit_trail(db))
                return (created.kid if created else None), await db.read(_count_users)

        created_key, users = arun(prepare())
        return {
            "issuer": settings.issuer,
            "database": "migrated",
            "created_key": created_key,
            "users": users,
            "command": invoked_as(),
        }

    def show(result: dict[str, Any]) -> None:
        if result["created_key"]:
            console.print(f"created the first signing key [bold]{result['created_key']}[/]")
        console.print(f"issuer: [bold]{result['issuer']}[/]")
        command = result["command"]
        if command != "authority":
            console.print(f"the authority command is [bold]{command}[/]", highlight=False)
        if not result["users"]:
            console.print(
                "create the first user with: "
                f"[bold]{command} users create NAME --email E --password-stdin[/]",
                highlight=False,
            )

    run_command(as_json, work, show)


def invoked_as() -> str:
    """How to type this command again from here: ``authority`` when that is what runs,
    else its path (``.venv/bin/authority`` after ``make run``) or ``python -m``."""
    script = Path(sys.argv[0])
    if script.name == "__main__.py":
        return f"{_from_here(Path(sys.executable))} -m authority"
    if script.name != "authority":  # called in-process (tests)
        return "authority"
    on_path = shutil.which("authority")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "authority"
    return _from_here(script)


def _from_here(path: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def _count_users(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(User)).scalar_one()


def migrate(url: str) -> None:
    """Apply the migrations, or one line saying why the database cannot be reached."""
    try:
        upgrade(url)
    except (OSError, OperationalError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_db_error(exc)) from None


# --- db ------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@json_option
def db_upgrade(as_json: bool) -> None:
    """Apply the packaged migrations (safe to repeat)."""

    def work() -> dict[str, Any]:
        migrate(load_settings().database_url)
        return {"revision": head_revision()}

    run_command(as_json, work, lambda r: console.print(f"database at revision {r['revision']}"))
