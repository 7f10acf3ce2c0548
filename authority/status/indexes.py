"""Each replica's status list indexes: handed out from a leased block in memory, so
issuing a token costs no database statement; one short transaction leases the next
block every ``STATUS_BLOCK_SIZE`` tokens or ``BLOCK_USE`` seconds
(``authority.status.store``).

The indexes of ``client_credentials`` tokens are kept with their client and written in
one batch a second (``flush``), so that disabling the client can set their bits."""

from __future__ import annotations

import asyncio
import logging

from authority.clock import Clock
from authority.settings import STATUS_BLOCK_SIZE, Settings
from authority.status.store import BLOCK_USE, block_hold, lease_block, record_client_tokens
from authority.storage.database import Database

log = logging.getLogger("authority.status")

# How often the indexes of ``client_credentials`` tokens are written (s).
FLUSH = 1.0


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
        self._client_tokens: list[tuple[int, str]] = []
        # The next block, leased while half of the current one is left: a lease waits
        # for the database (behind a batch, or a WAL checkpoint on SQLite), and every
        # token request of the replica would wait with it.
        self._spare: tuple[int, float] | None = None
        self._ahead: asyncio.Task[None] | None = None

    def _take(self, now: float) -> int | None:
        if self._next < self._end and now - self._leased_at < BLOCK_USE:
            idx = self._next
            self._next += 1
            if self._end - self._next == STATUS_BLOCK_SIZE // 2:
                self._lease_ahead()
            return idx
        spare, self._spare = self._spare, None
        if spare is not None and now - spare[1] < BLOCK_USE:
            start, self._leased_at = spare
            self._next, self._end = start + 1, start + STATUS_BLOCK_SIZE
            return start
        return None

    def _lease_ahead(self) -> None:
        if self._spare is None and (self._ahead is None or self._ahead.done()):
            self._ahead = asyncio.create_task(self._lease_spare(), name="status-lease-ahead")

    async def _lease_spare(self) -> None:
        async with self._lock:
            if self._spare is not None:
                return
            now = self._clock()
            try:
                start = await self._db.write(lease_block, now, self._size, self._hold)
            except Exception as exc:  # the next allocation leases itself, and says why
                log.warning("leasing the next status list block ahead failed: %s", exc)
                return
            self._spare = (start, now)

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

    async def allocate_for_client(self, client_id: str) -> int:
        """An index for a ``client_credentials`` token of ``client_id``, remembered with
        its client until the next ``flush``."""
        idx = await self.allocate()
        self._client_tokens.append((idx, client_id))
        return idx

    async def flush(self) -> int:
        """Write the client tokens' indexes remembered so far; how many bits that set
        (those of clients disabled meanwhile)."""
        tokens, self._client_tokens = self._client_tokens, []
        if not tokens:
            return 0
        try:
            return await self._db.write(record_client_tokens, tokens, self._clock())
        except BaseException:
            self._client_tokens[:0] = tokens  # kept for the next flush
            raise

    async def run(self) -> None:
        """Background loop: ``flush`` every ``FLUSH`` seconds."""
        try:
            while True:
                await asyncio.sleep(FLUSH)
                try:
                    await self.flush()
                except Exception:  # the loop must outlive any one bad write
                    log.exception("writing client tokens' status indexes failed")
        finally:
            if self._ahead is not None:
                self._ahead.cancel()
