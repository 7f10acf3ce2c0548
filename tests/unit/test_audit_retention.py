"""Audit events are kept for ``AUDIT_RETENTION`` and then pruned in short batches, by
``authority tokens prune`` and by every server's maintenance loop, on both backends;
token writes go on between the batches."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection

from authority.cli.main import main
from authority.sessions.pruning import prune_events, run_pruning
from authority.settings import Settings, SettingsError
from authority.storage import audit
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from tests.helpers.clock import Clock

DAY = 86400.0


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


def add_events(conn: Connection, ages: list[float], now: float) -> None:
    for age in ages:
        audit.record(conn, "login.failed", at=now - age, username="a", detail={"age": age})


def remaining_ages(conn: Connection) -> list[float]:
    return sorted(e["detail"]["age"] for e in audit.query(conn, audit.Filter(limit=10000)))


async def test_events_older_than_the_retention_go_in_batches_and_newer_ones_stay(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await db.write(add_events, [91 * DAY] * 7 + [89 * DAY, DAY, 0.0], clock.now)
    batches: list[int] = []
    write = db.write

    async def counted(fn: object, *args: object) -> int:
        deleted: int = await write(fn, *args)  # type: ignore[arg-type]
        batches.append(deleted)
        return deleted

    monkeypatch.setattr(db, "write", counted)  # counts the transactions, changes nothing
    assert await prune_events(db, clock, retention=90 * DAY, batch=3) == 7
    monkeypatch.undo()
    assert batches == [3, 3, 1]
    assert await db.read(remaining_ages) == [0.0, DAY, 89 * DAY]
    assert await prune_events(db, clock, retention=90 * DAY) == 0


async def test_a_write_goes_through_between_two_batches(db: Database, clock: Clock) -> None:
    await db.write(add_events, [100 * DAY] * 12, clock.now)
    prune = asyncio.create_task(prune_events(db, clock, retention=DAY, batch=3))
    await asyncio.sleep(0.05)  # the first batch is done, the pause between batches begins
    await db.write(add_events, [0.0], clock.now)  # a token endpoint's write
    assert not prune.done(), "the write waited for the whole prune"
    assert await prune == 12
    assert await db.read(remaining_ages) == [0.0]


async def test_the_servers_maintenance_loop_prunes_old_events(db: Database, clock: Clock) -> None:
    await db.write(add_events, [3 * DAY, 60.0], clock.now)
    loop = asyncio.create_task(run_pruning(db, clock, 0.01, 300, audit_retention=DAY))
    try:
        deadline = time.monotonic() + 10
        while await db.read(remaining_ages) != [60.0] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    assert await db.read(remaining_ages) == [60.0]


def test_tokens_prune_deletes_events_past_audit_retention(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    upgrade(url)

    async def fill() -> None:
        database = Database(url)
        try:
            await database.write(add_events, [7200.0, 60.0], time.time())
        finally:
            await database.dispose()

    asyncio.run(fill())
    env = {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": url,
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        "AUTHORITY_AUDIT_RETENTION": "3600",
    }
    pruned = CliRunner().invoke(main, ["tokens", "prune", "--json"], env=env)
    assert pruned.exit_code == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"deleted": 0, "audit_events_deleted": 1}
    listed = CliRunner().invoke(main, ["events", "--json"], env=env)
    assert [e["detail"]["age"] for e in json.loads(listed.stdout)["events"]] == [60.0]
    text = CliRunner().invoke(main, ["tokens", "prune"], env=env)
    assert "0 audit event(s) older than AUDIT_RETENTION" in text.stdout


def test_audit_retention_defaults_to_90_days_and_must_be_positive() -> None:
    assert Settings.from_env({}, dotenv=None).audit_retention == 90 * DAY
    with pytest.raises(SettingsError, match="AUTHORITY_AUDIT_RETENTION must be positive"):
        Settings.from_env({"AUTHORITY_AUDIT_RETENTION": "0"}, dotenv=None)
