"""Reading an ``/oauth`` request: the form (RFC 6749 section 3.2 and appendix B) and
the client's authentication (section 2.3): ``client_secret_basic``,
``client_secret_post``, or none for public clients."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from litestar import Request
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from authority.accounts.clients import ClientRecord
from authority.grants.errors import InvalidClientError, InvalidRequestError, InvalidTargetError
from authority.sessions.service import Authority
from authority.web.http import header_value

# Names echoed in an error description; RFC 6749 limits its characters.
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
MAX_FIELDS = 32
MAX_CLIENT_ID = 64


async def read_form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The form parameters; RFC 6749 section 3.2: none may be repeated, and a
    parameter sent without a value is treated as omitted."""
    content_type = header_value(request, b"content-type") or ""
    if content_type.partition(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequestError(description="body must be application/x-www-form-urlencoded")
    try:
        body = await _body(request)
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
        if name == "resource" and name in seen:  # RFC 8707 section 2 allows it; we cannot
            raise InvalidTargetError(description="send one resource: a token has a single audience")
        if name in seen:
            shown = f"parameter {name!r}" if _PARAM_NAME.fullmatch(name) else "a parameter"
            raise InvalidRequestError(description=f"{shown} is repeated")
        seen.add(name)
    return {name: value for name, value in pairs if value}


async def _body(request: Request[Any, Any, Any]) -> bytes:
    """The body within the route's size limit, as ``Request.body`` reads it (and kept
    where it keeps it), straight from the ASGI messages: Litestar's way builds the
    headers mapping and an async generator, a tenth of a token request."""
    state = ScopeState.from_scope(request.scope)
    if state.body is not Empty:
        return state.body
    limit = request.route_handler.resolve_request_max_body_size() or math.inf
    announced = header_value(request, b"content-length")
    if announced is not None:
        if not announced.strip().isdigit():
            raise ClientException("malformed content-length")
        if int(announced) > limit:
            raise RequestEntityTooLarge
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect: nobody waits for an answer
            raise ClientException("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = state.body = b"".join(chunks)
    request.is_connected = False
    return body


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
    """client_secret_basic, client_secret_post, or none (public clients): one of them.
    A disabled or deleted client, and a secret rotated out whose overlap has ended,
    are ``invalid_client`` (``ClientCache.authenticate`` says how soon)."""
    header = header_value(request, b"authorization")
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
    client = await auth.clients.authenticate(
        auth.db,
        client_id,
        secret,
        key=auth.secret_key,
        now=auth.clock(),
        allow_public=allow_public,
    )
    if client is None:
        raise _auth_failed()
    return client


def _auth_failed() -> InvalidClientError:
    return InvalidClientError(description="client authentication failed", status_code=401)
