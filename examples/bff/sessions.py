"""Server-side sessions in Redis: the tokens of one login under an opaque id, with a
TTL that follows the refresh token, and a per-session lock shared by every process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from redis.asyncio import Redis
from redis.exceptions import LockError, LockNotOwnedError

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def valid_session_id(value: str | None) -> TypeGuard[str]:
    return value is not None and SESSION_ID.fullmatch(value) is not None


def session_key(session_id: str) -> str:
    """Redis holds a hash of the id, so a dump of Redis yields no usable cookie."""
    return "bff:session:" + hashlib.sha256(session_id.encode()).hexdigest()


def lock_key(session_id: str) -> str:
    return "bff:lock:" + hashlib.sha256(session_id.encode()).hexdigest()


class BadTokenAnswer(ValueError):
    """The authority's token answer lacks a field the BFF needs."""


@dataclass(frozen=True, slots=True)
class Session:
    access: str
    refresh: str
    access_expires_at: float
    refresh_at: float  # when to refresh: a little before the access token expires
    user: dict[str, Any]
    refreshes: int = 0

    @classmethod
    def from_tokens(
        cls, tokens: Any, user: dict[str, Any], sent_at: float, skew: float, refreshes: int = 0
    ) -> tuple[Session, int]:
        """A session and its TTL in seconds from an authority token answer; times
        count from ``sent_at``, when the request left, so they err on the early side."""
        try:
            access, refresh = tokens["access"], tokens["refresh"]
            expires_in, ttl = float(tokens["expires_in"]), int(tokens["refresh_expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadTokenAnswer(f"token answer without a usable {exc}") from None
        if not (isinstance(access, str) and isinstance(refresh, str) and ttl > 0):
            raise BadTokenAnswer("token answer with unusable tokens or lifetime")
        expires_at = sent_at + expires_in
        session = cls(
            access=access,
            refresh=refresh,
            access_expires_at=expires_at,
            refresh_at=expires_at - min(skew, expires_in / 4),
            user=user,
            refreshes=refreshes,
        )
        return session, ttl

    def rotated(self, tokens: Any, skew: float, *, sent_at: float) -> tuple[Session, int]:
        return Session.from_tokens(tokens, self.user, sent_at, skew, self.refreshes + 1)


class SessionStore:
    def __init__(self, redis: Redis, lock_timeout: float, lock_wait: float):
        self.redis = redis
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait

    async def get(self, session_id: str) -> Session | None:
        raw = await self.redis.get(session_key(session_id))
        if raw is None:
            return None
        try:
            return Session(**json.loads(raw))
        except (TypeError, ValueError):
            return None  # a record this version cannot read: the user logs in again

    async def create(self, session: Session, ttl: int) -> str:
        session_id = new_session_id()
        await self.redis.set(session_key(session_id), json.dumps(asdict(session)), ex=ttl)
        return session_id

    async def replace(self, session_id: str, session: Session, ttl: int) -> bool:
        """Store the rotated tokens unless the session was deleted meanwhile."""
        stored = await self.redis.set(
            session_key(session_id), json.dumps(asdict(session)), ex=ttl, xx=True
        )
        return bool(stored)

    async def delete(self, session_id: str) -> None:
        await self.redis.delete(session_key(session_id))

    @contextlib.asynccontextmanager
    async def lock(self, session_id: str) -> AsyncIterator[None]:
        """The session's lock (SET NX PX with a random token, released by a
        compare-and-delete script): one refresh or logout at a time, across processes.
        Raises ``LockError`` when it cannot be had within ``lock_wait``."""
        lock = self.redis.lock(
            lock_key(session_id),
            timeout=self.lock_timeout,
            sleep=0.02,
            blocking_timeout=self.lock_wait,
            thread_local=False,
        )
        if not await lock.acquire():
            raise LockError("session busy: another request holds its lock")
        try:
            yield
        finally:
            # A holder slower than the lock timeout has lost it; whoever took it next
            # acted on the current session, so there is nothing left to release.
            with contextlib.suppress(LockNotOwnedError):
                await lock.release()
