"""Applying the packaged Alembic migrations, and checking a database is at their head."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from authority.storage.database import Database, DatabaseUnavailable, describe_db_error

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``; safe to run again."""
    command.upgrade(alembic_config(url), revision)


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
