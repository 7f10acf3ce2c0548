"""Discovery, JWKS, health, metrics and the OpenAPI document over the real app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from litestar import Litestar
from litestar.testing import AsyncTestClient

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key, rotate
from authority.signing.records import KeyStoreError
from authority.storage.database import Database, DatabaseUnavailable
from authority.storage.migrate import upgrade
from authority.web.app import create_app
from tests.helpers.stores import current_signing_key


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings(jwks_max_age=123, keystore_poll_interval=0.1)
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    return settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def test_metadata_is_valid_rfc8414(
    client: AsyncTestClient[Litestar],
    settings: Settings,
) -> None:
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    document = response.json()
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == settings.issuer
    assert document["jwks_uri"] == f"{settings.issuer}/.well-known/jwks.json"
    for field in (
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "scopes_supported",
        "response_types_supported",
    ):
        assert field in document


async def test_metadata_advertises_no_jwt_client_authentication(
    client: AsyncTestClient[Litestar],
) -> None:
    """Clients authenticate with a secret or not at all (RFC 6749 section 2.3.1), so no
    signing algorithms for client assertions are advertised (RFC 8414 section 2)."""
    document = (await client.get("/.well-known/oauth-authorization-server")).json()
    client_auth = [n for n in document if "signing_alg" in n and not n.startswith("id_token_")]
    assert client_auth == []
    for endpoint in ("token", "revocation", "introspection"):
        methods = set(document[f"{endpoint}_endpoint_auth_methods_supported"])
        assert methods <= {"client_secret_basic", "client_secret_post", "none"}


async def test_jwks_holds_public_rsa_keys_only(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert set(keys[0]) == {"kty", "use", "alg", "kid", "n", "e"}
    assert (keys[0]["kty"], keys[0]["use"], keys[0]["alg"]) == ("RSA", "sig", "RS256")


async def test_jwks_has_cache_control_and_a_strong_etag(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=123"
    etag = response.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    assert not etag.startswith("W/")


@pytest.mark.parametrize("header", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_matching_if_none_match_gives_304_without_body(
    client: AsyncTestClient[Litestar], header: str
) -> None:
    etag = (await client.get("/.well-known/jwks.json")).headers["etag"]
    response = await client.get(
        "/.well-known/jwks.json", headers={"If-None-Match": header.format(etag=etag)}
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


async def test_stale_if_none_match_gets_the_full_document(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/.well-known/jwks.json", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.json()["keys"]


async def test_jwks_follows_a_rotation_made_elsewhere(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    before = await client.get("/.well-known/jwks.json")
    new = await rotate(FileKeyStore(settings.keys_dir), settings)
    for _ in range(50):
        after = await client.get("/.well-known/jwks.json")
        if new.kid in after.text:
            break
        await asyncio.sleep(0.05)
    assert [k["kid"] for k in after.json()["keys"]][-1] == new.kid
    assert after.headers["etag"] != before.headers["etag"]


async def test_published_key_verifies_what_the_current_key_signs(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    signing = current_signing_key(settings)
    token = jwt.encode({"sub": "x"}, signing.private_key, "RS256", headers={"kid": signing.kid})
    jwks = jwt.PyJWKSet.from_dict((await client.get("/.well-known/jwks.json")).json())
    assert jwt.decode(token, jwks[signing.kid].key, ["RS256"])["sub"] == "x"


async def test_health_live_and_ready(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["signing_key"].startswith("ok")


async def test_ready_reports_a_broken_key_store_while_signing_goes_on(
    client: AsyncTestClient[Litestar], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The public answer says the store is degraded; which file is broken goes to the
    log only (README, "HTTP API")."""
    for path in settings.keys_dir.glob("*.json"):
        path.write_text("{broken")
    for _ in range(50):
        ready = await client.get("/health/ready")
        checks = ready.json()["checks"]
        if checks["keystore"] != "ok":
            break
        await asyncio.sleep(0.05)
    assert ready.status_code == 200
    assert checks["keystore"] == "degraded"
    assert checks["signing_key"].startswith("ok")
    assert str(settings.keys_dir) not in ready.text
    assert any("corrupted" in r.getMessage() for r in caplog.records)


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    await client.get("/.well-known/jwks.json")
    await client.get("/health/live")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for name in (
        "authority_signing_key_age_seconds",
        "authority_keystore_healthy",
        "authority_tokens_issued",
        "authority_refresh_reuse_detected",
        "authority_login_failures",
        "authority_request_duration_seconds",
        'authority_jwks_requests_total{status="200"}',
    ):
        assert name in response.text


async def test_openapi_document_and_browsable_page(client: AsyncTestClient[Litestar]) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert "/.well-known/jwks.json" in document["paths"]
    page = await client.get("/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")


async def test_unknown_path_is_a_json_404(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert json.loads(response.content)["status_code"] == 404


async def test_app_refuses_to_start_without_a_signing_key(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    refused = pytest.RaisesExc(KeyStoreError, match="no current signing key")
    with pytest.RaisesGroup(refused, flatten_subgroups=True):
        async with AsyncTestClient(create_app(settings)):
            pass


async def test_app_refuses_insecure_production_settings(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(RuntimeError, match="AUTHORITY_KEY_PASSPHRASE"):
        create_app(make_settings(env="production"))


async def test_ready_names_the_failed_check_but_not_the_drivers_error(
    client: AsyncTestClient[Litestar],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The readiness answer is public: which check failed, not the driver's words (host
    names, user names, versions); those go to the log."""
    detail = 'connection to server at "db.internal" (10.0.0.5), port 5432 failed: FATAL'

    async def down(_db: Database, within: float) -> None:
        raise DatabaseUnavailable(detail)

    monkeypatch.setattr(Database, "ping", down)
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"] == "unavailable"
    assert "db.internal" not in ready.text
    assert any(detail in r.getMessage() for r in caplog.records)


async def test_metadata_of_a_plain_http_development_issuer_on_any_host(
    make_settings: Callable[..., Settings],
) -> None:
    """Authlib accepts http for loopback hosts only; a development issuer such as a
    container's name is served as given, not answered with a 500."""
    settings = make_settings(issuer="http://authority.internal:8000")
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir()
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    async with AsyncTestClient(create_app(settings)) as client:
        response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == "http://authority.internal:8000"
    assert document["token_endpoint"] == "http://authority.internal:8000/oauth/token"
