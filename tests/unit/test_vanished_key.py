"""A current key deleted behind the lifecycle's back (its file removed, not revoked)
leaves an older key signing: the server says so in its log, naming the missing kid,
and ``/health/ready`` reports the signing key ``degraded`` (still ready: the older key
is published, so its tokens verify) until a newer key signs (README, "Signing keys")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import KeyManager, ensure_key, revoke, rotate
from tests.helpers.clock import Clock
from tests.helpers.world import open_world, settings_in

SETTINGS = Settings(env="test")


async def two_keys(store: FileKeyStore, clock: Clock) -> tuple[str, str]:
    """An older key, retired, and the current one."""
    first = await ensure_key(store, SETTINGS, clock)
    assert first is not None
    clock.advance(10)
    second = await rotate(store, SETTINGS, now_=True, clock=clock)
    clock.advance(10)
    return first.kid, second.kid


async def test_a_deleted_current_key_is_logged_by_kid_until_a_newer_key_signs(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileKeyStore(tmp_path)
    older, current = await two_keys(store, clock)
    manager = KeyManager(store, SETTINGS, clock)
    await manager.load()
    assert manager.signing_key().kid == current
    (tmp_path / f"{current}.json").unlink()
    with caplog.at_level(logging.INFO, logger="authority.keys"):
        assert await manager.reload()
        assert manager.signing_key().kid == older
        assert manager.missing_current is not None
        assert manager.missing_current.kid == current
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert current in warning.getMessage()
        assert older in warning.getMessage()
        newer = await rotate(store, SETTINGS, now_=True, clock=clock)
        assert await manager.reload()
    assert manager.signing_key().kid == newer.kid
    assert manager.missing_current is None


async def test_revoking_the_current_key_is_not_a_missing_key(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileKeyStore(tmp_path)
    _, current = await two_keys(store, clock)
    manager = KeyManager(store, SETTINGS, clock)
    await manager.load()
    await revoke(store, SETTINGS, current, clock)
    assert await manager.reload()
    assert manager.missing_current is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def ready_once(http: Any, wanted: str) -> dict[str, Any]:
    """``/health/ready`` once its signing key check reads ``wanted``."""
    for _ in range(200):
        response = await http.get("/health/ready")
        body: dict[str, Any] = response.json()
        if body["checks"]["signing_key"] == wanted:
            assert response.status_code == 200
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"/health/ready never said {wanted}: {body}")


async def test_ready_reports_the_signing_key_degraded_while_an_older_key_signs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_in(tmp_path, keystore_poll_interval=0.02)
    # The app's logging setup replaces the root logger's handlers, caplog's among them.
    keys_log = logging.getLogger("authority.keys")
    keys_log.addHandler(caplog.handler)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(keys_log.removeHandler, caplog.handler)
        world = await stack.enter_async_context(open_world(settings, clients={}))
        store = FileKeyStore(settings.keys_dir)
        [older] = [r.kid for r in await store.load()]
        current = (await rotate(store, settings, now_=True)).kid
        await ready_once(world.http, f"ok ({current})")
        (settings.keys_dir / f"{current}.json").unlink()
        body = await ready_once(world.http, f"degraded ({older})")
        assert body["status"] == "ready"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(current in message for message in warnings)
        newer = (await rotate(store, settings, now_=True)).kid
        await ready_once(world.http, f"ok ({newer})")
