"""OAuth endpoints: token (RFC 6749), revocation (RFC 7009), introspection (RFC 7662).

The token endpoint is a short pipeline: no-store, parse the form (size limit, UTF-8,
no repeated parameter), dispatch on ``grant_type``, authenticate the client, check the
client may use the grant, run the grant.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import msgspec
from litestar import Request, Response, post
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from authority import metrics
from authority.accounts.clients import ClientRecord, secret_matches
from authority.storage.database import DatabaseUnavailable
from authority.web.discovery import SKIP_METRICS
from authority.grants.errors import (
    NO_STORE,
    UNAVAILABLE,
    InvalidClientError,
    InvalidRequestError,
    OAuth2Error,
    TemporarilyUnavailableError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    error_response,
    error_spec,
)
from authority.sessions.families import (
    access_token_revoked,
    find_family,
    revoke_access_token,
    revoke_family,
    session_active,
    token_state,
)
from authority.grants.common import GRANTS
from authority.signing.keys import KeyStoreError
from authority.accounts.passwords import HashingBusy
from authority.sessions.service import Authority
from authority.signing.signer import decode_own_access_token, parse_refresh_token

MAX_BODY = 16 * 1024
# Names echoed in an error description; RFC 6749 limits its characters.
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
MAX_FIELDS = 32
MAX_CLIENT_ID = 64
_encode = msgspec.json.Encoder().encode


async def read_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The form parameters; RFC 6749 section 3.2: none may be repeated, and a
    parameter sent without a value is treated as omitted."""
    content_type, _ = request.content_type
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError(description="body must be application/x-www-form-urlencoded")
    try:
        body = await request.body()
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except RequestEntityTooLarge:
        raise
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError(description="malformed form body") from None
    seen: set[str] = set()
    for name, _value in pairs:
        if name in seen:
            shown = f"parameter {name!r}" if _PARAM_NAME.fullmatch(name) else "a parameter"
            raise InvalidRequestError(description=f"{shown} is repeated")
        seen.add(name)
    return {name: value for name, value in pairs if value}


def basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 section 2.3.1: ``Basic base64(urlencode(id):urlencode(secret))``."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClientError(
            description="use HTTP Basic client authentication", status_code=401
        )
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClientError(
            description="malformed Basic credentials", status_code=401
        ) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id or not secret:
        raise InvalidClientError(description="malformed Basic credentials", status_code=401)
    return unquote_plus(client_id), unquote_plus(secret)


async def authenticate_client(
    auth: Authority,
    request: Request[Any, Any, Any],
    params: Mapping[str, str],
    *,
    allow_public: bool = True,
) -> ClientRecord:
    """client_secret_basic, client_secret_post, or none (public clients): one of them."""
    header = request.headers.get("authorization")
    secret: str | None
    body_id, body_secret = params.get("client_id"), params.get("client_secret")
    if header is not None:
        if body_secret is not None:
            raise InvalidRequestError(description="use one client authentication method")
        client_id, secret = basic_credentials(header)
        if body_id is not None and body_id != client_id:
            raise InvalidRequestError(description="client_id does not match the credentials")
    elif body_id is not None:
        client_id, secret = body_id, body_secret
    else:
        raise InvalidClientError(description="client authentication is required", status_code=401)
    if len(client_id) > MAX_CLIENT_ID:
        raise _auth_failed()
    client = await auth.clients.get(auth.db, client_id)
    if client is None or not client.is_active:
        raise _auth_failed()
    if client.is_public:
        if secret is not None or not allow_public:
            raise _auth_failed()
        return client
    if secret is None or not secret_matches(auth.secret_key, secret, client.secret_hash):
        raise _auth_failed()
    return client


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer's address (behind a proxy, run uvicorn with ``--forwarded-allow-ips``)."""
    return request.client.host if request.client else "unknown"


def _auth_failed() -> InvalidClientError:
    return InvalidClientError(description="client authentication failed", status_code=401)


def json_response(body: Mapping[str, Any]) -> Response[bytes]:
    return Response(_encode(body), media_type="application/json", headers=NO_STORE)


async def _guarded(auth: Authority, request: Request[Any, Any, Any], work: Any) -> Response[Any]:
    """Run an endpoint, mapping OAuth, size and storage errors to RFC responses."""
    try:
        return json_response(await work(auth, request))
    except OAuth2Error as exc:
        return error_response(exc)
    except RequestEntityTooLarge:
        return error_response(
            InvalidRequestError(description="request body is too large", status_code=413)
        )
    except ClientException:
        return error_response(InvalidRequestError(description="malformed request"))
    except HashingBusy:
        return error_response(
            TemporarilyUnavailableError(description="too many logins in progress; retry later")
        )
    except (DatabaseUnavailable, KeyStoreError):
        return error_response(
            TemporarilyUnavailableError(
                description="the authority cannot reach its storage; retry later"
            )
        )


async def _token(auth: Authority, request: Request[Any, Any, Any]) -> dict[str, Any]:
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
    return await grant(auth, client, params, client_address(request))


async def _revoke(auth: Authority, request: Request[Any, Any, Any]) -> dict[str, Any]:
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
            await auth.db.write(revoke_family, family.id, "revoked", now)
        return {}
    claims = decode_own_access_token(
        auth.keys.current_ring(), token, issuer=auth.settings.issuer, now=now, leeway=0
    )
    if claims is not None:
        _require_owner(claims.get("client_id"), client)
        await auth.db.write(revoke_access_token, claims["jti"], float(claims["exp"]))
    return {}


def _require_owner(owner: object, client: ClientRecord) -> None:
    if owner != client.client_id:
        raise UnauthorizedClientError(description="the token was issued to another client")


INACTIVE: dict[str, Any] = {"active": False}


async def _introspect(auth: Authority, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """RFC 7662. Any confidential client may introspect access tokens (resource servers
    do); a refresh token is active only for the client it was issued to."""
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
        auth.keys.current_ring(),
        token,
        issuer=auth.settings.issuer,
        now=now,
        leeway=auth.settings.leeway,
    )
    if claims is None or await auth.db.read(access_token_revoked, claims["jti"]):
        return INACTIVE
    sid = claims.get("sid")
    if isinstance(sid, str) and not await auth.db.read(session_active, sid):
        return INACTIVE
    return {"active": True, "token_type": "Bearer", **claims}


# --- the OpenAPI description (the handlers read the form themselves: see read_form) ---

FORM = "application/x-www-form-urlencoded"
_TEXT = Schema(type=OpenAPIType.STRING)
_CLIENT_AUTH = {"client_id": _TEXT, "client_secret": _TEXT}


class TokenOut(msgspec.Struct, omit_defaults=True):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None


class RevokedOut(msgspec.Struct):
    """RFC 7009 section 2.2: an empty object, also for unknown tokens."""


class IntrospectionOut(msgspec.Struct, omit_defaults=True):
    """RFC 7662 section 2.2: ``{"active": false}`` alone, or the token's details (an
    access token's answer carries all its claims, custom ones included)."""

    active: bool
    token_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    sid: str | None = None


def form_operation(required: list[str], **fields: Schema) -> type[Operation]:
    """An ``Operation`` whose request body is the endpoint's form (RFC 6749 appendix B);
    parameters not listed are ignored, as RFC 6749 section 3.2 requires."""
    body = RequestBody(
        content={
            FORM: OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={**fields, **_CLIENT_AUTH},
                    required=required,
                )
            )
        },
        required=True,
    )

    @dataclass
    class FormOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return FormOperation


def oauth_responses(ok: type[msgspec.Struct], **extra: str) -> dict[int, ResponseSpec]:
    errors = {
        400: "invalid_request (malformed or repeated parameter, wrong content type) "
        "or another RFC 6749 section 5.2 error",
        401: "invalid_client, with WWW-Authenticate",
        413: "invalid_request: the body is over 16 KiB",
        **{int(code): text for code, text in extra.items()},
    }
    specs = {200: ResponseSpec(ok, description="success", generate_examples=False)}
    for status, text in errors.items():
        specs.update(error_spec(status, text))
    return {**specs, **UNAVAILABLE}


_TOKEN_OPERATION = form_operation(
    ["grant_type"],
    grant_type=Schema(type=OpenAPIType.STRING, enum=list(GRANTS)),
    scope=_TEXT,
    audience=_TEXT,
    refresh_token=_TEXT,
    username=_TEXT,
    password=_TEXT,
)
_TOKEN_FORM = {"token": _TEXT, "token_type_hint": _TEXT}


def oauth_handlers(auth: Authority) -> list[HTTPRouteHandler]:
    @post(
        "/oauth/token",
        request_max_body_size=MAX_BODY,
        status_code=200,
        tags=["oauth"],
        summary="Token endpoint (RFC 6749)",
        operation_class=_TOKEN_OPERATION,
        responses=oauth_responses(
            TokenOut, **{"429": "slow_down: too many failed logins (password grant)"}
        ),
        opt={SKIP_METRICS: True},
    )
    async def token(request: Request[Any, Any, Any]) -> Response[Any]:
        # The generic request middleware costs a tenth of a token; one histogram does.
        started = time.perf_counter()
        response = await _guarded(auth, request, _token)
        metrics.TOKEN_SECONDS.labels(str(response.status_code or 200)).observe(
            time.perf_counter() - started
        )
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
        return await _guarded(auth, request, _revoke)

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
        return await _guarded(auth, request, _introspect)

    return [token, revoke, introspect]
