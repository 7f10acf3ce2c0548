"""Small HTTP pieces every endpoint shares: the no-store headers, the body limit, the
503 answer with ``Retry-After``, OAuth error answers (RFC 6749 section 5.2), their
OpenAPI descriptions, and the client's address."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import Cookie
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse
from litestar.types import Scope

from authority.grants.errors import OAuth2Error, SlowDownError, TemporarilyUnavailableError

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_BODY = 16 * 1024  # bytes of a request body, on /oauth/* and /auth/*
RETRY_AFTER = "5"  # seconds a client should wait after a 503
STORAGE_DOWN = "the authority cannot reach its storage; retry later"
# Routes whose ``opt`` holds this key stay out of the per-request Prometheus middleware:
# it costs as much as the JWKS handler itself, so the JWKS keeps a plain counter.
SKIP_METRICS = "skip_metrics"
_encode = msgspec.json.Encoder().encode


class ErrorBody(msgspec.Struct):
    """RFC 6749 section 5.2 error body; also every 503 of the service."""

    error: str
    error_description: str


def error_spec(status: int, description: str, body: type = ErrorBody) -> dict[int, ResponseSpec]:
    """An OpenAPI error response of ``body`` (without generated examples, so the
    document is the same on every start)."""
    return {status: ResponseSpec(body, description=description, generate_examples=False)}


UNAVAILABLE = error_spec(
    503, "temporarily_unavailable: storage unreachable or too busy; see Retry-After"
)


def error_response(exc: OAuth2Error) -> Response[dict[str, str]]:
    headers = dict(NO_STORE)
    headers.update({k: v for k, v in exc.get_headers() if k.lower() == "www-authenticate"})
    if exc.status_code == 503:
        headers["Retry-After"] = RETRY_AFTER
    if isinstance(exc, SlowDownError):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(dict(exc.get_body()), status_code=exc.status_code, headers=headers)


def unavailable(description: str = STORAGE_DOWN) -> Response[dict[str, str]]:
    """The 503 of every endpoint: the storage is down or busy, retry shortly."""
    return error_response(TemporarilyUnavailableError(description=description))


def json_response(body: Mapping[str, Any] | msgspec.Struct) -> Response[bytes]:
    return Response(_encode(body), media_type="application/json", headers=NO_STORE)


_READY_HEADERS = [
    (b"content-type", b"application/json"),
    *((name.lower().encode(), value.encode()) for name, value in NO_STORE.items()),
]


class _Ready(ASGIResponse):
    """A 200 JSON answer whose headers are encoded already (see ``ReadyJson``)."""

    def __init__(self, body: bytes) -> None:
        # ASGIResponse.__init__ builds and merges a header mapping on every request;
        # these fields are all that its __call__ reads.
        self.body = body
        self.status_code = 200
        self.is_head_response = False
        self.background = None

    def encode_headers(self) -> list[tuple[bytes, bytes]]:
        return [*_READY_HEADERS, (b"content-length", str(len(self.body)).encode())]


class ReadyJson(Response[bytes]):
    """``json_response`` for the token endpoint's success: the same answer (200,
    ``application/json``, the no-store headers), sent without Litestar's general
    response path (merging headers and cookies, picking a serializer), which cost more
    than the rest of the answer. A route that adds headers or cookies of its own gets
    the general path."""

    def __init__(self, body: Mapping[str, Any] | msgspec.Struct) -> None:
        # Response.__init__'s fields, set as it would set them for these arguments.
        self.content = _encode(body)
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.headers = dict(NO_STORE)
        self.media_type = "application/json"
        self.status_code = None
        self.response_type_encoders = {}

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        headers: dict[str, str] | None = None,
        cookies: Iterable[Cookie] | None = None,
        **options: Any,
    ) -> ASGIResponse:
        if (
            headers
            or cookies
            or options.get("is_head_response")
            or self.cookies
            or self.background
            or self.headers != NO_STORE
        ):
            return super().to_asgi_response(
                app, request, headers=headers, cookies=cookies, **options
            )
        return _Ready(self.content)


def client_address(request: Request[Any, Any, Any]) -> str:
    """The peer's address; behind ``TRUSTED_PROXIES``, the one their X-Forwarded-For
    names (``authority serve`` has uvicorn read it from those proxies only)."""
    client = request.scope.get("client")  # not ``request.client``: no Address object
    return str(client[0]) if client else "unknown"


def header_values(request: Request[Any, Any, Any], name: bytes) -> list[str]:
    """Every value of the header ``name`` (lowercase), read from the ASGI scope as they
    came: the token endpoint reads three headers, and Litestar's ``Headers`` mapping
    costs more to build than that."""
    return [
        value.decode("latin-1") for key, value in request.scope["headers"] if key.lower() == name
    ]


def header_value(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first value of the header ``name`` (lowercase), as ``Headers.get`` gives it."""
    return scope_header(request.scope, name)


def scope_header(scope: Scope, name: bytes) -> str | None:
    """``header_value`` straight from an ASGI scope, before any ``Request`` is made."""
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The token of an ``Authorization: Bearer`` header; "" when it is empty. Other
    schemes are not ours and are ignored."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 section 13.1.2: weak comparison, a list of tags, or ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
