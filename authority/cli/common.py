"""Shared pieces of the ``authority`` command: one-line errors, --json, the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from authority.accounts.users import UserRecord, find_user
from authority.settings import Settings, SettingsError
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.file_store import FileKeyStore
from authority.signing.records import KeyStore, KeyStoreError
from authority.storage.database import Database, DatabaseUnavailable
from authority.storage.migrate import check_database

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
    async with open_database(settings) as db:
        yield DatabaseKeyStore(db.engine)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def with_database(body: Callable[[Settings, Database], Coroutine[Any, Any, T]]) -> Callable[[], T]:
    def work() -> T:
        settings = load_settings()

        async def go() -> T:
            async with open_database(settings) as db:
                return await body(settings, db)

        return arun(go())

    return work


async def existing_user(db: Database, username: str) -> UserRecord:
    user = await db.read(find_user, username)
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user
