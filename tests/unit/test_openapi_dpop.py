"""The OpenAPI document describes DPoP (RFC 9449; SPEC section 10) where the service
reads it: the optional ``DPoP`` header on the token endpoint and on the ``/auth``
operations that take a proof, their 400 ``invalid_dpop_proof`` and ``use_dpop_nonce``
with the ``DPoP-Nonce`` header, and the 401 of a bound access token without its proof."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers.world import World

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Operations whose proof binds the tokens they issue, or unbinds a refresh token: a
# failed proof is their 400, with DPoP-Nonce when nonces are on.
TAKING_A_PROOF = [
    ("post", "/oauth/token"),
    ("post", "/auth/login"),
    ("post", "/auth/register"),
    ("post", "/auth/refresh"),
    ("post", "/auth/logout"),
]
# Operations that accept an access token, bound ones only with a proof by its key.
PRESENTING_A_TOKEN = [
    ("post", "/auth/logout-all"),
    ("get", "/auth/me"),
    ("get", "/auth/check"),
    ("post", "/auth/password"),
    ("get", "/auth/sessions"),
    ("delete", "/auth/sessions/{session_id}"),
    ("get", "/auth/consents"),
    ("delete", "/auth/consents/{client_id}"),
]
NOT_READING_IT = [
    ("post", "/oauth/revoke"),
    ("post", "/oauth/introspect"),
    ("get", "/auth/csrf"),
    ("get", "/.well-known/jwks.json"),
]


@pytest.fixture
async def document(world: World) -> dict[str, Any]:
    served = await world.http.get("/schema/openapi.json")
    assert served.status_code == 200
    return dict(served.json())


def dpop_parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["name"].lower() == "dpop"]


@pytest.mark.parametrize(("method", "path"), TAKING_A_PROOF + PRESENTING_A_TOKEN)
async def test_the_dpop_header_is_documented_where_it_is_read(
    document: dict[str, Any], method: str, path: str
) -> None:
    [parameter] = dpop_parameters(document["paths"][path][method])
    assert parameter["name"] == "DPoP"
    assert parameter["in"] == "header"
    assert parameter["required"] is False
    assert parameter["schema"] == {"type": "string"}
    assert "RFC 9449" in parameter["description"]


@pytest.mark.parametrize(("method", "path"), TAKING_A_PROOF)
async def test_a_refused_proof_is_a_documented_400_with_dpop_nonce(
    document: dict[str, Any], method: str, path: str
) -> None:
    refused = document["paths"][path][method]["responses"]["400"]
    assert "invalid_dpop_proof" in refused["description"]
    assert "use_dpop_nonce" in refused["description"]
    nonce = refused["headers"]["DPoP-Nonce"]
    assert nonce["required"] is False  # only use_dpop_nonce carries it
    assert nonce["schema"] == {"type": "string"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/auth/logout"), *(op for op in PRESENTING_A_TOKEN if op[1] != "/auth/check")],
)
async def test_a_bound_token_without_its_proof_is_a_documented_401(
    document: dict[str, Any], method: str, path: str
) -> None:
    refused = document["paths"][path][method]["responses"]["401"]
    assert "invalid_dpop_proof" in refused["description"]
    assert "WWW-Authenticate: DPoP" in refused["description"]


@pytest.mark.parametrize(("method", "path"), NOT_READING_IT)
async def test_operations_that_ignore_the_header_do_not_document_it(
    document: dict[str, Any], method: str, path: str
) -> None:
    operation = document["paths"][path][method]
    assert dpop_parameters(operation) == []
    assert "DPoP-Nonce" not in operation["responses"].get("400", {}).get("headers", {})
