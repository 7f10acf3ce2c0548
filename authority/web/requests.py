"""Request ids and the access log (SPEC section 3), around every HTTP request.

Every answer carries ``X-Request-ID``: the client's when it sent a sane one (at most
64 characters of ``A-Z a-z 0-9 . _ : -``), else a new random one. While the request is
served, ``authority.storage.audit.current_request()`` gives its id, address and user
agent, so audit events and sessions know where they came from. Each request is one
line on the ``authority.access`` logger: method, route (the route's template, never
the query string, so no code or token reaches the log), status, duration, request id.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from authority import logs
from authority.storage.audit import RequestInfo, request_scope

log = logging.getLogger("authority.access")
SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_USER_AGENT = 256
MAX_UNROUTED_PATH = 100
MAX_QUOTED = 1000


# A new id is this process's random prefix and a counter: unique across workers and
# restarts (ids are for finding lines, not secrets), without a system call per request.
_PREFIX = secrets.token_hex(4)
_counter = itertools.count(int.from_bytes(secrets.token_bytes(4)))


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter) & 0xFFFFFFFF:08x}"


def request_info(scope: Scope) -> RequestInfo:
    """The request's id (the client's, when sane), address and user agent."""
    request_id = user_agent = None
    for name, value in scope.get("headers") or ():
        name = name.lower()
        if name == b"x-request-id" and request_id is None:
            candidate = value.decode("latin-1").strip()
            request_id = candidate if SANE_ID.fullmatch(candidate) else ""
        elif name == b"user-agent" and user_agent is None:
            user_agent = value.decode("latin-1")[:MAX_USER_AGENT]
    client = scope.get("client")
    return RequestInfo(
        request_id=request_id or new_request_id(),
        address=client[0] if client else None,
        user_agent=user_agent,
    )


class RequestLog:
    """ASGI wrapper of the whole application (routing and its errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info = request_info(scope)
        request_id = info.request_id
        header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != header[0]]
                headers.append(header)
                message["headers"] = headers
            await send(message)

        try:
            with request_scope(info):
                await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                logs.access(access_line(scope, status, time.perf_counter() - started, request_id))


def access_line(scope: Scope, status: int, seconds: float, request_id: str) -> str:
    """One request as a JSON object, spliced rather than encoded as a whole: it is
    written for every request. ``request_id`` is a sane id, which needs no escaping."""
    template = scope.get("path_template")
    route = _quoted(template) if template else json.dumps(_unrouted(scope.get("path", "")))
    return (
        f'{{"method":{_quoted(str(scope.get("method", "")))},"route":{route},"status":{status},'
        f'"duration_ms":{seconds * 1000:.2f},"request_id":"{request_id}"}}'
    )


_QUOTED: dict[str, str] = {}


def _quoted(text: str) -> str:
    """``text`` as a JSON string; the few methods and route templates, encoded once."""
    quoted = _QUOTED.get(text)
    if quoted is None:
        quoted = json.dumps(text)
        if len(_QUOTED) < MAX_QUOTED:
            _QUOTED[text] = quoted
    return quoted


def _unrouted(path: str) -> str:
    """A path no route matched: its start only, for the log line."""
    return path[:MAX_UNROUTED_PATH]
