"""Bearer token authentication for any ASGI app (RFC 6750), on top of ``Verifier``.

``BearerAuthMiddleware(app, verifier)`` reads ``Authorization: Bearer <token>`` (the
only place RFC 6750 section 2.1 allows that needs no body or URL), verifies it with
``averify`` and puts the claims in ``scope["auth"]`` (``request.auth`` in Litestar and
Starlette). Failures are answered here, never by the app:

- no bearer credentials: 401 with ``WWW-Authenticate: Bearer`` and no error code
  (section 3.1: the client may not know that authentication is needed);
- a malformed ``Authorization`` header (empty token, two headers): 400
  ``invalid_request``;
- a token the verifier rejects: 401 ``invalid_token``;
- valid, but without the ``scopes`` the middleware requires: 403 ``insufficient_scope``
  with ``scope="..."`` in the challenge;
- keys cannot be fetched (``KeysUnavailable``), or no usable token status list
  (``StatusUnavailable``, unless the verifier fails open): 503
  ``temporarily_unavailable`` with ``Retry-After``; the token may be valid, so the
  client should not be told otherwise (RFC 6750's ``invalid_token`` says it is not);
- a token the status list says is revoked: 401 ``invalid_token`` (RFC 6750 section
  3.1 names "revoked" among its causes);
- DPoP (RFC 9449 section 7): ``Authorization: DPoP <token>`` with one ``DPoP`` proof
  header is checked against this request's method and URL (scheme, ``Host`` and
  path); a bad proof is 401 ``invalid_dpop_proof``, and a token bound to a key but
  sent as ``Bearer`` is 401 ``invalid_token``, both with a ``WWW-Authenticate: DPoP``
  challenge naming the accepted algorithms.

WebSocket connections are authenticated alike; a refusal closes them with 1008 before
they are accepted. Only the standard library: no framework is imported.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from authority.verifier.algorithms import ALGORITHMS
from authority.verifier.jose import InvalidToken, KeysUnavailable
from authority.verifier.status import StatusUnavailable
from authority.verifier.verify import Verifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER = "5"
_DPOP_REASONS = frozenset({"dpop_required", "invalid_dpop_proof", "dpop_unbound"})


class Denied(Exception):
    """An authentication outcome that ends the request: status, RFC 6750 error, headers."""

    def __init__(
        self,
        status: int,
        error: str | None,
        description: str = "",
        scope: str | None = None,
        realm: str | None = None,
        dpop: bool = False,
    ):
        super().__init__(error or "unauthorized")
        self.status = status
        self.error = error
        self.description = description
        self.scope = scope
        self.realm = realm
        self.dpop = dpop

    def headers(self) -> dict[str, str]:
        if self.status == 503:
            return {"retry-after": RETRY_AFTER}
        algs = " ".join(ALGORITHMS) if self.dpop else None
        value = challenge(self.error, self.description, self.scope, self.realm, algs)
        return {"www-authenticate": value}

    def body(self) -> dict[str, str]:
        if self.error is None:
            return {"detail": "bearer token required"}
        body = {"error": self.error, "error_description": self.description}
        if self.scope is not None:
            body["scope"] = self.scope
        return body


def _quoted(value: str) -> str:
    # RFC 6750 section 3: these values are quoted strings without '"' and '\'.
    return '"' + "".join(c for c in value if c not in '"\\' and " " <= c <= "~") + '"'


def challenge(
    error: str | None,
    description: str = "",
    scope: str | None = None,
    realm: str | None = None,
    algs: str | None = None,
) -> str:
    """The ``WWW-Authenticate`` value of RFC 6750 section 3, or with ``algs`` of the
    DPoP scheme (RFC 9449 section 7.1)."""
    params = []
    if realm is not None:
        params.append(f"realm={_quoted(realm)}")
    if error is not None:
        params.append(f"error={_quoted(error)}")
        if description:
            params.append(f"error_description={_quoted(description)}")
    if scope is not None:
        params.append(f"scope={_quoted(scope)}")
    if algs is not None:
        params.append(f"algs={_quoted(algs)}")
    name = "Bearer" if algs is None else "DPoP"
    return f"{name} " + ", ".join(params) if params else name


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of ``Authorization: Bearer``; None without bearer credentials."""
    found = credentials(headers)
    return found[1] if found is not None and found[0] == "bearer" else None


def credentials(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """The scheme (``bearer`` or ``dpop``) and token of the ``Authorization`` header;
    None without credentials of either scheme."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if not values:
        return None
    if len(values) > 1:
        raise Denied(400, "invalid_request", "more than one Authorization header")
    scheme, _, given = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() not in ("bearer", "dpop"):
        return None
    token = given.strip()
    if not token or " " in token:
        raise Denied(400, "invalid_request", f"malformed {scheme} credentials")
    return scheme.lower(), token


def dpop_proof(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The one ``DPoP`` header (RFC 9449 section 4.3: more than one is refused)."""
    values = [v for k, v in headers if k.lower() == b"dpop"]
    if len(values) > 1:
        raise Denied(401, "invalid_dpop_proof", "more than one DPoP header", dpop=True)
    return values[0].decode("latin-1").strip() if values else None


def request_url(scope: Scope) -> str:
    """The URL the client called, as a DPoP proof's ``htu`` names it: the scheme, the
    ``Host`` header and the path (RFC 9449 section 4.3 ignores query and fragment)."""
    headers = dict((k.lower(), v) for k, v in scope.get("headers", ()))
    host = headers.get(b"host", b"").decode("latin-1")
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme"))
    return f"{scheme}://{host}{scope.get('root_path', '')}{scope.get('path', '')}"


def granted(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes of a token's ``scope`` claim (RFC 9068 section 2.2.3)."""
    scope = claims.get("scope")
    return frozenset(scope.split()) if isinstance(scope, str) else frozenset()


def check_scopes(
    claims: Mapping[str, Any], required: Iterable[str], realm: str | None = None
) -> None:
    needed = tuple(required)
    if not granted(claims).issuperset(needed):
        raise Denied(
            403,
            "insufficient_scope",
            "the token lacks a required scope",
            scope=" ".join(needed),
            realm=realm,
        )


async def authenticate(
    verifier: Verifier, scope: Scope, realm: str | None = None
) -> dict[str, Any]:
    """The claims of the request's bearer or DPoP-bound token, or ``Denied``."""
    headers = scope.get("headers", ())
    found = credentials(headers)
    if found is None:
        raise Denied(401, None, realm=realm)
    scheme, token = found
    proof = dpop_proof(headers) if scheme == "dpop" else None
    if scheme == "dpop" and proof is None:
        raise Denied(401, "invalid_dpop_proof", "a DPoP proof header is required", dpop=True)
    method = scope.get("method", "GET")
    try:
        return await verifier.averify(token, dpop=proof, method=method, url=request_url(scope))
    except (KeysUnavailable, StatusUnavailable) as exc:
        raise Denied(503, "temporarily_unavailable", exc.description) from None
    except InvalidToken as exc:
        error = "invalid_dpop_proof" if exc.reason == "invalid_dpop_proof" else "invalid_token"
        dpop = scheme == "dpop" or exc.reason in _DPOP_REASONS
        raise Denied(401, error, exc.description, realm=realm, dpop=dpop) from None


async def deny(denied: Denied, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": denied.error or ""})
        return
    body = json.dumps(denied.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in denied.headers().items()]
    await send({"type": "http.response.start", "status": denied.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BearerAuthMiddleware:
    """Requires a valid bearer token (and ``scopes``, if given) on every HTTP and
    WebSocket request except under ``exclude_paths`` (a path or a path prefix)."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        scopes: Iterable[str] = (),
        exclude_paths: Iterable[str] = (),
        realm: str | None = None,
    ):
        self.app = app
        self.verifier = verifier
        self.scopes = tuple(scopes)
        self.exclude_paths = tuple(p.rstrip("/") for p in exclude_paths)
        self.realm = realm

    def skip(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        return any(path == p or path.startswith(p + "/") for p in self.exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.skip(scope):
            await self.app(scope, receive, send)
            return
        try:
            claims = await authenticate(self.verifier, scope, self.realm)
            check_scopes(claims, self.scopes, self.realm)
        except Denied as denied:
            await deny(denied, scope, receive, send)
            return
        scope["auth"] = claims
        await self.app(scope, receive, send)
