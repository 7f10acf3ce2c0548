"""Calls to the authority's ``/auth`` API (body delivery) and to the API behind the BFF.

Each failure becomes a ``BffError`` with the status the browser should see: the
authority's own 4xx answers pass through, its outages and garbage become 503/502.

Every call to the authority names the browser in ``X-Forwarded-For``, so that the
authority (with ``AUTHORITY_TRUSTED_PROXIES`` set to this BFF's address) throttles
failed logins per browser, not per BFF.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import logging
from typing import Any

import httpx

log = logging.getLogger("bff")
RETRY_AFTER = "5"


class BffError(Exception):
    """An answer for the browser: status, ``{"detail": ...}`` and extra headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class SessionExpired(BffError):
    """The session is gone (logged out, expired, revoked, or Redis lost it)."""

    def __init__(self) -> None:
        super().__init__(401, "session expired, log in again")


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The BFF talks to the authority without cookies: a cookie would switch the
    authority to cookie mode, which wants a CSRF token."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def http_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
    )


def forwarded_for(client: str | None) -> dict[str, str]:
    """``X-Forwarded-For: <the browser's address>``: the address this BFF's own server saw
    (the peer, or what a proxy it trusts named), never a header the browser sent. Nothing
    when there is no usable address (a Unix socket)."""
    try:
        return {"X-Forwarded-For": str(ipaddress.ip_address(client or ""))}
    except ValueError:
        return {}


def unavailable(what: str) -> BffError:
    return BffError(503, f"{what} unavailable, retry later", {"Retry-After": RETRY_AFTER})


class Authority:
    def __init__(self, client: httpx.AsyncClient, base_url: str):
        self.client = client
        self.base_url = base_url

    async def _post(self, path: str, body: dict[str, Any], client: str | None) -> httpx.Response:
        try:
            return await self.client.post(f"{self.base_url}{path}", json=body,
                                          headers=forwarded_for(client))
        except httpx.HTTPError as exc:
            log.warning("authority %s failed: %r", path, exc)
            raise unavailable("authority") from None

    async def login(self, credentials: dict[str, str], client: str | None) -> dict[str, Any]:
        """``{"user", "tokens"}``; a refusal passes through with its status and detail.
        ``client`` is the browser's address, which the authority's throttle counts."""
        response = await self._post("/auth/login", {**credentials, "delivery": "body"}, client)
        if response.status_code == 200:
            answer = _json(response)
            if isinstance(answer.get("user"), dict) and isinstance(answer.get("tokens"), dict):
                return answer
            raise _garbage("/auth/login", response)
        raise _refusal("/auth/login", response)

    async def refresh(self, refresh_token: str, client: str | None) -> dict[str, Any]:
        """The rotated tokens; ``SessionExpired`` when the authority refuses the token."""
        response = await self._post("/auth/refresh", {"refresh": refresh_token}, client)
        if response.status_code == 200:
            answer = _json(response)
            tokens = answer.get("tokens")
            return tokens if isinstance(tokens, dict) else answer
        status = response.status_code
        if status == 401 or (status == 400 and _json(response).get("error") == "invalid_grant"):
            raise SessionExpired
        if status in (429, 503) or status >= 500:
            raise _refusal("/auth/refresh", response)
        raise _garbage("/auth/refresh", response)

    async def logout(self, refresh_token: str, client: str | None) -> bool:
        """Revoke the token's family; True when the authority confirmed it (or already
        knew the token as dead: 401)."""
        try:
            response = await self._post("/auth/logout", {"refresh": refresh_token}, client)
        except BffError:
            return False
        if response.status_code in (200, 204, 401):
            return True
        log.warning("authority /auth/logout answered %s: %.200s",
                    response.status_code, response.text)
        return False


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    return answer if isinstance(answer, dict) else {}


def _garbage(path: str, response: httpx.Response) -> BffError:
    log.error("authority %s answered %s with an unexpected body: %.200s",
              path, response.status_code, response.text)
    return BffError(502, "unexpected answer from the authority")


def _refusal(path: str, response: httpx.Response) -> BffError:
    status = response.status_code
    if status in (429, 503):
        retry_after = response.headers.get("retry-after", RETRY_AFTER)
        detail = "too many attempts, retry later" if status == 429 else "authority unavailable"
        return BffError(status, detail, {"Retry-After": retry_after})
    if 400 <= status < 500:
        reason = _json(response).get("detail")
        return BffError(status, reason if isinstance(reason, str) else "refused by the authority")
    if status >= 500:
        log.warning("authority %s answered %s", path, status)
        return unavailable("authority")
    return _garbage(path, response)
