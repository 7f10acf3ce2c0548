"""Schemathesis against the service's own OpenAPI document (issue 7): every documented
operation, in-process over ASGI, with data that fits the document and data that does
not. Every answer must be documented: no 5xx, a documented status code and content
type, a body that matches its schema, documented headers.

The fuzzer sends each case as generated (no credentials, or whatever it made up) and
again with real credentials, so it reaches past client and user authentication: a valid
``client_secret_basic`` header on ``/oauth/*``, a valid ``Bearer`` access token of a
logged-in user on ``/auth/*``. Runs are reproducible: a fixed seed and derandomized
generation, no example database.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from litestar import Litestar
from litestar.serialization import encode_json
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from authority.settings import Settings
from authority.web.app import create_app
from tests.helpers.world import PASSWORD, open_world

MAX_EXAMPLES = 60
SEED = 20260707
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@dataclass
class Seeded:
    """What the database holds before the fuzzer starts: a confidential client, and a
    user who can log in."""

    settings: Settings
    client_basic: str
    username: str


@dataclass
class Credentials:
    """Real credentials for the variants of each case. The user's tokens are replaced
    whenever a request with them may have ended their session (logout, refresh)."""

    seeded: Seeded
    app: Litestar
    tokens: dict[str, Any] = field(default_factory=dict)

    def bearer(self) -> str:
        if not self.tokens:
            login = schema["/auth/login"]["POST"].Case(
                body={"username": self.seeded.username, "password": PASSWORD, "delivery": "body"},
                media_type="application/json",
            )
            response = login.call(app=self.app)
            assert response.status_code == 200, response.text
            self.tokens = response.json()["tokens"]
        return f"Bearer {self.tokens['access']}"

    def variants(self, case: Any) -> Iterator[dict[str, str] | None]:
        """The case as generated, then with real credentials where the path takes any."""
        yield None
        path = case.operation.path
        if path.startswith("/oauth/"):
            yield {"Authorization": self.seeded.client_basic}
        elif path.startswith("/auth/") and path not in ("/auth/csrf",):
            yield {"Authorization": self.bearer()}
            if case.operation.method.upper() == "POST":
                self.tokens = {}  # logout, logout-all or a refresh may have ended it


async def _seed(settings: Settings) -> Seeded:
    async with open_world(settings) as world:
        user = await world.with_session()
        return Seeded(settings, world.basic("app"), user.username)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    tmp: Path = tmp_path_factory.mktemp("schema-fuzz")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'authority.db'}",
        keys_dir=tmp / "keys",
        env="test",
        # Wrong passwords are most of what the fuzzer sends: throttling (429, documented)
        # would otherwise answer everything after the first few.
        login_max_failures_account=1_000_000,
        login_max_failures_address=1_000_000,
    )
    return asyncio.run(_seed(settings))


def openapi_document() -> dict[str, Any]:
    """The document the app serves at ``/schema/openapi.json``. Building the app touches
    neither database nor keys, so the operations are known when tests are collected
    (schemathesis' fixture-based loader does not work with this pytest). The app
    refuses a database file that is not there, so an empty one stands in; it is never
    opened."""
    with tempfile.TemporaryDirectory(prefix="schema-fuzz-") as tmp:
        unused = Path(tmp)
        (unused / "db").touch()
        settings = Settings(
            env="test",
            database_url=f"sqlite+aiosqlite:///{unused / 'db'}",
            keys_dir=unused / "keys",
        )
        document = create_app(settings).openapi_schema.to_schema()
    return dict(json.loads(encode_json(document)))  # as served: plain JSON values


schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.seed = SEED
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
)


@pytest.fixture
def app(seeded: Seeded) -> Litestar:
    """A new app on the seeded database for each operation: schemathesis starts its
    lifespan at the first request of a test and its pytest plugin ends it after the
    test (an app's lifespan runs once)."""
    return create_app(seeded.settings)


@pytest.fixture
def credentials(seeded: Seeded, app: Litestar) -> Credentials:
    return Credentials(seeded, app)


def test_the_served_document_is_the_one_fuzzed(app: Litestar) -> None:
    served = schemathesis.openapi.from_asgi("/schema/openapi.json", app)
    assert served.raw_schema == schema.raw_schema


@pytest.mark.slow  # seconds per operation
@schema.parametrize()
# The app and the credentials are meant to be shared by the examples of one operation.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_every_operation_answers_only_as_its_openapi_document_says(
    case: Any, app: Litestar, credentials: Credentials
) -> None:
    for headers in credentials.variants(case):
        case.call_and_validate(app=app, headers=headers, checks=CHECKS)
