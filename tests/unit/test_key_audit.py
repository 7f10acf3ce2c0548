"""Every step of the key lifecycle is an audit event (README, "Signing keys"):
``key.created``, ``key.promoted``, ``key.revoked`` and ``key.pruned`` with the kid and
the algorithm, never key material; from the command line and from the server's own
rotation and pruning, whichever key store holds the keys."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, select

from authority.cli.main import main
from authority.settings import Settings
from authority.signing.key_events import audit_trail
from authority.signing.manager import KeyManager, ensure_key
from authority.signing.stores import make_keystore
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from authority.storage.tables import AuditEvent
from tests.helpers.clock import Clock

KeyEvents = list[tuple[str, dict[str, Any], float]]


def _key_events(conn: Connection) -> KeyEvents:
    rows = conn.execute(
        select(AuditEvent.type, AuditEvent.detail, AuditEvent.at)
        .where(AuditEvent.type.like("key.%"))
        .order_by(AuditEvent.id)
    )
    return [(row.type, json.loads(row.detail), row.at) for row in rows]


async def events_in(url: str) -> KeyEvents:
    """The key events in the ``audit_events`` table at ``url``, oldest first."""
    db = Database(url)
    try:
        return await db.read(_key_events)
    finally:
        await db.dispose()


@pytest.mark.parametrize("keystore", ["file", "database"])
def test_the_key_commands_record_what_they_did(tmp_path: Path, keystore: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    env = {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": url,
        "AUTHORITY_KEYSTORE": keystore,
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
        # A retired key may go one second after it stopped signing.
        "AUTHORITY_ACCESS_TTL": "1",
        "AUTHORITY_JWKS_MAX_AGE": "0",
        "AUTHORITY_LEEWAY": "0",
    }

    def cli(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(main, [*args, "--json"], env=env)
        assert result.exit_code == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    first = cli("setup")["created_key"]
    pending = cli("keys", "rotate")["kid"]
    assert cli("keys", "rotate", "--now")["outcome"] == "promoted"
    replacement = cli("keys", "revoke", pending)["replacement"]
    time.sleep(1.1)
    assert cli("keys", "prune")["pruned"] == [first]

    rs256 = "RS256"
    assert [(type_, detail) for type_, detail, _ in asyncio.run(events_in(url))] == [
        ("key.created", {"kid": first, "algorithm": rs256}),
        ("key.created", {"kid": pending, "algorithm": rs256}),
        ("key.promoted", {"kid": pending, "algorithm": rs256}),
        ("key.created", {"kid": replacement, "algorithm": rs256}),
        ("key.revoked", {"kid": pending, "algorithm": rs256}),
        ("key.pruned", {"kid": first, "algorithm": rs256}),
    ]


@pytest.fixture(params=["file", "database"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    await asyncio.to_thread(upgrade, url)
    (tmp_path / "keys").mkdir()
    return Settings(
        env="test",
        database_url=url,
        keystore=request.param,
        keys_dir=tmp_path / "keys",
        key_passphrase="never in the trail",
        key_rotation_interval=3600,
        key_publish_delay=60,
    )


async def test_the_servers_own_rotation_and_pruning_are_recorded(
    settings: Settings, clock: Clock
) -> None:
    db = Database(settings.database_url)
    try:
        store = make_keystore(settings, db)
        first = await ensure_key(store, settings, clock)
        assert first is not None
        manager = KeyManager(store, settings, clock, audit_trail(db, clock))
        await manager.load()
        clock.advance(3600 - 60)
        await manager.maintain()
        [published] = [k for k in await store.load() if k.kid != first.kid]
        created_at = clock()
        clock.advance(60 + settings.retired_key_lifetime)
        await manager.maintain()
        stored = await db.read(_key_events)
    finally:
        await db.dispose()
    assert [(type_, detail["kid"], at) for type_, detail, at in stored] == [
        ("key.created", published.kid, created_at),
        ("key.pruned", first.kid, clock()),
    ]
    assert all(detail == {"kid": detail["kid"], "algorithm": "RS256"} for _, detail, _ in stored)
    assert "never in the trail" not in repr(stored)
