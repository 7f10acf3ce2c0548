"""The SQLite writer (``authority.storage.writer.Writer``): writes queued together
commit as one group, where a transaction that raises is rolled back alone and nothing
is answered (nor said after commit) before the group has committed; every write holds
the lock file beside the database, so a writer of another process waits in the kernel;
quick writes of one turn of the event loop run as one group on the loop, unless the
connection or the lock is taken, when they go to the thread and the loop goes on;
``AUTHORITY_SQLITE_FULL_SYNC`` picks ``synchronous=FULL``."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, text

from authority.storage.database import Database, after_commit, sqlite_path


class Refused(Exception):
    pass


def _note(conn: Connection, name: str, said: list[str], fail: bool = False) -> str:
    conn.execute(
        text("INSERT INTO login_throttle (key, failures, window_start) VALUES (:k, 1, 0)"),
        {"k": name},
    )
    after_commit(conn, lambda: said.append(name))
    if fail:
        raise Refused(name)
    return name


def _keys(conn: Connection) -> list[str]:
    return sorted(conn.execute(text("SELECT key FROM login_throttle")).scalars())


def _wait(conn: Connection, started: threading.Event, release: threading.Event) -> None:
    started.set()
    release.wait(10)


async def test_writes_queued_together_commit_but_the_one_that_raises_is_rolled_back_alone(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    try:
        started, release = threading.Event(), threading.Event()
        said: list[str] = []
        blocker = asyncio.ensure_future(db.write(_wait, started, release))
        await asyncio.to_thread(started.wait, 10)
        # Queued while the writer is busy: they run as one group after it.
        writes = [
            asyncio.ensure_future(db.write(_note, name, said, fail=name == "b"))
            for name in ("a", "b", "c")
        ]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in writes)
        release.set()
        await blocker
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert results[0] == "a"
        assert results[2] == "c"
        assert isinstance(results[1], Refused)
        assert await db.read(_keys) == ["a", "c"]
        assert said == ["a", "c"]  # after commit, and never for the rolled-back one
    finally:
        await db.dispose()


async def test_a_write_waits_for_another_process_holding_the_lock_file(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    assert path is not None
    db = Database(sqlite_url)
    try:
        await db.write(_note, "first", [])  # opens the writer and its lock file
        lock_file = Path(f"{path}-writer.lock")
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        fd = os.open(lock_file, os.O_RDWR)  # another open file: another process's lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            write = asyncio.ensure_future(db.write(_note, "second", []))
            await asyncio.sleep(0.3)
            assert not write.done()
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert await asyncio.wait_for(write, 10) == "second"
        finally:
            os.close(fd)
        assert await db.read(_keys) == ["first", "second"]
    finally:
        await db.dispose()


def _where(conn: Connection, name: str, said: list[str], threads: list[int]) -> str:
    threads.append(threading.get_ident())
    return _note(conn, name, said, fail=name == "b")


async def test_quick_writes_of_one_turn_run_as_one_group_on_the_loop(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        await db.write_quick(_keys)  # the connection is open: only the group commits next
        commits: list[int] = []
        event.listen(db._sync, "commit", lambda conn: commits.append(1))
        said: list[str] = []
        threads: list[int] = []
        writes = [db.write_quick(_where, name, said, threads) for name in ("a", "b", "c")]
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert results[0] == "a"
        assert results[2] == "c"
        assert isinstance(results[1], Refused)
        assert threads == [threading.get_ident()] * 3  # no thread: the loop's own
        assert commits == [1]  # one COMMIT for the three
        assert await db.read(_keys) == ["a", "c"]
        assert said == ["a", "c"]
    finally:
        await db.dispose()


async def test_a_quick_write_never_holds_the_loop_while_another_process_has_the_lock(
    sqlite_url: str,
) -> None:
    path = sqlite_path(sqlite_url)
    assert path is not None
    db = Database(sqlite_url)
    try:
        await db.write_quick(_note, "first", [])
        fd = os.open(f"{path}-writer.lock", os.O_RDWR)  # another process's lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            released = threading.Event()

            def release() -> None:  # from another thread: a blocked loop cannot hang us
                fcntl.flock(fd, fcntl.LOCK_UN)
                released.set()

            timer = threading.Timer(2.0, release)
            timer.start()
            threads: list[int] = []
            write = asyncio.ensure_future(db.write_quick(_where, "second", [], threads))
            for _ in range(10):  # the loop goes on meanwhile
                await asyncio.sleep(0.02)
            assert not released.is_set()  # ticked while the other process held the lock
            assert not write.done()
            assert await asyncio.wait_for(write, 10) == "second"
            assert released.is_set()
            assert threads
            assert threads[0] != threading.get_ident()  # the thread ran it
            timer.join()
        finally:
            os.close(fd)
        assert await db.read(_keys) == ["first", "second"]
    finally:
        await db.dispose()


async def test_a_quick_write_waits_its_turn_behind_the_thread_holding_the_connection(
    sqlite_url: str,
) -> None:
    db = Database(sqlite_url)
    try:
        started, release = threading.Event(), threading.Event()
        blocker = asyncio.ensure_future(db.write(_wait, started, release))
        await asyncio.to_thread(started.wait, 10)
        threads: list[int] = []
        write = asyncio.ensure_future(db.write_quick(_where, "after", [], threads))
        await asyncio.sleep(0.1)
        assert not write.done()  # the loop ran on; the write waits for the connection
        release.set()
        await blocker
        assert await asyncio.wait_for(write, 10) == "after"
        assert threads
        assert threads[0] != threading.get_ident()
        assert await db.read(_keys) == ["after"]
    finally:
        await db.dispose()


def _synchronous(conn: Connection) -> int:
    return int(conn.execute(text("PRAGMA synchronous")).scalar_one())


@pytest.mark.parametrize(("full_sync", "level"), [(False, 1), (True, 2)])
async def test_full_sync_setting_picks_synchronous_full(
    sqlite_url: str, full_sync: bool, level: int
) -> None:
    db = Database(sqlite_url, full_sync=full_sync)
    try:
        assert await db.write(_synchronous) == level  # 1 NORMAL, 2 FULL
        assert await db.read(_synchronous) == level
    finally:
        await db.dispose()
