"""Key stores as separate processes share them, for the crash and replica tests.

``prepared_env`` gives the ``AUTHORITY_*`` environment of one store (the file store,
or the database store on SQLite or PostgreSQL), migrated and holding its first key as
``authority setup`` leaves it; ``open_store`` opens the same store in the test process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authority.settings import Settings
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import KeyManager, RotateResult, ensure_key
from authority.signing.records import KeyStatus, KeyStore, lifecycle
from authority.signing.signer import SigningKey
from authority.storage.database import create_engine
from authority.storage.migrate import upgrade
from tests.helpers.processes import cli_env

STORES = ["file", "sqlite", "postgresql"]
PASSPHRASE = "shared-store passphrase"


def prepared_env(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, **settings: str
) -> dict[str, str]:
    """The environment for processes sharing one store of ``kind``, migrated and with
    its first key, as ``authority setup`` leaves it. ``settings``: more ``AUTHORITY_*``."""
    if kind == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    env = cli_env(
        AUTHORITY_KEYSTORE="file" if kind == "file" else "database",
        AUTHORITY_KEYS_DIR=str(tmp_path / "keys"),
        AUTHORITY_DATABASE_URL=url,
        AUTHORITY_KEY_PASSPHRASE=PASSPHRASE,
        **{f"AUTHORITY_{name.upper()}": value for name, value in settings.items()},
    )
    # What `authority setup` does, without another interpreter's start-up time.
    upgrade(url)
    (tmp_path / "keys").mkdir(mode=0o700, exist_ok=True)
    assert asyncio.run(_first_key(settings_of(env))) is not None
    return env


async def _first_key(settings: Settings) -> RotateResult | None:
    async with open_store(settings) as store:
        return await ensure_key(store, settings)


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.from_env(env, dotenv=None)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[KeyStore]:
    if settings.keystore == "file":
        yield FileKeyStore(settings.keys_dir)
        return
    engine = create_engine(settings.database_url)
    try:
        yield DatabaseKeyStore(engine)
    finally:
        await engine.dispose()


async def key_states(settings: Settings) -> list[KeyStatus]:
    """Every key of the store with its state now."""
    async with open_store(settings) as store:
        records = await store.load()
    return lifecycle(records, time.time(), settings.retired_key_lifetime)


def current_signing_key(settings: Settings) -> SigningKey:
    """The key a server of ``settings`` (file key store) signs with now, loaded the way
    the server loads it; on a thread of its own, as callers may be inside an event loop."""
    manager = KeyManager(FileKeyStore(settings.keys_dir), settings)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, manager.load()).result()
    return manager.signing_key()
