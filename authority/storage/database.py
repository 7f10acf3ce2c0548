"""Database access: SQLite (WAL, busy timeout) embedded, PostgreSQL for replicas.

Repository code is plain synchronous functions ``fn(conn, ...)`` over SQLAlchemy Core,
run as one transaction by ``Database.read`` or ``Database.write``. On PostgreSQL the
function runs on the event loop through asyncpg (``AsyncConnection.run_sync``); on
SQLite the whole transaction runs in one hop to a worker thread on the standard
``sqlite3`` module, instead of one thread hop per statement as with aiosqlite. Writes
go through a single writer thread and start with ``BEGIN IMMEDIATE``, so a transaction
never has to upgrade its lock and the database, not luck, orders concurrent writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 5000
# The actions of the transaction being run (``after_commit``): a context variable, not
# the connection's ``info``, which an outage may make unreadable (a 500 instead of 503).
_after_commit: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "authority_after_commit", default=None
)
P = ParamSpec("P")
T = TypeVar("T")
Work = Callable[Concatenate[Connection, P], T]


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or is busy; callers answer 503 or exit with one line."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine (migrations, one-off commands); SQLite in WAL mode."""
    if is_sqlite(url):
        _make_parent(url)
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_timeout", 5)
    kwargs.setdefault("connect_args", {"timeout": 5, "command_timeout": 10})
    return create_async_engine(url, **kwargs)


def _make_parent(url: str) -> None:
    """The SQLite file holds password, token and client-secret hashes (and with
    ``KEYSTORE=database`` the private keys): README, "File permissions". Its directory
    is made 0700 when the authority creates it, and the file is created 0600 before
    SQLite opens it, since SQLite gives its ``-wal`` and ``-shm`` files the database
    file's mode. A file left readable by others by an older version is tightened."""
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def describe_db_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "database did not answer in time"
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if "database is locked" in first_line:
        return "database is busy"
    return f"database unreachable: {first_line}"


class Database:
    """One transaction per call: ``await db.write(fn, *args)`` runs ``fn(conn, *args)``."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = is_sqlite(url)
        path = sqlite_path(url)
        if path is not None and not path.exists():
            # Only migrations create the database: opening one that is not there would
            # leave an empty file behind and then fail anyway (not migrated).
            raise DatabaseUnavailable(
                f"no database at {path} (run `authority db upgrade`, or `authority setup`)"
            )
        # The async engine serves the key store and one-off checks on both backends,
        # and everything on PostgreSQL.
        self.engine = create_engine(url)
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
            event.listen(self._sync, "connect", _sqlite_connect)
            event.listen(self._sync, "begin", _sqlite_begin)
            self._read_engine = self._sync.execution_options(authority_write=False)
            self._write_engine = self._sync.execution_options(authority_write=True)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="authority-db-write")
            self._readers = ThreadPoolExecutor(3, thread_name_prefix="authority-db-read")

    async def read(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(False, lambda conn: fn(conn, *args, **kwargs))

    async def write(self, fn: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(True, lambda conn: fn(conn, *args, **kwargs))

    async def _run(self, write: bool, work: Callable[[Connection], T]) -> T:
        try:
            if self._sync is not None:
                engine = self._write_engine if write else self._read_engine
                loop = asyncio.get_running_loop()
                executor = self._writer if write else self._readers
                # The request's context goes along, for the audit trail's request id.
                context = contextvars.copy_context()
                return await loop.run_in_executor(executor, context.run, _transaction, engine, work)
            pending: list[Callable[[], None]] = []
            token = _after_commit.set(pending)
            try:
                async with self.engine.begin() as conn:
                    result = await conn.run_sync(work)
            finally:
                _after_commit.reset(token)
            _run_after_commit(pending)  # only reached once the transaction has committed
            return result
        except (OSError, TimeoutError, PoolTimeout, OperationalError, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not is_outage(exc):
                raise
            raise DatabaseUnavailable(describe_db_error(exc)) from exc

    async def ping(self, within: float = 3.0) -> None:
        """Raise ``DatabaseUnavailable`` with a one-line reason unless ``SELECT 1`` answers."""
        try:
            async with asyncio.timeout(within):
                await self.read(_select_one)
        except TimeoutError as exc:
            raise DatabaseUnavailable(describe_db_error(exc)) from exc

    async def dispose(self) -> None:
        if self._sync is not None:
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            self._sync.dispose()
        await self.engine.dispose()


def after_commit(conn: Connection, action: Callable[[], None]) -> None:
    """Run ``action`` once the transaction of ``conn`` (begun by ``Database``) commits;
    never if it rolls back. For what must not be said before it is true (audit lines).
    Outside ``Database`` (a caller's own engine) it runs at once."""
    pending = _after_commit.get()
    if pending is None:
        action()
    else:
        pending.append(action)


def _run_after_commit(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        action()


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """On the writer or a reader thread, in a copy of the caller's context."""
    pending: list[Callable[[], None]] = []
    token = _after_commit.set(pending)
    try:
        with engine.begin() as conn:
            result = work(conn)
    finally:
        _after_commit.reset(token)
    _run_after_commit(pending)  # only reached once the transaction has committed
    return result


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


def is_outage(exc: DBAPIError) -> bool:
    """Connection loss, lock timeouts and serialization failures, not programming errors."""
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return name in {
        "SerializationError",
        "DeadlockDetectedError",
        "LockNotAvailableError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "TooManyConnectionsError",
        "AdminShutdownError",
        "QueryCanceledError",
    }


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    # Let SQLAlchemy's "begin" event below issue BEGIN, so writes can say IMMEDIATE.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("authority_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
