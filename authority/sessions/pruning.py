"""Deleting dead refresh tokens, revocations and authorization codes, and audit events older than
``AUDIT_RETENTION``, in small batches, on demand (``authority tokens prune``) or
periodically (every ``MAINTENANCE_INTERVAL`` in each server).

Each batch is its own short transaction, so the token endpoint's writes interleave
with a long prune instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Connection, delete, select

from authority.accounts import throttle
from authority.clock import Clock
from authority.storage import audit
from authority.storage.database import Database, DatabaseUnavailable
from authority.storage.tables import (
    AuthorizationCode,
    RefreshFamily,
    RefreshToken,
    RevokedAccessToken,
)

BATCH = 100  # families (with all their tokens) per transaction: ~10-20 ms of lock
EVENT_BATCH = 1000  # audit events per transaction: small rows, one index besides the key
PAUSE = 0.15  # seconds between batches: more than SQLite's longest busy-handler sleep
log = logging.getLogger("authority.pruning")


def prune_batch(conn: Connection, now: float, batch: int) -> int:
    """Delete one batch of dead rows: ``batch`` expired families with their tokens, and
    up to 20 times ``batch`` expired used tokens and revocations; returns how many.
    Callers loop in short transactions so that pruning never holds the lock for long.

    A consumed token is kept until it expires: until then, presenting it again is
    reuse and revokes the family. A family, revoked or not, is kept until its absolute
    expiry, and then goes with its tokens."""
    families = list(
        conn.execute(
            select(RefreshFamily.id).where(RefreshFamily.expires_at <= now).limit(batch)
        ).scalars()
    )
    deleted = 0
    if families:
        deleted += conn.execute(
            delete(RefreshToken).where(RefreshToken.family_id.in_(families))
        ).rowcount
        deleted += conn.execute(
            delete(RefreshFamily).where(RefreshFamily.id.in_(families))
        ).rowcount
    used = list(
        conn.execute(
            select(RefreshToken.id)
            .where(RefreshToken.expires_at <= now, RefreshToken.consumed_at.is_not(None))
            .limit(batch * 20)
        ).scalars()
    )
    if used:
        deleted += conn.execute(delete(RefreshToken).where(RefreshToken.id.in_(used))).rowcount
    expired = list(
        conn.execute(
            select(RevokedAccessToken.jti)
            .where(RevokedAccessToken.expires_at <= now)
            .limit(batch * 20)
        ).scalars()
    )
    if expired:
        deleted += conn.execute(
            delete(RevokedAccessToken).where(RevokedAccessToken.jti.in_(expired))
        ).rowcount
    return int(deleted + _prune_codes(conn, now, batch * 20))


def _prune_codes(conn: Connection, now: float, batch: int) -> int:
    """Expired authorization codes, once nothing is left for their replay to revoke:
    unused ones at once, a used one when the session it opened is gone."""
    live = select(RefreshFamily.id).where(RefreshFamily.id == AuthorizationCode.family_id)
    dead = list(
        conn.execute(
            select(AuthorizationCode.code_hash)
            .where(AuthorizationCode.expires_at <= now, ~live.exists())
            .limit(batch)
        ).scalars()
    )
    if not dead:
        return 0
    return int(
        conn.execute(
            delete(AuthorizationCode).where(AuthorizationCode.code_hash.in_(dead))
        ).rowcount
    )


async def prune_tokens(db: Database, clock: Clock, batch: int = BATCH) -> int:
    """Delete every row that is due; returns how many were deleted."""
    return await _in_batches(batch, lambda: db.write(prune_batch, clock(), batch))


async def prune_events(
    db: Database, clock: Clock, retention: float, batch: int = EVENT_BATCH
) -> int:
    """Delete every audit event older than ``retention`` seconds; returns how many."""
    return await _in_batches(batch, lambda: db.write(audit.prune_batch, clock() - retention, batch))


async def _in_batches(batch: int, delete_some: Callable[[], Awaitable[int]]) -> int:
    """Call ``delete_some`` (one short transaction) until it deletes fewer than ``batch``."""
    total = 0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        deleted = await delete_some()
        total += deleted
        if deleted < batch:
            return total
        # Let token writes waiting for the lock go first. A writer in another process
        # waits in SQLite's busy handler, which sleeps up to 100 ms between tries: a
        # shorter pause starves it. And hold the lock at most half the time.
        await asyncio.sleep(max(PAUSE, loop.time() - started))


async def run_pruning(
    db: Database, clock: Clock, interval: float, throttle_window: int, audit_retention: float
) -> None:
    """Background loop of a server process: tokens, failed-login counters, old events."""
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = await prune_tokens(db, clock)
            deleted += await db.write(throttle.prune, clock(), throttle_window)
            events = await prune_events(db, clock, audit_retention)
        except DatabaseUnavailable as exc:
            log.warning("pruning skipped: %s", exc)
            continue
        except Exception:  # the loop must outlive any one bad batch
            log.exception("pruning failed")
            continue
        if deleted:
            log.info("pruned %d expired token rows", deleted)
        if events:
            log.info("pruned %d audit events older than AUDIT_RETENTION", events)
