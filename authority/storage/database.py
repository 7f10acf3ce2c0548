"""Database access: SQLite (WAL, busy timeout) embedded, PostgreSQL for replicas.

Repository code is plain synchronous functions ``fn(conn, ...)`` over SQLAlchemy Core,
run by ``Database.read``, ``Database.write`` (one transaction) or ``write_quick`` (a
short one of the hot path). On PostgreSQL the function runs on the event loop through
asyncpg (``run_sync``); on SQLite reads run in one hop to a reader thread, writes by
the ``Writer`` (``storage.writer``: group commit, ``BEGIN IMMEDIATE``, a ``flock``
queueing the writers of every process: README, "Durability and workers").
``AUTHORITY_SQLITE_FULL_SYNC`` picks synchronous=FULL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from authority.storage.batches import IN_FLIGHT
from authority.storage.errors import DatabaseUnavailable as DatabaseUnavailable
from authority.storage.errors import describe_db_error as describe_db_error
from authority.storage.errors import is_outage as is_outage
from authority.storage.writer import Work, Writer, pending_actions, run_after_commit
from authority.storage.writer import after_commit as after_commit

SQLITE_BUSY_TIMEOUT_MS = 5000
P = ParamSpec("P")
T = TypeVar("T")


def open_write_lock(path: Path) -> int | None:
    """The lock file beside the database (0600), or None (a read-only directory)."""
    try:
        return os.open(path.with_name(path.name + "-writer.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_engine(url: str, *, full_sync: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine (migrations, one-off commands); SQLite in WAL mode."""
    if is_sqlite(url):
        _make_parent(url)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_pragmas, full_sync))
        return engine
    # No overflow: a connection opened for a burst and closed after it costs a server
    for name, value in (("pool_size", 10), ("max_overflow", 0), ("pool_timeout", 5)):
        kwargs.setdefault(name, value)  # process and set-up queries: far more than a wait
    kwargs["connect_args"] = {"timeout": 5, "command_timeout": 10, **kwargs.get("connect_args", {})}
    return create_async_engine(url, **kwargs)


def _make_parent(url: str) -> None:
    """The SQLite file holds secrets' hashes (and with ``KEYSTORE=database`` the private
    keys): README, "File permissions". Its directory is made 0700, and the file 0600
    before SQLite opens it (its ``-wal`` and ``-shm`` files get its mode); a file left
    readable by others by an older version is tightened."""
    path = sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError:
        return  # SQLite reports what is wrong (read-only, missing permission) itself
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)


def _sqlite_pragmas(full_sync: bool, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA synchronous={'FULL' if full_sync else 'NORMAL'}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """One transaction (or statement) per call: ``await db.write(fn, *args)``."""

    def __init__(self, url: str, *, full_sync: bool = False):
        self.url = url
        self.sqlite = is_sqlite(url)
        path = sqlite_path(url)
        if path is not None and not path.exists():
            # Only migrations create the database: opening one that is not there would
            # leave an empty file behind and then fail anyway (not migrated).
            raise DatabaseUnavailable(
                f"no database at {path} (run `authority db upgrade`, or `authority setup`)"
            )
        # The key store and one-off checks on both backends; everything on PostgreSQL.
        self.engine = create_engine(url, full_sync=full_sync)
        # PostgreSQL: the hot path's few statements (a refresh's rotation) on their own
        # small pool, whose connections keep one generic plan per prepared statement.
        # PostgreSQL would otherwise plan them anew on every call: it keeps choosing a
        # custom plan, whose planning costs the server more than running the statement.
        self.hot_engine: AsyncEngine | None = None
        if not self.sqlite:
            self.hot_engine = create_engine(
                url,
                pool_size=IN_FLIGHT,
                connect_args={"server_settings": {"plan_cache_mode": "force_generic_plan"}},
            )
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sync: Engine | None = None
        if self.sqlite:
            _make_parent(url)
            sync_url = make_url(url).set(drivername="sqlite")
            self._sync = create_sync_engine(
                sync_url,
                pool_size=4,
                max_overflow=4,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            event.listen(self._sync, "connect", functools.partial(_sqlite_connect, full_sync))
            event.listen(self._sync, "begin", _sqlite_begin)
            self._read_engine = self._sync.execution_options(authority_write=False)
            self._write_engine = self._sync.execution_options(authority_write=True)
            lock = open_write_lock(path) if path is not None else None
            self._writer = Writer(self._write_engine, lock)
            self._readers = ThreadPoolExecutor(3, thread_name_prefix="authority-db-read")

    async def read(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(False, lambda conn: fn(conn, *args, **kwargs))

    async def write(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(True, lambda conn: fn(conn, *args, **kwargs))

    async def write_quick(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``write`` for a short transaction of the hot path that never waits on
        anything but the database: on SQLite it may run on the event loop itself, with
        the other quick writes of this turn of the loop (``storage.writer``)."""
        return await self._run(True, lambda conn: fn(conn, *args, **kwargs), quick=True)

    async def _run(self, write: bool, work: Callable[[Connection], T], quick: bool = False) -> T:
        try:
            if self._sync is not None:
                # The request's context goes along, for the audit trail's request id.
                context = contextvars.copy_context()
                if write:
                    return await self._writer.run(context, work, quick)
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._readers, context.run, _transaction, self._read_engine, work
                )
            pending: list[Callable[[], None]] = []
            token = pending_actions.set(pending)
            try:
                # Reads too: under READ COMMITTED each statement sees the latest commits.
                async with (self.engine if write else self.autocommit).connect() as conn:
                    result = await conn.run_sync(work)
                    if write:
                        await conn.commit()
            finally:
                pending_actions.reset(token)
            run_after_commit(pending)  # only reached once the transaction has committed
            return result
        except (OSError, TimeoutError, PoolTimeout, OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not is_outage(exc):
                raise
            raise DatabaseUnavailable(describe_db_error(exc)) from exc

    async def ping(self, within: float = 3.0) -> None:
        """Raise ``DatabaseUnavailable`` with a one-line reason unless ``SELECT 1`` answers."""
        try:
            async with asyncio.timeout(within):
                await self.read(lambda conn: conn.execute(text("SELECT 1")))
        except TimeoutError as exc:
            raise DatabaseUnavailable(describe_db_error(exc)) from exc

    async def dispose(self) -> None:
        if self._sync is not None:
            await asyncio.to_thread(self._writer.close)
            self._readers.shutdown(wait=True)
            self._sync.dispose()
        await self.engine.dispose()
        if self.hot_engine is not None:
            await self.hot_engine.dispose()


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """On a reader thread, in a copy of the caller's context."""
    pending: list[Callable[[], None]] = []
    token = pending_actions.set(pending)
    try:
        with engine.begin() as conn:
            result = work(conn)
    finally:
        pending_actions.reset(token)
    run_after_commit(pending)  # only reached once the transaction has committed
    return result


def _sqlite_connect(full_sync: bool, dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(full_sync, dbapi_connection, record)
    # Let SQLAlchemy's "begin" event below issue BEGIN, so writes can say IMMEDIATE.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("authority_write", False)
    # On the driver's connection: SQLAlchemy's statement machinery costs more than BEGIN.
    dbapi: Any = conn.connection.dbapi_connection
    dbapi.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
