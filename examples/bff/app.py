"""The BFF's Litestar app, ``create_app(settings)``: ``/login``, ``/logout``,
``/session`` and ``/api/...``, a proxy that adds the session's access token.

    cd examples && BFF_AUTHORITY_URL=http://127.0.0.1:8000 \\
        BFF_API_URL=http://127.0.0.1:8001 BFF_COOKIE_SECURE=false ../.venv/bin/python -m bff
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import uvicorn
from litestar import Litestar, Request, Response, get, post, route
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.exceptions import HTTPException
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import LockError, RedisError

from .sessions import BadTokenAnswer, Session, SessionStore, valid_session_id
from .settings import Settings, SettingsError
from .upstream import Authority, BffError, SessionExpired, http_client, unavailable

log = logging.getLogger("bff")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-Requested-With"
# What is relayed to the API and back: JSON only, and only the headers it needs.
REQUEST_HEADERS = ("if-none-match",)
NO_STORE = {"Cache-Control": "no-store"}
PATH_SAFE = "/:@!$&'()*+,;=-._~"
RESPONSE_HEADERS = ("cache-control", "etag", "retry-after", "vary")
Clock = Callable[[], float]


class Bff:
    """The session logic: what the routes share."""

    def __init__(self, settings: Settings, store: SessionStore, authority: Authority,
                 clock: Clock):
        self.settings = settings
        self.store = store
        self.authority = authority
        self.clock = clock

    async def login(self, credentials: dict[str, str],
                    client: str | None) -> tuple[str, Session, int]:
        sent_at = self.clock()
        answer = await self.authority.login(credentials, client)
        try:
            session, ttl = Session.from_tokens(
                answer["tokens"], answer["user"], sent_at, self.settings.refresh_skew)
        except BadTokenAnswer as exc:
            log.error("authority /auth/login: %s", exc)
            raise BffError(502, "unexpected answer from the authority") from None
        try:
            session_id = await self.store.create(session, ttl)
        except RedisError:
            await self.authority.logout(session.refresh, client)  # leave no orphan login
            raise
        return session_id, session, ttl

    async def fresh(self, session_id: str, client: str | None) -> tuple[Session, int | None]:
        """The session with an access token that is not due for refresh, and the new
        TTL when this call rotated it. Only one request per session refreshes: the
        others wait for the lock, then find the new token and use it."""
        session = await self.store.get(session_id)
        if session is None:
            raise SessionExpired
        if self.clock() < session.refresh_at:
            return session, None
        async with self.store.lock(session_id):
            session = await self.store.get(session_id)
            if session is None:
                raise SessionExpired
            if self.clock() < session.refresh_at:
                return session, None
            return await self._refresh(session_id, session, client)

    async def _refresh(self, session_id: str, session: Session,
                       client: str | None) -> tuple[Session, int | None]:
        sent_at = self.clock()
        try:
            tokens = await self.authority.refresh(session.refresh, client)
        except SessionExpired:
            await self.store.delete(session_id)
            raise
        except BffError:
            if self.clock() < session.access_expires_at:
                return session, None  # still valid: the next request tries again
            raise
        try:
            rotated, ttl = session.rotated(tokens, self.settings.refresh_skew, sent_at=sent_at)
        except BadTokenAnswer as exc:
            log.error("authority /auth/refresh: %s", exc)
            raise BffError(502, "unexpected answer from the authority") from None
        if not await self.store.replace(session_id, rotated, ttl):
            raise SessionExpired
        return rotated, ttl

    async def end(self, session_id: str, client: str | None) -> None:
        """Revoke the session's family at the authority and forget the session. Under
        the lock, so that a refresh in flight cannot write the session back."""
        async with self.store.lock(session_id):
            session = await self.store.get(session_id)
            if session is None:
                return
            if not await self.authority.logout(session.refresh, client):
                # Nobody else holds this refresh token: deleting it ends the session
                # here too; the family expires unused at the authority.
                log.warning("logout: the authority did not confirm the revocation")
            await self.store.delete(session_id)


def login_credentials(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise BffError(400, "expected a JSON object")
    names = [name for name in ("username", "email") if name in data]
    password = data.get("password")
    if len(names) != 1 or not isinstance(password, str) or not isinstance(data[names[0]], str):
        raise BffError(400, "expected username or email, and password")
    return {names[0]: data[names[0]], "password": password}


def client_address(request: Request[Any, Any, Any]) -> str | None:
    """The browser's address, for the authority's login throttle: the peer of this
    request, or the client a proxy in front named if that proxy is one of
    ``BFF_TRUSTED_PROXIES``. An ``X-Forwarded-For`` from anyone else is ignored."""
    return request.client.host if request.client else None


def is_json(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type (RFC 6839 section 3.1), any parameters."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                            and media.endswith("+json"))


async def nosniff(message: Any, scope: Any) -> None:
    """``X-Content-Type-Options: nosniff`` on every answer, errors and 404s included
    (a ``before_send`` hook sees every message), so that no browser reads a relayed
    body as anything but its declared type."""
    if message["type"] == "http.response.start":
        MutableScopeHeaders.from_message(message)["X-Content-Type-Options"] = "nosniff"


def create_app(settings: Settings, *, clock: Clock = time.time) -> Litestar:
    redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=1,
        # One quick retry reconnects a pooled connection after a Redis restart; an
        # outage is answered (503) within about a second.
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=2),
    )
    client = http_client(settings.http_timeout)
    bff = Bff(
        settings,
        SessionStore(redis, settings.lock_timeout, lock_wait=settings.http_timeout + 2),
        Authority(client, settings.authority_url),
        clock,
    )

    def cookie(value: str = "", max_age: int = 0) -> Cookie:
        return Cookie(key=settings.session_cookie, value=value, max_age=max_age, path="/",
                      httponly=True, secure=settings.cookie_secure, samesite="lax")

    def session_id(request: Request[Any, Any, Any]) -> str:
        value = request.cookies.get(settings.session_cookie)
        if value is None:
            raise BffError(401, "not logged in")
        if not valid_session_id(value):
            raise SessionExpired
        return value

    async def require_custom_header(request: Request[Any, Any, Any]) -> None:
        """CSRF: a cross-site form cannot add a header, and a cross-site fetch that
        adds one needs a CORS preflight, which this app never grants."""
        if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise BffError(403, f"missing {CSRF_HEADER} header")

    @get("/health", sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @post("/login", status_code=200)
    async def login(request: Request[Any, Any, Any], data: Any) -> Response[Any]:
        credentials = login_credentials(data)
        old = request.cookies.get(settings.session_cookie)
        client = client_address(request)
        if valid_session_id(old):
            await bff.end(old, client)  # a login always starts a new session id
        new_id, session, ttl = await bff.login(credentials, client)
        return Response({"user": session.user}, headers=NO_STORE, cookies=[cookie(new_id, ttl)])

    @post("/logout", status_code=200)
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        value = request.cookies.get(settings.session_cookie)
        if valid_session_id(value):
            await bff.end(value, client_address(request))
        return Response({"detail": "logged out"}, headers=NO_STORE, cookies=[cookie()])

    @get("/session")
    async def session_info(request: Request[Any, Any, Any]) -> Response[Any]:
        value = request.cookies.get(settings.session_cookie)
        session = await bff.store.get(value) if valid_session_id(value) else None
        if session is None:
            cleared = [cookie()] if value is not None else []
            return Response({"authenticated": False}, headers=NO_STORE, cookies=cleared)
        return Response({"authenticated": True, "user": session.user}, headers=NO_STORE)

    @route("/api/{path:path}", http_method=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def api(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
        if any(part in (".", "..") for part in path.split("/")):
            raise BffError(400, "bad path")
        body = await request.body()
        if body and not is_json(request.headers.get("content-type")):
            raise BffError(415, "the API takes JSON bodies only")
        session, ttl = await bff.fresh(session_id(request), client_address(request))
        headers = {name: request.headers[name] for name in REQUEST_HEADERS
                   if name in request.headers}
        headers["accept"] = "application/json"
        headers["authorization"] = f"Bearer {session.access}"
        if body:
            headers["content-type"] = "application/json"
        # The path arrives decoded: encode it again, so that "%3F" stays in the path.
        url = settings.api_url + quote(path, safe=PATH_SAFE)
        query = request.scope.get("query_string", b"")
        if query:
            url += "?" + query.decode("latin-1")
        try:
            upstream = await client.request(request.method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            log.warning("api %s failed: %r", path, exc)
            raise BffError(502, "API unavailable") from None
        if upstream.content and not is_json(upstream.headers.get("content-type")):
            log.warning("api %s answered %s, not JSON", path,
                        upstream.headers.get("content-type", "without a content type"))
            raise BffError(502, "unexpected answer from the API")
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type") or "application/json",
            headers={name: upstream.headers[name] for name in RESPONSE_HEADERS
                     if name in upstream.headers},
            cookies=[cookie(request.cookies[settings.session_cookie], ttl)] if ttl else [],
        )

    def bff_error(request: Request[Any, Any, Any], exc: BffError) -> Response[Any]:
        cookies = [cookie()] if isinstance(exc, SessionExpired) else []
        return Response({"detail": exc.detail}, status_code=exc.status, headers=exc.headers,
                        cookies=cookies)

    def redis_error(request: Request[Any, Any, Any], exc: RedisError) -> Response[Any]:
        if isinstance(exc, LockError):
            return bff_error(request, BffError(503, "session busy, retry", {"Retry-After": "1"}))
        log.warning("redis: %r", exc)
        return bff_error(request, unavailable("session store"))

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        return Response({"detail": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers or {})

    def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return Response({"detail": "internal error"}, status_code=500)

    async def close() -> None:
        await client.aclose()
        await redis.aclose()

    return Litestar(
        [health, login, logout, session_info, api],
        before_request=require_custom_header,
        exception_handlers={
            BffError: bff_error,
            RedisError: redis_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
        before_send=[nosniff],
        on_shutdown=[close],
        openapi_config=None,
        logging_config=None,  # main() configures logging; httpx's per-request lines stay out
    )


def main() -> int:
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"bff: {exc}", file=sys.stderr)
        return 2
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: only the
    # proxies BFF_TRUSTED_PROXIES names may name the browser's address.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="warning", proxy_headers=bool(settings.trusted_proxies),
                forwarded_allow_ips=list(settings.trusted_proxies) or None)
    return 0
