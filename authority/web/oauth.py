"""OAuth endpoints: token (RFC 6749), revocation (RFC 7009), introspection (RFC 7662).

The token endpoint is a short pipeline: no-store, parse the form (size limit, UTF-8,
no repeated parameter), dispatch on ``grant_type`` through the grants registry,
authenticate the client, check the client may use the grant, run the grant.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, post
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIType, Schema
from prometheus_client import Histogram
from sqlalchemy import Connection

from authority import metrics
from authority.accounts.clients import ClientRecord, get_client
from authority.accounts.passwords import HashingBusy
from authority.grants import GRANTS
from authority.grants.common import TokenResponse
from authority.grants.dpop import (
    ProofLedger,
    UseDpopNonceError,
    bind_refresh_token,
    key_of_proof,
    ledger_of,
)
from authority.grants.errors import (
    InvalidRequestError,
    OAuth2Error,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from authority.sessions.families import (
    find_family,
    session_active,
    token_state,
)
from authority.sessions.lifecycle import end_sessions
from authority.sessions.refresh_tokens import parse_refresh_token
from authority.sessions.service import Authority
from authority.signing.manager import KeyManager
from authority.signing.own_tokens import decode_own_access_token
from authority.signing.records import KeyStoreError
from authority.signing.signer import DPOP_KEY
from authority.status.store import (
    access_token_revoked,
    index_of,
    index_revoked,
    revoke_access_token,
    revoke_index,
)
from authority.storage.database import DatabaseUnavailable
from authority.web.dpop_schema import dpop_operation
from authority.web.http import (
    MAX_BODY,
    SKIP_METRICS,
    ReadyJson,
    client_address,
    error_response,
    header_values,
    json_response,
    unavailable,
)
from authority.web.oauth_forms import authenticate_client, read_form
from authority.web.oauth_schema import (
    TEXT,
    IntrospectionOut,
    RevokedOut,
    form_operation,
    oauth_responses,
)

TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)

Work = Callable[
    [Authority, KeyManager, Request[Any, Any, Any]],
    Awaitable[dict[str, Any] | TokenResponse],
]


async def _guarded(
    auth: Authority,
    keys: KeyManager,
    request: Request[Any, Any, Any],
    work: Work,
    answer: Callable[[dict[str, Any] | TokenResponse], Response[Any]] = json_response,
) -> Response[Any]:
    """Run an endpoint, mapping OAuth, size and storage errors to RFC responses."""
    try:
        return answer(await work(auth, keys, request))
    except UseDpopNonceError as exc:  # RFC 9449 section 8: the nonce to use next
        response = error_response(exc)
        response.headers["DPoP-Nonce"] = exc.nonce
        return response
    except OAuth2Error as exc:
        return error_response(exc)
    except RequestEntityTooLarge:
        return error_response(
            InvalidRequestError(description="request body is too large", status_code=413)
        )
    except ClientException:
        return error_response(InvalidRequestError(description="malformed request"))
    except HashingBusy:
        return unavailable("too many logins in progress; retry later")
    except (DatabaseUnavailable, KeyStoreError):
        return unavailable()


async def _token(
    auth: Authority, keys: KeyManager, request: Request[Any, Any, Any], ledger: ProofLedger
) -> TokenResponse:
    params = await read_form(request)
    grant_type = params.get("grant_type")
    if grant_type is None:
        raise InvalidRequestError(description="grant_type is required")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError(description="unsupported grant_type")
    client = await authenticate_client(auth, request, params)
    if grant_type not in client.grant_types:
        raise UnauthorizedClientError(description=f"client may not use {grant_type}")
    jkt = await key_of_proof(
        ledger,
        header_values(request, b"dpop"),
        method="POST",
        url=f"{auth.settings.issuer}{TOKEN_PATH}",
        now=auth.clock(),
        client_id=client.client_id,
        nonce_secret=auth.secret_key if auth.settings.dpop_nonce else None,
    )
    bound = DPOP_KEY.set(jkt)
    try:
        answer = await grant.handle(auth, client, params, client_address(request))
    finally:
        DPOP_KEY.reset(bound)
    # RFC 9449 section 5: a public client's refresh tokens too (a refresh binds its
    # family in its rotation, ``grants.refresh_token``).
    if client.is_public and grant_type != "refresh_token":
        await bind_refresh_token(auth.db, answer.refresh_token, jkt)
    return answer


async def _revoke(
    auth: Authority, keys: KeyManager, request: Request[Any, Any, Any]
) -> dict[str, Any]:
    """RFC 7009: unknown tokens answer 200; another client's token is refused."""
    params = await read_form(request)
    token = params.get("token")
    if token is None:
        raise InvalidRequestError(description="token is required")
    client = await authenticate_client(auth, request, params)
    now = auth.clock()
    refresh_hash = parse_refresh_token(token)
    if refresh_hash is not None:
        family = await auth.db.read(find_family, refresh_hash)
        if family is not None:
            _require_owner(family.client_id, client)
            await auth.db.write(end_sessions, "revoked", now, family_id=family.id)
        return {}
    claims = decode_own_access_token(
        keys.current_ring(), token, issuer=auth.settings.issuer, now=now, leeway=0
    )
    if claims is not None:
        _require_owner(claims.get("client_id"), client)
        await auth.db.write(_revoke_access_token, claims, auth.signer.status_uri, now)
    return {}


def _revoke_access_token(
    conn: Connection, claims: dict[str, Any], status_uri: str | None, now: float
) -> None:
    """The ``jti`` for introspection and ``/auth``, the status bit for resource servers."""
    revoke_access_token(conn, claims["jti"], float(claims["exp"]))
    idx = index_of(claims, status_uri) if status_uri else None
    if idx is not None:
        revoke_index(conn, idx, float(claims["iat"]), now)


def _require_owner(owner: object, client: ClientRecord) -> None:
    if owner != client.client_id:
        raise UnauthorizedClientError(description="the token was issued to another client")


INACTIVE: dict[str, Any] = {"active": False}


async def _introspect(
    auth: Authority, keys: KeyManager, request: Request[Any, Any, Any]
) -> dict[str, Any]:
    """RFC 7662. Any confidential client may introspect access tokens (resource servers
    do); a refresh token is active only for the client it was issued to. The tokens of
    a disabled or deleted client are inactive."""
    params = await read_form(request)
    token = params.get("token")
    if token is None:
        raise InvalidRequestError(description="token is required")
    client = await authenticate_client(auth, request, params, allow_public=False)
    now = auth.clock()
    refresh_hash = parse_refresh_token(token)
    if refresh_hash is not None:
        state = await auth.db.read(token_state, refresh_hash, now)
        if state is None or not state.active or state.family.client_id != client.client_id:
            return INACTIVE
        family = state.family
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": family.scope,
            "client_id": family.client_id,
            "username": family.username,
            "sub": str(family.user_id),
            "aud": family.audience,
            "iss": auth.settings.issuer,
            "exp": int(state.expires_at),
            "iat": int(state.issued_at),
        }
    claims = decode_own_access_token(
        keys.current_ring(),
        token,
        issuer=auth.settings.issuer,
        now=now,
        leeway=0,  # the issuer judges its own tokens exactly (RFC 7662 section 2.2)
    )
    if claims is None or not await auth.db.read(
        _access_token_active, claims, auth.signer.status_uri
    ):
        return INACTIVE
    return {"active": True, "token_type": "Bearer", **claims}


def _access_token_active(conn: Connection, claims: dict[str, Any], status_uri: str | None) -> bool:
    """Unrevoked (by ``jti``, and its status list bit: introspection agrees with the
    list), its client active (read afresh, not from the client cache: a disabled
    client's tokens end at once), and its session standing."""
    if access_token_revoked(conn, claims["jti"]):
        return False
    idx = index_of(claims, status_uri) if status_uri else None
    if idx is not None and index_revoked(conn, idx, float(claims["iat"])):
        return False
    issued_to = get_client(conn, str(claims.get("client_id", "")))
    if issued_to is None or not issued_to.is_active:
        return False
    sid = claims.get("sid")
    return not isinstance(sid, str) or session_active(conn, sid)


# The token form: grant_type and what the registered grants read, in their order; and
# the DPoP header of every grant (RFC 9449 section 5).
_TOKEN_OPERATION = dpop_operation(
    form_operation(
        ["grant_type"],
        grant_type=Schema(type=OpenAPIType.STRING, enum=list(GRANTS)),
        **{name: TEXT for grant in GRANTS.values() for name in grant.PARAMETERS},
    )
)
_TOKEN_FORM = {"token": TEXT, "token_type_hint": TEXT}


def oauth_handlers(auth: Authority, keys: KeyManager) -> list[HTTPRouteHandler]:
    token_seconds: dict[int, Histogram] = {}  # the histogram's child of each status
    token_work = functools.partial(_token, ledger=ledger_of(auth.db))

    @post(
        TOKEN_PATH,
        request_max_body_size=MAX_BODY,
        status_code=200,
        tags=["oauth"],
        summary="Token endpoint (RFC 6749)",
        operation_class=_TOKEN_OPERATION,
        responses=oauth_responses(
            TokenResponse, **{"429": "slow_down: too many failed logins (password grant)"}
        ),
        opt={SKIP_METRICS: True},
    )
    async def token(request: Request[Any, Any, Any]) -> Response[Any]:
        # The generic request middleware costs a tenth of a token; one histogram does.
        started = time.perf_counter()
        response = await _guarded(auth, keys, request, token_work, ReadyJson)
        status = response.status_code or 200
        seconds = token_seconds.get(status)
        if seconds is None:
            seconds = token_seconds[status] = metrics.TOKEN_SECONDS.labels(str(status))
        seconds.observe(time.perf_counter() - started)
        return response

    @post(
        "/oauth/revoke",
        request_max_body_size=MAX_BODY,
        status_code=200,
        tags=["oauth"],
        summary="Token revocation (RFC 7009)",
        operation_class=form_operation(["token"], **_TOKEN_FORM),
        responses=oauth_responses(RevokedOut),
    )
    async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
        return await _guarded(auth, keys, request, _revoke)

    @post(
        "/oauth/introspect",
        request_max_body_size=MAX_BODY,
        status_code=200,
        tags=["oauth"],
        summary="Token introspection (RFC 7662)",
        operation_class=form_operation(["token"], **_TOKEN_FORM),
        responses=oauth_responses(IntrospectionOut),
    )
    async def introspect(request: Request[Any, Any, Any]) -> Response[Any]:
        return await _guarded(auth, keys, request, _introspect)

    return [token, revoke, introspect]
