"""Each replica's status list indexes: handed out from a leased block in memory, so
issuing a token costs no database statement; one short transaction leases the next
block every ``STATUS_BLOCK_SIZE`` tokens or ``BLOCK_USE`` seconds
(``authority.status.store``)."""

from __future__ import annotations

import asyncio

from authority.clock import Clock
from authority.settings import STATUS_BLOCK_SIZE, Settings
from authority.status.store import BLOCK_USE, block_hold, lease_block
from authority.storage.database import Database


class StatusIndexes:
    """Hands out indexes of this replica's current block; leases the next one when it is
    used up or too old, one lease at a time however many requests wait for it."""

    def __init__(self, db: Database, settings: Settings, clock: Clock):
        self._db = db
        self._clock = clock
        self._size = settings.status_list_size
        self._hold = block_hold(settings.access_ttl, settings.leeway)
        self._next = 0
        self._end = 0
        self._leased_at = float("-inf")
        self._lock = asyncio.Lock()

    def _take(self, now: float) -> int | None:
        if self._next < self._end and now - self._leased_at < BLOCK_USE:
            idx = self._next
            self._next += 1
            return idx
        return None

    async def allocate(self) -> int:
        """An index no live token holds. Raises ``StatusListFull`` when the ring is."""
        idx = self._take(self._clock())
        if idx is not None:
            return idx
        async with self._lock:
            now = self._clock()
            idx = self._take(now)
            if idx is not None:
                return idx
            start = await self._db.write(lease_block, now, self._size, self._hold)
            self._next, self._end, self._leased_at = start + 1, start + STATUS_BLOCK_SIZE, now
            return start
