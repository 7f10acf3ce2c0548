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
from authority.signing.key_events import KeyAudit, audit_trail
from authority.signing.records import KeyStore, KeyStoreError
from authority.storage.database import Database, DatabaseUnavailable
from authority.storage.migrate import check_database

T = TypeVar("T")
# Wide enough for a full kid when output goes to a pipe or a file.
console = Console(width=None if sys.stdout.isatty() else 160)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


class CommandError(Exception):
    """A failure to report: one line per problem."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@contextlib.contextmanager
def reported(as_json: bool) -> Iterator[None]:
    """Turn the failures an operator can fix into one line each and exit status 1."""
    try:
        yield
    except (CommandError, SettingsError) as exc:
        fail(exc.problems, as_json)
    except (KeyStoreError, DatabaseUnavailable) as exc:
        fail([str(exc)], as_json)


# For commands whose argument is an id that may begin with "-" (a kid is base64url):
# ``keys revoke -MRy…`` is the kid, not an unknown option -M (a typo'd option still
# fails, as an unexpected extra argument).
DASHED_ARGUMENT: dict[str, Any] = {"ignore_unknown_options": True}


class CommandGroup(click.Group):
    """The ``authority`` group: usage errors (an unknown option, a bad value) are one
    line and exit status 1 like every other error, ``{"error": ...}`` under --json;
    no "Aborted!" when an interrupt or a missing terminal ends a command."""

    def main(self, args: Any = None, *rest: Any, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            return super().main(argv, *rest, **{**extra, "standalone_mode": False})
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            fail([exc.format_message() + where], "--json" in argv)
        except click.ClickException as exc:
            fail([exc.format_message()], "--json" in argv)
        except click.Abort:
            fail(["interrupted"], "--json" in argv)


def run_command(as_json: bool, work: Callable[[], T], show: Callable[[T], None]) -> None:
    with reported(as_json):
        result = work()
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        show(result)


def fail(problems: list[str], as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": "; ".join(problems), "problems": problems}))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    sys.exit(1)


def load_settings() -> Settings:
    return Settings.from_env()


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The database, reachable and migrated, or a one-line error."""
    db = Database(settings.database_url, full_sync=settings.sqlite_full_sync)
    try:
        await check_database(db)
        yield db
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def open_keystore(
    settings: Settings, create_directory: bool = False, db: Database | None = None
) -> AsyncIterator[KeyStore]:
    """The configured key store; with ``KEYSTORE=database`` in ``db`` when given."""
    if settings.keystore == "file":
        if create_directory:
            try:
                settings.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise CommandError(
                    f"cannot create keys directory {settings.keys_dir}: {exc.strerror}"
                ) from None
        yield FileKeyStore(settings.keys_dir)
    elif db is not None:
        yield DatabaseKeyStore(db.engine)
    else:
        async with open_database(settings) as opened:
            yield DatabaseKeyStore(opened.engine)


@contextlib.asynccontextmanager
async def open_key_steps(
    settings: Settings, create_directory: bool = False
) -> AsyncIterator[tuple[KeyStore, KeyAudit]]:
    """The key store for a step that changes it, and the audit trail its events go
    to: the database must be there before anything changes."""
    async with (
        open_database(settings) as db,
        open_keystore(settings, create_directory, db) as store,
    ):
        yield store, audit_trail(db)


def when(timestamp: float | None) -> str:
    """A time as ISO 8601 in UTC, ``2026-11-30T15:04:05Z``; empty for none."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
