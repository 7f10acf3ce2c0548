"""The verifier's token status lists (draft-ietf-oauth-status-list): an access token
with ``status.status_list: {idx, uri}`` is refused as ``revoked`` when bit ``idx`` of
the list at ``uri`` is set (docs/verifier.md, "Revocation: the token status list").

- ``uri`` must be on the issuer's origin (scheme, host, port): a list elsewhere is
  never fetched, and the token is refused (``invalid_claim``).
- The list is a ``statuslist+jwt`` signed by a key of the verifier's own key set (an
  unknown ``kid`` refetches the JWKS as a token's would), with ``sub`` = ``uri``, an
  ``exp`` not passed, ``status_list.bits`` 1; anything else is a failed fetch.
- One cache entry per list, fresh for the smaller of the list's ``ttl`` and the
  response's ``max-age``; then the next requests wait for one refetch (single flight,
  with ``If-None-Match``). A failed fetch keeps the last good list for
  ``max(ttl, policy.status_stale_ttl)`` past its freshness (never past its ``exp``);
  without a usable list, ``StatusUnavailable``.
- Warm, a lookup is a dictionary read and a bit test on bytes in memory.

Fetches use the key cache's ``Fetch`` (redirects refused, 1 MiB limit, timeout) in a
thread; async callers await that thread's future.
"""

from __future__ import annotations

import asyncio
import math
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from authority.verifier.cache import MAX_BODY, CachePolicy, Fetch, FetchError, KeyCache, freshness
from authority.verifier.jose import InvalidToken, json_object, log
from authority.verifier.jws import check_header, check_signature, split
from authority.verifier.status_bits import BadStatusList, decode

STATUS_TYP = ("statuslist+jwt", "application/statuslist+jwt")
MAX_LISTS = 16  # distinct list URIs cached per verifier (the authority publishes one)


class StatusUnavailable(InvalidToken):
    """No usable status list: never fetched, invalid, or the last good one is past its
    stale limit while the endpoint fails. The token may be valid: a resource server
    should answer 503, not 401 (unless ``status_fail_open``)."""

    def __init__(self, description: str | None = None):
        super().__init__("status_unavailable", description)


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    bits: bytes
    fresh_until: float  # refetch from here on
    usable_until: float  # after this, not used without a successful fetch
    fetched_at: float  # the last 200 or 304
    exp: float  # the list token's own exp
    ttl: float
    etag: str | None


_EMPTY = StatusSnapshot(b"", -math.inf, -math.inf, -math.inf, -math.inf, 0.0, None)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without userinfo; None otherwise."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


class StatusList:
    """The cache of one list: its snapshot, the fetch in flight, the retry backoff."""

    def __init__(self, uri: str, owner: StatusLists):
        self.uri = uri
        self.owner = owner
        self.snapshot = _EMPTY
        self.inflight: Future[None] | None = None
        self.retry_at = -math.inf
        self.failures = 0
        self.failing_open = False  # fail-open already logged for this outage


class StatusLists:
    """Every status list a ``Verifier`` has looked at, by URI."""

    def __init__(
        self,
        *,
        issuer: str,
        keys: KeyCache,
        fetch: Fetch,
        clock: Callable[[], float],
        policy: CachePolicy,
        leeway: float,
        fail_open: bool,
    ):
        self.origin = origin(issuer)
        self.keys = keys
        self.fetch = fetch
        self.clock = clock
        self.policy = policy
        self.leeway = leeway
        self.fail_open = fail_open
        self.lists: dict[str, StatusList] = {}
        self._lock = threading.Lock()

    # --- lookups -------------------------------------------------------------------

    def check(self, claims: Mapping[str, Any], now: float) -> None:
        """Refuse a token whose list says revoked (or without a usable list)."""
        ref = reference(claims)
        if ref is None:
            return
        idx, uri = ref
        entry = self.lists.get(uri)
        if entry is not None and now < entry.snapshot.fresh_until:
            _test(entry.snapshot.bits, idx)
            return
        try:
            found = self._lookup(uri, now)
            if isinstance(found, Future):
                self._wait(found)
                found = self._usable(uri)
        except StatusUnavailable as exc:
            self._unavailable(uri, exc)
            return
        _test(found, idx)

    async def acheck(self, claims: Mapping[str, Any], now: float) -> None:
        ref = reference(claims)
        if ref is None:
            return
        idx, uri = ref
        entry = self.lists.get(uri)
        if entry is not None and now < entry.snapshot.fresh_until:
            _test(entry.snapshot.bits, idx)
            return
        try:
            found = self._lookup(uri, now)
            if isinstance(found, Future):
                try:
                    await asyncio.wait_for(asyncio.wrap_future(found), self._wait_limit())
                except TimeoutError:
                    raise StatusUnavailable("the status list did not arrive in time") from None
                found = self._usable(uri)
        except StatusUnavailable as exc:
            self._unavailable(uri, exc)
            return
        _test(found, idx)

    def age(self, uri: str) -> float | None:
        """Seconds since the list at ``uri`` was last fetched or revalidated."""
        entry = self.lists.get(uri)
        if entry is None or entry.snapshot.fetched_at == -math.inf:
            return None
        return self.clock() - entry.snapshot.fetched_at

    def _wait(self, future: Future[None]) -> None:
        try:
            future.result(self._wait_limit())
        except TimeoutError:
            raise StatusUnavailable("the status list did not arrive in time") from None

    def _wait_limit(self) -> float:
        return 3 * self.policy.timeout + 1  # the list, then perhaps the metadata and JWKS

    def _usable(self, uri: str) -> bytes:
        snapshot = self.lists[uri].snapshot
        if self.clock() >= snapshot.usable_until:
            raise StatusUnavailable("no status list could be fetched")
        return snapshot.bits

    def _unavailable(self, uri: str, exc: StatusUnavailable) -> None:
        if not self.fail_open:
            raise exc
        entry = self.lists.get(uri)
        if entry is not None and not entry.failing_open:
            entry.failing_open = True
            log.warning("status list %s unusable (%s): accepting tokens (fail open)", uri, exc)

    def _lookup(self, uri: str, now: float) -> bytes | Future[None]:
        """The bits, or the fetch to wait for."""
        with self._lock:
            entry = self.lists.get(uri)
            if entry is None:
                if origin(uri) != self.origin or self.origin is None:
                    raise InvalidToken(
                        "invalid_claim", "the status list is not on the issuer's origin"
                    )
                if len(self.lists) >= MAX_LISTS:
                    raise StatusUnavailable("too many status lists")
                entry = self.lists[uri] = StatusList(uri, self)
            snapshot = entry.snapshot
            if now < snapshot.fresh_until:
                return snapshot.bits
            if entry.inflight is not None:
                return entry.inflight
            if now < entry.retry_at:  # failing: the stale list if any, no request
                if now < snapshot.usable_until:
                    return snapshot.bits
                raise StatusUnavailable("the status list endpoint is failing; retrying later")
            return self._start_locked(entry)

    # --- fetching ------------------------------------------------------------------

    def _start_locked(self, entry: StatusList) -> Future[None]:
        future: Future[None] = Future()
        future.set_running_or_notify_cancel()
        entry.inflight = future
        try:
            threading.Thread(
                target=self._run, args=(entry, future), name="status-fetch", daemon=True
            ).start()
        except RuntimeError as exc:
            log.warning("status list fetch not started: %s", exc)
            self._finish_locked(entry, future, None)
        return future

    def _run(self, entry: StatusList, future: Future[None]) -> None:
        snapshot = None
        try:
            snapshot = self._refresh(entry)
        except Exception as exc:  # any failure keeps the last good list
            log.warning("status list fetch from %s failed: %s", entry.uri, exc)
        finally:
            with self._lock:
                self._finish_locked(entry, future, snapshot)

    def _finish_locked(
        self, entry: StatusList, future: Future[None], snapshot: StatusSnapshot | None
    ) -> None:
        if snapshot is None:
            entry.failures += 1
            delay = self.policy.retry_min * 2 ** min(entry.failures - 1, 30)
            entry.retry_at = self.clock() + min(delay, self.policy.retry_max)
        else:
            entry.snapshot = snapshot
            entry.failures = 0
            entry.retry_at = -math.inf
            entry.failing_open = False
        entry.inflight = None
        future.set_result(None)

    def _refresh(self, entry: StatusList) -> StatusSnapshot:
        previous = entry.snapshot
        headers = {"Accept": "application/statuslist+jwt"}
        if previous.etag and previous.bits:
            headers["If-None-Match"] = previous.etag
        response = self.fetch(entry.uri, headers, self.policy.timeout)
        if len(response.body) > MAX_BODY:
            raise FetchError(f"{entry.uri} answered with over {MAX_BODY} bytes")
        if response.status == 304 and "If-None-Match" in headers:
            bits, exp, ttl = previous.bits, previous.exp, previous.ttl
            etag = response.headers.get("etag", previous.etag)
        elif response.status == 200:
            bits, exp, ttl = self._verified(entry.uri, response.body)
            etag = response.headers.get("etag")
        else:
            raise FetchError(f"status list endpoint answered HTTP {response.status}")
        now = self.clock()
        if exp + self.leeway <= now:
            raise FetchError("the status list has expired")
        fresh = min(ttl, freshness(response.headers, ttl, self.policy))
        stale = max(ttl, self.policy.status_stale_ttl)
        return StatusSnapshot(
            bits,
            now + fresh,
            min(now + fresh + stale, exp + self.leeway),
            now,
            exp,
            ttl,
            etag,
        )

    def _verified(self, uri: str, body: bytes) -> tuple[bytes, float, float]:
        """The bits, ``exp`` and ``ttl`` of a valid status list token."""
        try:
            # A list is as large as the fetch allows (an access token's limit is 8 KiB;
            # 1% of a million tokens revoked is a list of about 20 KiB).
            header, signing_input, payload, signature = split(body.strip(), MAX_BODY)
            alg, kid = check_header(header, typ=False)
            typ = header.get("typ")
            if type(typ) is not str or typ.lower() not in STATUS_TYP:
                raise FetchError("the status list's typ is not statuslist+jwt")
            check_signature(self.keys.get(kid, self.clock()), alg, signature, signing_input)
            claims = json_object(payload)
        except InvalidToken as exc:
            raise FetchError(f"the status list token is invalid: {exc}") from None
        if claims.get("sub") != uri:
            raise FetchError("the status list's sub is not its URI")
        exp = _seconds(claims.get("exp"), "exp")
        ttl = _seconds(claims.get("ttl", self.policy.default_max_age), "ttl")
        if ttl <= 0:
            raise FetchError("the status list's ttl is not positive")
        status_list = claims.get("status_list")
        if type(status_list) is not dict or status_list.get("bits") != 1:
            raise FetchError("the status list is not a list of 1-bit statuses")
        try:
            bits = decode(status_list.get("lst"))
        except BadStatusList as exc:
            raise FetchError(str(exc)) from None
        return bits, exp, ttl


def _seconds(value: object, name: str) -> float:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return float(value)
    raise FetchError(f"the status list's {name} is not a number")


def reference(claims: Mapping[str, Any]) -> tuple[int, str] | None:
    """``(idx, uri)`` of a token's ``status.status_list``; None without a status claim."""
    status = claims.get("status")
    if status is None:
        return None
    ref = status.get("status_list") if type(status) is dict else None
    if ref is None and type(status) is dict:
        return None  # another status mechanism than ours: not ours to check
    if type(ref) is not dict:
        raise InvalidToken("invalid_claim", "status must hold a status_list object")
    idx, uri = ref.get("idx"), ref.get("uri")
    if type(idx) is not int or idx < 0 or type(uri) is not str:
        raise InvalidToken("invalid_claim", "status_list needs an integer idx and a uri")
    return idx, uri


def _test(bits: bytes, idx: int) -> None:
    byte = idx >> 3
    if byte >= len(bits):
        raise InvalidToken("invalid_claim", "the status list does not reach this idx")
    if bits[byte] >> (idx & 7) & 1:
        raise InvalidToken("revoked")
