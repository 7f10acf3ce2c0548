"""The verifier's key cache: the JWKS (RFC 7517) found through the issuer's RFC 8414
metadata, kept in memory and refreshed per ``Cache-Control`` (RFC 9111 section 5.2).

- A warm cache costs no network per token: lookups read an immutable snapshot.
- Refreshes run in a background thread before the keys expire, with ``If-None-Match``.
- An unknown ``kid`` refetches at most once per ``refetch_cooldown``; one fetch is in
  flight at a time and every caller that needs it waits for that one.
- A failed fetch never drops keys: the last good set serves for ``stale_ttl`` after it
  expired, while retries back off.
- Metadata that names another issuer is a configuration error (``IssuerMismatch``,
  logged as an error with both issuers), not an outage: without usable keys, tokens
  are refused with it rather than with ``KeysUnavailable``.

The HTTP client is any ``Fetch`` callable; the default uses ``urllib``, and async
callers wait for the same thread.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authority.verifier.jose import (
    InvalidToken,
    IssuerMismatch,
    KeysUnavailable,
    json_object,
    log,
)
from authority.verifier.jwks import PublicKey, parse_jwks

if TYPE_CHECKING:
    import httpx

MAX_BODY = 1 << 20


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


Fetch = Callable[[str, Mapping[str, str], float], HttpResponse]
"""``fetch(url, request_headers, timeout)``: a GET. Raise on a transport failure."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Keys come only from the configured or discovered URL: a redirect could hand the
    key set to another origin, or from https to http (RFC 8414 section 3.3 binds the
    metadata to its issuer). A 3xx is returned as it is and counts as a failed fetch."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def urllib_fetch(url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
    """A GET with the standard library (never follows redirects, honours proxy
    variables)."""
    request = urllib.request.Request(  # noqa: S310 (the Verifier only accepts http(s) URLs)
        url, headers={"Accept": "application/json", **headers}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(MAX_BODY + 1)
            return HttpResponse(response.status, _lower(response.headers.items()), body)
    except urllib.error.HTTPError as error:  # 304 and every error status land here
        with error:
            return HttpResponse(error.code, _lower(error.headers.items()), b"")


def httpx_fetch(client: httpx.Client) -> Fetch:
    """A ``Fetch`` over an ``httpx.Client`` you already have (pooling, proxies, TLS);
    redirects are never followed, whatever the client's own setting."""

    def fetch(url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        response = client.get(url, headers=dict(headers), timeout=timeout, follow_redirects=False)
        return HttpResponse(
            response.status_code, _lower(response.headers.items()), response.content
        )

    return fetch


def _lower(items: Iterable[tuple[str, object]]) -> dict[str, str]:
    return {name.lower(): str(value) for name, value in items}


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long keys are trusted and how hard the JWKS endpoint may be asked."""

    default_max_age: float = 300.0  # when the JWKS response has no usable Cache-Control
    min_max_age: float = 5.0  # floor for max-age=0, no-cache and no-store
    max_max_age: float = 86400.0
    refresh_ahead: float = 0.8  # refresh in the background at this fraction of max-age
    stale_ttl: float = 6 * 3600.0  # serve the last good keys this long after they expired
    refetch_cooldown: float = 10.0  # at most one refetch for unknown kids per period
    retry_min: float = 1.0  # backoff after failed fetches: doubling, up to retry_max
    retry_max: float = 60.0
    timeout: float = 5.0  # per HTTP request
    # A status list whose refetch fails serves max(its ttl, this) past its freshness
    # (never past its exp); then tokens are status_unavailable (verifier/status.py).
    status_stale_ttl: float = 300.0


_MAX_AGE = re.compile(r'(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)', re.I)
_NO_CACHE = re.compile(r"(?:^|,)\s*no-(?:cache|store)\b", re.I)


def freshness(headers: Mapping[str, str], fallback: float, policy: CachePolicy) -> float:
    """Seconds a response stays fresh: ``max-age`` minus ``Age``, within the policy."""
    control = headers.get("cache-control", "")
    if _NO_CACHE.search(control):
        seconds = 0.0
    elif match := _MAX_AGE.search(control):
        age = headers.get("age", "0").strip()
        seconds = int(match[1]) - (int(age) if age.isdigit() else 0)
    else:
        seconds = fallback
    return min(max(float(seconds), policy.min_max_age), policy.max_max_age)


@dataclass(frozen=True, slots=True)
class Snapshot:
    keys: Mapping[str, PublicKey]
    refresh_at: float  # start a background refresh from here on
    usable_until: float  # after this, the keys are not used without a successful fetch
    etag: str | None = None
    max_age: float = 0.0


class FetchError(Exception):
    """The metadata or JWKS endpoint gave no usable answer."""


class KeyCache:
    """Keys by ``kid``: fixed (``jwks_url`` None) or fetched from ``jwks_url`` (or from
    the ``jwks_uri`` of ``metadata_url``)."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        metadata_url: str | None,
        fixed: Mapping[str, PublicKey] | None,
        fetch: Fetch,
        clock: Callable[[], float],
        policy: CachePolicy,
    ):
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.metadata_url = metadata_url
        self.fetch = fetch
        self.clock = clock
        self.policy = policy
        self.remote = fixed is None
        self.snapshot = Snapshot(
            fixed or {},
            math.inf if fixed is not None else -math.inf,
            math.inf if fixed is not None else -math.inf,
        )
        self._lock = threading.Lock()
        self._inflight: Future[None] | None = None
        self._retry_at = -math.inf
        self._failures = 0
        self._kid_fetch_at = -math.inf
        self._problem: IssuerMismatch | None = None  # why the last fetch failed, if lasting

    # --- lookups -------------------------------------------------------------------

    def get(self, kid: str, now: float) -> PublicKey:
        """The key for ``kid``, fetching (and waiting) only when the cache requires it.

        A fetch that was already in flight may have started before ``kid`` was
        published, so after it one more lookup may start a fetch of our own (the
        cooldown permitting); the second wait is final.
        """
        found = self._lookup(kid, now)
        if isinstance(found, PublicKey):
            return found
        self._wait_fetch(found)
        found = self._lookup(kid, self.clock())
        if isinstance(found, PublicKey):
            return found
        self._wait_fetch(found)
        return self._after_fetch(kid)

    async def aget(self, kid: str, now: float) -> PublicKey:
        found = self._lookup(kid, now)
        if isinstance(found, PublicKey):
            return found
        await self._await_fetch(found)
        found = self._lookup(kid, self.clock())
        if isinstance(found, PublicKey):
            return found
        await self._await_fetch(found)
        return self._after_fetch(kid)

    def _wait_fetch(self, future: Future[None]) -> None:
        try:
            future.result(self._wait_limit())
        except TimeoutError:
            raise KeysUnavailable("the JWKS endpoint did not answer in time") from None
        if self.clock() >= self.snapshot.usable_until:
            raise self._unavailable()

    async def _await_fetch(self, future: Future[None]) -> None:
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), self._wait_limit())
        except TimeoutError:
            raise KeysUnavailable("the JWKS endpoint did not answer in time") from None
        if self.clock() >= self.snapshot.usable_until:
            raise self._unavailable()

    def _unavailable(self, description: str | None = None) -> InvalidToken:
        """Why there are no usable keys: a lasting configuration error, or an outage."""
        return self._problem or KeysUnavailable(description)

    def _wait_limit(self) -> float:
        return 2 * self.policy.timeout + 1  # metadata, then the JWKS

    def load(self) -> None:
        """Fetch now unless the keys are usable; KeysUnavailable if that fails."""
        future = self._ensure(self.clock())
        if future is not None:
            self._wait_fetch(future)

    async def aload(self) -> None:
        future = self._ensure(self.clock())
        if future is not None:
            await self._await_fetch(future)

    def _lookup(self, kid: str, now: float) -> PublicKey | Future[None]:
        """The key, or the fetch to wait for before looking again."""
        snapshot = self.snapshot
        if now < snapshot.refresh_at and (key := snapshot.keys.get(kid)) is not None:
            return key
        with self._lock:
            snapshot = self.snapshot
            usable = now < snapshot.usable_until
            if (
                usable
                and now >= snapshot.refresh_at
                and self._inflight is None
                and now >= self._retry_at
            ):
                self._start_locked()  # in the background: this request goes on
            if usable and (key := snapshot.keys.get(kid)) is not None:
                return key
            if self._inflight is not None:
                return self._inflight
            if not usable:
                if now < self._retry_at:
                    raise self._unavailable("the JWKS endpoint is failing; retrying later")
                return self._start_locked()
            if (
                not self.remote
                or now < self._kid_fetch_at + self.policy.refetch_cooldown
                or now < self._retry_at
            ):
                raise InvalidToken("unknown_kid")
            self._kid_fetch_at = now
            return self._start_locked()

    def _ensure(self, now: float) -> Future[None] | None:
        with self._lock:
            if now < self.snapshot.usable_until:
                return None
            if self._inflight is not None:
                return self._inflight
            if now < self._retry_at:
                raise self._unavailable("the JWKS endpoint is failing; retrying later")
            return self._start_locked()

    def _after_fetch(self, kid: str) -> PublicKey:
        key = self.snapshot.keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_kid")
        return key

    # --- fetching ------------------------------------------------------------------

    def _start_locked(self) -> Future[None]:
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()  # so that no waiter can cancel it
        self._inflight = future
        try:
            threading.Thread(
                target=self._run, args=(future,), name="jwks-fetch", daemon=True
            ).start()
        except RuntimeError as exc:  # no thread to be had: a failed fetch
            log.warning("JWKS refresh not started: %s", exc)
            self._finish_locked(future, None, None)
        return future

    def _run(self, future: Future[None]) -> None:
        snapshot = problem = None
        try:
            snapshot = self._refresh()
        except IssuerMismatch as exc:  # the operator's to fix: say so loudly
            problem = exc
            log.error("JWKS refresh refused: %s", exc.description)
        except Exception as exc:  # any failure keeps the last good keys
            log.warning("JWKS refresh from %s failed: %s", self.jwks_url or self.metadata_url, exc)
        finally:
            with self._lock:
                self._finish_locked(future, snapshot, problem)

    def _finish_locked(
        self, future: Future[None], snapshot: Snapshot | None, problem: IssuerMismatch | None
    ) -> None:
        self._problem = problem
        if snapshot is None:
            self._failures += 1
            delay = self.policy.retry_min * 2 ** min(self._failures - 1, 30)
            self._retry_at = self.clock() + min(delay, self.policy.retry_max)
        else:
            self.snapshot = snapshot
            self._failures = 0
            self._retry_at = -math.inf
        self._inflight = None
        future.set_result(None)

    def _get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        response = self.fetch(url, headers, self.policy.timeout)
        if len(response.body) > MAX_BODY:
            raise FetchError(f"{url} answered with over {MAX_BODY} bytes")
        return response

    def _refresh(self) -> Snapshot:
        url = self.jwks_url or self._discover()
        previous = self.snapshot
        headers = {"If-None-Match": previous.etag} if previous.etag and previous.keys else {}
        response = self._get(url, headers)
        if response.status == 304 and headers:
            keys, fallback = previous.keys, previous.max_age
            etag = response.headers.get("etag", previous.etag)
        elif response.status == 200:
            try:
                keys = parse_jwks(response.body)
            except ValueError as exc:
                raise FetchError(str(exc)) from None
            if not keys:
                raise FetchError("JWKS has no usable signing key")
            fallback, etag = self.policy.default_max_age, response.headers.get("etag")
        else:
            raise FetchError(f"JWKS endpoint answered HTTP {response.status}")
        max_age = freshness(response.headers, fallback, self.policy)
        now = self.clock()
        return Snapshot(
            keys,
            now + max_age * self.policy.refresh_ahead,
            now + max_age + self.policy.stale_ttl,
            etag,
            max_age,
        )

    def _discover(self) -> str:
        """``jwks_uri`` from the issuer's metadata, which must name the same issuer
        (RFC 8414 section 3.3); an https issuer needs an https ``jwks_uri``."""
        assert self.metadata_url is not None  # noqa: S101 (no URL means a fixed key set)
        response = self._get(self.metadata_url, {})
        if response.status != 200:
            raise FetchError(f"metadata endpoint answered HTTP {response.status}")
        try:
            metadata = json_object(response.body)
        except InvalidToken:
            raise FetchError("metadata is not a JSON object") from None
        if metadata.get("issuer") != self.issuer:
            raise IssuerMismatch(self.issuer, metadata.get("issuer"), self.metadata_url)
        uri = metadata.get("jwks_uri")
        scheme = "https://" if self.issuer.startswith("https://") else ("https://", "http://")
        if type(uri) is not str or not uri.startswith(scheme):
            raise FetchError("metadata has no usable jwks_uri")
        self.jwks_url = uri
        return uri
