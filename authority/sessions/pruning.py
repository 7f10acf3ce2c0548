"""Deleting dead refresh tokens and revocations in small batches, on demand or periodically.

Each batch is its own short transaction, so the token endpoint's writes interleave
with a long prune instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import logging

from authority.accounts import throttle
from authority.storage.database import Database, DatabaseUnavailable
from authority.sessions.families import prune_batch
from authority.signing.keys import Clock

BATCH = 100  # families (with all their tokens) per transaction: ~10-20 ms of lock
PAUSE = 0.15  # seconds between batches: more than SQLite's longest busy-handler sleep
log = logging.getLogger("authority.pruning")


async def prune_tokens(db: Database, clock: Clock, batch: int = BATCH) -> int:
    """Delete every row that is due; returns how many were deleted."""
    total = 0
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        deleted = await db.write(prune_batch, clock(), batch)
        total += deleted
        if deleted < batch:
            return total
        # Let token writes waiting for the lock go first. A writer in another process
        # waits in SQLite's busy handler, which sleeps up to 100 ms between tries: a
        # shorter pause starves it. And hold the lock at most half the time.
        await asyncio.sleep(max(PAUSE, loop.time() - started))


async def run_pruning(db: Database, clock: Clock, interval: float, throttle_window: int) -> None:
    """Background loop of a server process: tokens, and failed-login counters."""
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = await prune_tokens(db, clock)
            deleted += await db.write(throttle.prune, clock(), throttle_window)
        except DatabaseUnavailable as exc:
            log.warning("token pruning skipped: %s", exc)
            continue
        except Exception:  # the loop must outlive any one bad batch
            log.exception("token pruning failed")
            continue
        if deleted:
            log.info("pruned %d expired token rows", deleted)
