"""``authority serve``'s workers freeze what start-up made (``gc.freeze``: full
collections walk far fewer objects); an app built by someone else's code does not
touch the collector unless asked (frozen objects are never collected as cycles)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator

import pytest
from litestar.testing import AsyncTestClient

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.migrate import upgrade
from authority.web.app import create_app


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite collects as usual


@pytest.mark.parametrize("freeze", [True, False])
async def test_start_up_is_frozen_only_when_asked(
    make_settings: Callable[..., Settings], unfrozen: None, freeze: bool
) -> None:
    settings = make_settings(secret_key="s" * 40)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    assert gc.get_freeze_count() == 0
    async with AsyncTestClient(create_app(settings, freeze_startup=freeze)) as client:
        assert (await client.get("/health/live")).status_code == 200
        frozen = gc.get_freeze_count()
    assert (frozen > 10_000) is freeze, frozen
