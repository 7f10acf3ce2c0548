"""Files that hold secrets are readable by their owner only (README, "File
permissions"): the SQLite database and its ``-wal``/``-shm`` files 0600, ``var/`` 0700
when the authority creates it, whatever the umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from authority.settings import Settings
from authority.storage.database import Database
from authority.storage.migrate import upgrade


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    conn.execute(text("INSERT INTO t VALUES (1)"))


async def test_a_fresh_sqlite_database_and_its_wal_and_shm_files_are_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "authority.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    try:
        await db.write(_write)
        await db.read(lambda conn: conn.execute(text("SELECT x FROM t")).all())
        files = [path, path.with_name("authority.db-wal"), path.with_name("authority.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert mode(path.parent) == 0o700
    finally:
        await db.dispose()


async def test_a_database_left_world_readable_is_tightened_when_opened(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o755)
    path = tmp_path / "data" / "authority.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await db.write(_write)
    finally:
        await db.dispose()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o755, "a directory the authority did not create is left alone"


def test_the_secret_key_file_directory_is_owner_only_when_created(tmp_path: Path) -> None:
    settings = Settings(issuer="http://a", secret_key_file=tmp_path / "var" / "secret_key")
    settings.secret_key_bytes()
    assert mode(tmp_path / "var") == 0o700
    assert mode(tmp_path / "var" / "secret_key") == 0o600
