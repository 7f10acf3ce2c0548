"""Discovery: RFC 8414 metadata and the JWKS (RFC 7517), served from pre-encoded bytes."""

from __future__ import annotations

from typing import Any

import msgspec
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

from authority import metrics
from authority.accounts.clients import all_scopes
from authority.authorization.id_tokens import CLAIMS_SUPPORTED, OPENID_SCOPES
from authority.grants import GRANTS
from authority.settings import Settings
from authority.signing.keys import KeyRing
from authority.signing.manager import KeyManager
from authority.storage.database import Database
from authority.verifier.algorithms import ALGORITHMS
from authority.web.http import SKIP_METRICS, UNAVAILABLE, etag_matches

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

# RFC 7517 section 4: a public key, nothing private; the members of every registered
# algorithm's key type (RFC 7518 section 6) are optional.
PublicJwk = msgspec.defstruct(
    "PublicJwk",
    [
        ("kty", str),
        ("use", str),
        ("alg", str),
        ("kid", str),
        *(
            (name, str | None, None)
            for name in dict.fromkeys(
                ["crv"] * any(a.crv for a in ALGORITHMS.values())
                + [m for a in ALGORITHMS.values() for m in a.members]
            )
        ),
    ],
    omit_defaults=True,
)


class Jwks(msgspec.Struct):
    keys: list[PublicJwk]  # type: ignore[valid-type]


JWKS_RESPONSES = {
    200: ResponseSpec(Jwks, description="the key set", generate_examples=False),
    304: ResponseSpec(None, description="If-None-Match matches the ETag: not modified"),
}


def metadata(settings: Settings, scopes: list[str], algorithms: list[str]) -> dict[str, Any]:
    """RFC 8414 section 2, and OpenID Connect Discovery 1.0 section 3 (the same document
    at both addresses). Clients authenticate with secrets only, so no
    ``*_auth_signing_alg_values_supported``. ``algorithms``: those of the published
    keys (``KeyRing.algorithms``), which sign ID tokens as they sign access tokens."""
    issuer = settings.issuer
    document = AuthorizationServerMetadata(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "grant_types_supported": list(GRANTS),
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
            "scopes_supported": sorted({*scopes, *OPENID_SCOPES}),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "userinfo_endpoint": f"{issuer}/oauth/userinfo",
            "end_session_endpoint": f"{issuer}/oauth/logout",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algorithms,
            "claims_supported": list(CLAIMS_SUPPORTED),
            "authorization_response_iss_parameter_supported": True,
            "dpop_signing_alg_values_supported": list(ALGORITHMS),  # RFC 9449 section 5.1
        }
    )
    _validate(document)
    return dict(document)


def _validate(document: AuthorizationServerMetadata) -> None:
    """Authlib's RFC 8414 checks of our own document. RFC 8414 wants https URLs, and
    Authlib allows plain http for loopback hosts only; a development issuer may be any
    ``http://`` host (a container's name, say), which production refuses at startup
    (``Settings.production_problems``). So the scheme is the settings' to check, and
    everything else is checked here on an https copy, never a 500 for a dev issuer."""
    secure = {
        name: "https://" + value.removeprefix("http://")
        if isinstance(value, str) and value.startswith("http://")
        else value
        for name, value in document.items()
    }
    AuthorizationServerMetadata(secure).validate()


def discovery_handlers(
    settings: Settings, keys: KeyManager, db: Database
) -> list[HTTPRouteHandler]:
    cache_control = f"public, max-age={settings.jwks_max_age}"

    @get(
        "/.well-known/oauth-authorization-server",
        tags=["discovery"],
        summary="RFC 8414 authorization server metadata",
        responses=UNAVAILABLE,
    )
    async def server_metadata() -> dict[str, Any]:
        algorithms = keys.current_ring().algorithms
        return metadata(settings, scopes=await db.read(all_scopes), algorithms=algorithms)

    @get(
        "/.well-known/openid-configuration",
        tags=["discovery"],
        summary="OpenID Connect Discovery 1.0 metadata (the same document)",
        responses=UNAVAILABLE,
    )
    async def openid_configuration() -> dict[str, Any]:
        algorithms = keys.current_ring().algorithms
        return metadata(settings, scopes=await db.read(all_scopes), algorithms=algorithms)

    cached: dict[str, Any] = {}
    served, not_modified = metrics.JWKS_REQUESTS.labels("200"), metrics.JWKS_REQUESTS.labels("304")

    def encoded(ring: KeyRing) -> dict[str, Any]:
        """Both answers for a key ring, encoded once: the JWKS is served from bytes."""
        if cached.get("ring") is not ring:
            headers = {"Cache-Control": cache_control, "ETag": ring.etag}
            cached.update(
                ring=ring,
                ok=ASGIResponse(body=ring.jwks, headers=headers, media_type="application/json"),
                not_modified=ASGIResponse(status_code=304, headers=headers),
            )
        return cached

    @get(
        "/.well-known/jwks.json",
        sync_to_thread=False,
        tags=["discovery"],
        summary="Public signing keys (next, current and retired)",
        media_type="application/json",
        responses=JWKS_RESPONSES,
        opt={SKIP_METRICS: True},
    )
    def jwks(request: Request[Any, Any, Any]) -> ASGIResponse:
        ring = keys.current_ring()
        answers = encoded(ring)
        # The raw header list: building Litestar's Headers costs more than the rest.
        for name, value in request.scope["headers"]:
            if name == b"if-none-match" and etag_matches(value.decode("latin-1"), ring.etag):
                not_modified.inc()
                return answers["not_modified"]  # type: ignore[no-any-return]
        served.inc()
        return answers["ok"]  # type: ignore[no-any-return]

    return [server_metadata, openid_configuration, jwks]
