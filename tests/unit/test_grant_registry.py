"""The grants registry is the one source of grant types: the token endpoint dispatches
through it, discovery and the OpenAPI form describe it, and ``clients create --grant``
offers it. A grant registered there (one module, one line) works end to end."""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import AsyncIterator, Callable

import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient

from authority.accounts.clients import ClientRecord, create_client
from authority.cli.main import main
from authority.grants import GRANTS
from authority.grants.common import Params, TokenResponse, bearer, requested_scope
from authority.sessions.service import Authority
from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.database import Database
from authority.storage.migrate import upgrade
from authority.web.app import create_app

ECHO = "urn:example:grant-type:echo"


async def echo_handle(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> TokenResponse:
    """A toy grant: a token for the client itself, named by the ``subject`` parameter."""
    scope = requested_scope(params, client.scopes)
    token = auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=params.get("subject", client.client_id),
        client_id=client.client_id,
        scope=scope,
        audience=auth.settings.audience,
    )
    return bearer(token.token, auth.signer.ttl, scope, None)


def echo_module() -> types.ModuleType:
    module = types.ModuleType("echo")
    module.GRANT_TYPE = ECHO  # type: ignore[attr-defined]
    module.PARAMETERS = ("subject", "scope")  # type: ignore[attr-defined]
    module.handle = echo_handle  # type: ignore[attr-defined]
    return module


@pytest.fixture
async def service(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    settings = make_settings(secret_key="s" * 40)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def test_discovery_advertises_exactly_the_registered_grants(
    service: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    metadata = (await service.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["grant_types_supported"] == list(GRANTS)


async def test_the_openapi_token_form_lists_the_registered_grants_and_their_parameters(
    service: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    schema = (await service.get("/schema/openapi.json")).json()
    form = schema["paths"]["/oauth/token"]["post"]["requestBody"]["content"][
        "application/x-www-form-urlencoded"
    ]["schema"]
    assert form["properties"]["grant_type"]["enum"] == list(GRANTS)
    for grant in GRANTS.values():
        assert set(grant.PARAMETERS) <= set(form["properties"])


def test_clients_create_offers_exactly_the_registered_grants() -> None:
    result = CliRunner().invoke(main, ["clients", "create", "x", "--grant", "nonsense"])
    assert result.exit_code == 1
    for name in GRANTS:
        assert repr(name) in result.stderr


async def test_a_grant_added_to_the_registry_is_dispatched_and_advertised(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(GRANTS, ECHO, echo_module())
    settings = make_settings(secret_key="s" * 40)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    db = Database(settings.database_url)
    client = await db.write(
        create_client,
        name="echo",
        secret_hash=None,
        grant_types=[ECHO],
        scopes=["read"],
        audiences=[],
        now=time.time(),
    )
    other = await db.write(
        create_client,
        name="other",
        secret_hash=None,
        grant_types=["refresh_token"],
        scopes=[],
        audiences=[],
        now=time.time(),
    )
    await db.dispose()
    async with AsyncTestClient(create_app(settings)) as http:
        metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert ECHO in metadata["grant_types_supported"]
        form = {"grant_type": ECHO, "client_id": client.client_id, "subject": "someone"}
        answer = await http.post("/oauth/token", data=form)
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "read"
        # The endpoint's own steps still run first: a client not allowed the grant.
        refused = await http.post("/oauth/token", data={**form, "client_id": other.client_id})
        assert refused.status_code == 400
        assert refused.json()["error"] == "unauthorized_client"
