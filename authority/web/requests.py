"""Request ids and the access log (SPEC section 3), around every HTTP request.

Every answer carries ``X-Request-ID``: the client's when it sent a sane one (at most
64 characters of ``A-Z a-z 0-9 . _ : -``), else a new random one. While the request is
served, ``authority.storage.audit.current_request()`` gives its id, address and user
agent, so audit events and sessions know where they came from. Each request is one
line on the ``authority.access`` logger: method, route (the route's template, never
the query string, so no code or token reaches the log), status, duration, request id.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from authority.storage.audit import RequestInfo, request_scope

log = logging.getLogger("authority.access")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_USER_AGENT = 256
MAX_UNROUTED_PATH = 100


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"x-request-id":
            candidate = value.decode("latin-1").strip()
            if SANE_ID.fullmatch(candidate):
                return candidate
            break
    return secrets.token_hex(8)


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")[:MAX_USER_AGENT]
    return None


class RequestLog:
    """ASGI wrapper of the whole application (routing and its errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        request_id = request_id_of(headers)
        client = scope.get("client")
        info = RequestInfo(
            request_id=request_id,
            address=client[0] if client else None,
            user_agent=_header(headers, b"user-agent"),
        )
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *[
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() != b"x-request-id"
                    ],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            with request_scope(info):
                await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(access_line(scope, status, time.perf_counter() - started, request_id))


def access_line(scope: Scope, status: int, seconds: float, request_id: str) -> str:
    """One request as a JSON object, spliced rather than encoded as a whole: it is
    written for every request. ``request_id`` is a sane id, which needs no escaping."""
    route = scope.get("path_template") or _unrouted(scope.get("path", ""))
    return (
        f'{{"method":{json.dumps(scope.get("method"))},"route":{json.dumps(route)},'
        f'"status":{status},"duration_ms":{round(seconds * 1000, 2)},'
        f'"request_id":"{request_id}"}}'
    )


def _unrouted(path: str) -> str:
    """A path no route matched: its start only, for the log line."""
    return path[:MAX_UNROUTED_PATH]
