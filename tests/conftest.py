"""Fixtures shared by every folder of tests, and the ``slow`` mark of whole folders.

The tests are grouped by kind: ``unit/`` runs in-process, ``integration/`` starts real
processes, ``browser/`` drives a browser (or the BFF that serves one) and ``chaos/``
injects faults. Everything in the last three is marked ``slow``, as is any unit test
that takes more than a couple of seconds: ``-m 'not slow'`` is the quick loop.
What the tests share besides fixtures is in ``tests/helpers``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from authority.settings import Settings
from authority.storage.migrate import upgrade
from tests.helpers.clock import Clock
from tests.helpers.postgres import BACKENDS, postgres_database
from tests.helpers.processes import Server
from tests.helpers.world import World, WorldConfig

TESTS = Path(__file__).resolve().parent
SLOW_FOLDERS = ("integration", "browser", "chaos")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a folder of real processes, browsers or faults is slow."""
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


# --- databases -------------------------------------------------------------------------


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new empty PostgreSQL database for one test, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    upgrade(url)
    return url


# --- settings and time -----------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
            "keys_dir": tmp_path / "keys",
            "env": "test",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return build


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- the app in-process ----------------------------------------------------------------
#
# Tests that use ``world`` run in their module's event loop: such a module says
# ``pytestmark = pytest.mark.asyncio(loop_scope="module")``.


@pytest.fixture(scope="module")
def world_config() -> WorldConfig:
    """How the module's world is made; a module overrides this fixture to change it."""
    return WorldConfig()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running_world(
    world_config: WorldConfig, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    """The app behind ``world``: one for the whole module (starting one per test would
    cost most of the run), tests staying apart by users of their own. A module whose
    tests need a new app and database each overrides this with a function-scoped
    fixture (``tests/unit/test_auth_throttle.py``)."""
    async with world_config.open(tmp_path_factory.mktemp("world")) as opened:
        yield opened


@pytest_asyncio.fixture(loop_scope="module")
async def world(
    running_world: World, world_config: WorldConfig, caplog: pytest.LogCaptureFixture
) -> World:
    """The module's world as this test sees it: ``unchanged`` also proves that the test
    logged no server error, and with ``world_config.session_scope`` the test has a user
    of its own, logged in once (``World.with_session``)."""
    if world_config.session_scope is None:
        return running_world.seen_by(caplog)
    return await running_world.with_session(caplog, scope=world_config.session_scope)


# --- real processes --------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test are stopped after it, whatever happens."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()
