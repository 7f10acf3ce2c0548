"""SQLite's writes (README, "Durability and workers"): one kept connection runs the write
transactions of a process in order, each group of them under ``BEGIN IMMEDIATE`` and
the ``flock`` of the lock file beside the database, which queues the writers of every
process in the kernel.

A group is what is queued when the connection is free: each transaction in a savepoint
(one that raises is rolled back alone), one ``COMMIT`` (group commit: the log write,
the lock and the wake-ups are shared). Nothing is answered before the commit; a failed
commit fails them all.

Two ways in. ``Writer.run`` hands the group to the writer thread, so the event loop
goes on while it waits for the lock or runs a slow transaction. ``quick=True`` is for
the hot path's short writes (a refresh's rotation): they are grouped per turn of the
event loop and run on the loop itself when the connection and the lock are free at
once (no thread hop: a hop costs a request more CPU than SQLite's own work), else they
go to the thread like the rest, so the loop never waits for another process's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

P = ParamSpec("P")
T = TypeVar("T")
Work = Callable[Concatenate[Connection, P], T]

MAX_GROUP = 64  # write transactions committed together at most

# The actions of the transaction being run (``after_commit``): a context variable, not
# the connection's ``info``, which an outage may make unreadable (a 500 instead of 503).
pending_actions: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "authority_after_commit", default=None
)


def after_commit(conn: Connection, action: Callable[[], None]) -> None:
    """Run ``action`` once the transaction of ``conn`` (begun by ``Database``) commits;
    never if it rolls back. For what must not be said before it is true (audit lines).
    Outside ``Database`` (a caller's own engine) it runs at once."""
    pending = pending_actions.get()
    if pending is None:
        action()
    else:
        pending.append(action)


def run_after_commit(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        action()


Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Any]


class Writer:
    """The write transactions of one process (this module's docstring)."""

    def __init__(self, engine: Engine, lock: int | None):
        self._engine = engine
        self._lock = lock
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        # Held while the connection is in use: by the thread, or by the loop (quick).
        # The flock alone cannot tell them apart: both lock through one open file.
        self._busy = threading.Lock()
        self._conn: Connection | None = None
        self._home: asyncio.AbstractEventLoop | None = None
        self._batch: list[Item] = []

    async def run(
        self, context: contextvars.Context, work: Callable[[Connection], T], quick: bool = False
    ) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = (loop, future, context, work)
        if quick and self._home in (None, loop):
            self._home = loop
            self._batch.append(item)
            if len(self._batch) == 1:  # the first of this turn: run them all at its end
                loop.call_soon(self._flush)
        else:
            self._hand_over([item])
        return await future

    def _hand_over(self, items: list[Item]) -> None:
        if self._thread is None:
            with self._guard:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._serve, name="authority-db-write", daemon=True
                    )
                    self._thread.start()
        for item in items:
            self._queue.put(item)

    def _flush(self) -> None:
        """On the loop: the quick writes of this turn, here if nobody holds the
        connection or the lock, else on the thread."""
        group, self._batch = self._batch, []
        if self._busy.acquire(blocking=False):
            try:
                if self._take_lock(blocking=False):
                    try:
                        for start in range(0, len(group), MAX_GROUP):
                            self._run_group(group[start : start + MAX_GROUP], inline=True)
                    finally:
                        self._release_lock()
                    return
            finally:
                self._busy.release()
        self._hand_over(group)

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close the lock file."""
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
        with self._busy:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = None

    def _serve(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            with self._busy:
                self._take_lock(blocking=True)
                try:
                    self._run_group(group, inline=False)
                finally:
                    self._release_lock()

    def _take_lock(self, blocking: bool) -> bool:
        """The lock file's ``flock``; False only when another process holds it and
        ``blocking`` is False. A file system without locks leaves SQLite's busy handler
        alone in charge."""
        if self._lock is None:
            return True
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            self._lock = None
        return True

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _run_group(self, group: list[Item], inline: bool) -> None:
        outcomes: list[tuple[bool, Any, list[Callable[[], None]]]] = []
        try:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                self._conn = self._engine.connect()
            self._transaction(self._conn, group, outcomes)
        except BaseException as exc:  # nothing of the group committed
            outcomes = [(False, exc, [])] * len(group)
            if isinstance(exc, (DBAPIError, OSError)) and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
        for (loop, future, context, _), (ok, value, pending) in zip(group, outcomes, strict=False):
            if ok:
                try:  # only reached once the transaction has committed
                    context.run(run_after_commit, pending)
                except Exception as exc:
                    ok, value = False, exc
            if inline:
                _settle(future, value, not ok)
                continue
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, future, value, not ok)

    @staticmethod
    def _transaction(conn: Connection, group: list[Item], outcomes: list[Any]) -> None:
        with conn.begin():
            dbapi: Any = conn.connection.dbapi_connection
            alone = len(group) == 1  # no savepoint: the transaction is the item's
            for _, _, context, work in group:
                pending: list[Callable[[], None]] = []
                if not alone:
                    dbapi.execute("SAVEPOINT authority_write")
                try:
                    value = context.run(_with_pending, pending, work, conn)
                except Exception as exc:
                    if alone or not dbapi.in_transaction:
                        raise  # SQLite ended the transaction: the whole group fails
                    dbapi.execute("ROLLBACK TO authority_write")
                    dbapi.execute("RELEASE authority_write")
                    outcomes.append((False, exc, []))
                    continue
                if not alone:
                    dbapi.execute("RELEASE authority_write")
                outcomes.append((True, value, pending))


def _with_pending(pending: list[Callable[[], None]], work: Work[[], T], conn: Connection) -> T:
    token = pending_actions.set(pending)
    try:
        return work(conn)
    finally:
        pending_actions.reset(token)


def _settle(future: asyncio.Future[Any], result: Any, failed: bool) -> None:
    if not future.done():  # else the caller was cancelled: nobody waits for the answer
        (future.set_exception if failed else future.set_result)(result)
