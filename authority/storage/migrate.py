"""Applying the packaged Alembic migrations, and checking a database is at their head."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from authority.storage.database import (
    Database,
    DatabaseUnavailable,
    describe_db_error,
    sqlite_path,
)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``; safe to run again. A SQLite
    file this call created is removed again when the migration fails."""
    path = sqlite_path(url)
    created = path is not None and not path.exists()
    try:
        command.upgrade(alembic_config(url), revision)
    except BaseException:
        if created and path is not None:
            for file in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm"))):
                with contextlib.suppress(OSError):
                    file.unlink()
        raise


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _current(connection: Connection) -> str | None:
    # Alembic announces its dialect at INFO on every check; only upgrades are news.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    return MigrationContext.configure(connection).get_current_revision()


async def check_database(db: Database) -> None:
    """Reachable and migrated to this version's head, or one line saying which not."""
    await db.ping()
    try:
        revision = await current_revision(db.engine)
    except (OSError, OperationalError, DBAPIError) as exc:
        raise DatabaseUnavailable(describe_db_error(exc)) from exc
    if revision != head_revision():
        raise DatabaseUnavailable(
            f"database is at migration {revision or 'none'}, this version needs "
            f"{head_revision()} (run `authority db upgrade`)"
        )
