"""Key lifecycle steps (rotate, revoke, prune, automatic rotation) and the live key ring.

Every step reads the store's state under its lock and decides there, so of two
processes attempting the same step one performs it and the other finds it done.
A new key is generated before the lock is taken, on a worker thread: RSA generation
takes tens of milliseconds and must neither hold the store's lock nor stall the
server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from authority import metrics
from authority.clock import Clock, system_clock
from authority.settings import Settings
from authority.signing.keys import KeyRing, decrypt, generate
from authority.signing.records import (
    KeyRecord,
    KeyStatus,
    KeyStore,
    KeyStoreError,
    KeyTransaction,
    lifecycle,
)
from authority.signing.signer import SigningKey

log = logging.getLogger("authority.keys")


@dataclass(frozen=True, slots=True)
class RotateResult:
    outcome: Literal["created", "promoted", "pending"]
    kid: str
    activate_at: float


def statuses(records: list[KeyRecord], settings: Settings, now: float) -> list[KeyStatus]:
    return lifecycle(records, now, settings.retired_key_lifetime)


async def rotate(
    store: KeyStore,
    settings: Settings,
    *,
    now_: bool = False,
    size: int | None = None,
    clock: Clock = system_clock,
) -> RotateResult:
    """Publish a new ``next`` key (or with ``now_``, make one ``current`` at once).

    A pending ``next`` key makes a plain rotation a no-op, and ``--now`` promotes it
    instead of generating another, so two rotations at once never stack up keys.
    """
    fresh = await asyncio.to_thread(
        generate, size or settings.key_size, settings.key_passphrase, 0.0, clock()
    )
    async with store.transaction() as tx:
        now = clock()
        states = statuses(await tx.records(), settings, now)
        pending = [s.record for s in states if s.state == "next"]
        if now_:
            return await _make_current(tx, states, fresh, now)
        if pending:
            return RotateResult("pending", pending[0].kid, pending[0].activate_at)
        activate_at = now + settings.key_publish_delay
        await tx.add(_at(fresh, activate_at, now))
        return RotateResult("created", fresh.kid, activate_at)


async def ensure_key(
    store: KeyStore, settings: Settings, clock: Clock = system_clock
) -> RotateResult | None:
    """Create a ``current`` key when the store has none (first start); else nothing."""
    if any(s.state == "current" for s in statuses(await store.load(), settings, clock())):
        return None
    fresh = await asyncio.to_thread(
        generate, settings.key_size, settings.key_passphrase, 0.0, clock()
    )
    async with store.transaction() as tx:
        now = clock()
        if any(s.state == "current" for s in statuses(await tx.records(), settings, now)):
            return None
        await tx.add(_at(fresh, now, now))
        return RotateResult("created", fresh.kid, now)


async def revoke(
    store: KeyStore, settings: Settings, kid: str, clock: Clock = system_clock
) -> RotateResult | None:
    """Remove a key now. Revoking the ``current`` key first puts another in its place,
    so the store is never left without a signer and a retired key never signs again."""
    fresh = await asyncio.to_thread(
        generate, settings.key_size, settings.key_passphrase, 0.0, clock()
    )
    async with store.transaction() as tx:
        now = clock()
        states = {s.record.kid: s for s in statuses(await tx.records(), settings, now)}
        if kid not in states:
            raise KeyStoreError(f"no key with kid {kid[:60]!r}")
        replacement = None
        if states[kid].state == "current":
            others = [s for s in states.values() if s.record.kid != kid]
            replacement = await _make_current(tx, others, fresh, now)
        await tx.delete(kid)
        return replacement


async def prune(store: KeyStore, settings: Settings, clock: Clock = system_clock) -> list[str]:
    """Delete retired keys whose tokens have all expired; returns their kids."""
    async with store.transaction() as tx:
        now = clock()
        due = [
            s.record.kid
            for s in statuses(await tx.records(), settings, now)
            if s.remove_after is not None and s.remove_after <= now
        ]
        for kid in due:
            await tx.delete(kid)
        return due


def rotation_due(records: list[KeyRecord], settings: Settings, now: float) -> float | None:
    """When the next key should become current, if one should be published now."""
    states = statuses(records, settings, now)
    if any(s.state == "next" for s in states):
        return None
    current = [s.record for s in states if s.state == "current"]
    if not current:
        return None
    rotate_at = current[0].activate_at + settings.key_rotation_interval
    if now < rotate_at - settings.key_publish_delay:
        return None
    return max(rotate_at, now + settings.key_publish_delay)


async def auto_rotate(
    store: KeyStore, settings: Settings, clock: Clock = system_clock
) -> RotateResult | None:
    """Publish the next key ``KEY_PUBLISH_DELAY`` before the rotation interval ends."""
    if rotation_due(await store.load(), settings, clock()) is None:
        return None
    fresh = await asyncio.to_thread(
        generate, settings.key_size, settings.key_passphrase, 0.0, clock()
    )
    async with store.transaction() as tx:
        now = clock()
        activate_at = rotation_due(await tx.records(), settings, now)
        if activate_at is None:
            return None
        await tx.add(_at(fresh, activate_at, now))
        return RotateResult("created", fresh.kid, activate_at)


async def _make_current(
    tx: KeyTransaction, states: list[KeyStatus], fresh: KeyRecord, now: float
) -> RotateResult:
    """Promote the pending key, or add ``fresh``, to sign from now on. Its time is
    after every active key's, so it wins even against a key made this instant."""
    active = [s.record.activate_at for s in states if s.state != "next"]
    at = max([now, *(t + 0.001 for t in active)])
    pending = [s.record for s in states if s.state == "next"]
    if pending:
        await tx.set_activate_at(pending[0].kid, at)
        return RotateResult("promoted", pending[0].kid, at)
    await tx.add(_at(fresh, at, now))
    return RotateResult("created", fresh.kid, at)


def _at(record: KeyRecord, activate_at: float, now: float) -> KeyRecord:
    return KeyRecord(
        record.kid, record.size, now, activate_at, record.private_pem, record.public_jwk
    )


def refuse_plain_keys(records: list[KeyRecord], where: str) -> None:
    """Production keeps every private key encrypted at rest (README, "Signing keys"):
    a key made without ``KEY_PASSPHRASE`` (in development, say) is refused, not used."""
    plain = sorted(r.kid for r in records if not r.encrypted)
    if plain:
        more = f" and {len(plain) - 1} more" if len(plain) > 1 else ""
        raise KeyStoreError(
            f"key {plain[0]}{more} in {where} is not encrypted, which production refuses "
            "(run `authority keys encrypt` with AUTHORITY_KEY_PASSPHRASE set)"
        )


class KeyManager:
    """The running service's view of the store: reloads on change, keeps the last good
    ring when the store breaks, and performs due lifecycle steps."""

    def __init__(self, store: KeyStore, settings: Settings, clock: Clock = system_clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.ring: KeyRing | None = None
        self.problem: str | None = None
        # Why the last maintenance could not write to the store: reported until one can.
        self._step_problem: str | None = None
        self._fingerprint: str | None = None
        self._private: dict[str, Any] = {}

    def current_ring(self) -> KeyRing:
        if self.ring is None:
            raise KeyStoreError("no signing key is loaded")
        return self.ring

    def signing_key(self) -> SigningKey:
        key = self.current_ring().current(self.clock())
        if key is None:
            raise KeyStoreError("no signing key is loaded")
        return key

    async def load(self) -> None:
        """First load: any problem is fatal, the service must not run without a key."""
        await self.reload()
        if self.problem:
            raise KeyStoreError(self.problem)

    async def reload(self) -> bool:
        """Load the store if it changed; True when a new ring was installed."""
        try:
            fingerprint = await self.store.fingerprint()
            if fingerprint == self._fingerprint and self.ring is not None:
                self.problem = self._step_problem
                return False
            records = await self.store.load()
            if self.settings.is_production:
                refuse_plain_keys(records, self.store.description)
            private = {r.kid: self._private[r.kid] for r in records if r.kid in self._private}
            for record in records:
                if record.kid not in private:  # a KDF run: off the event loop
                    private[record.kid] = await asyncio.to_thread(
                        decrypt, record, self.settings.key_passphrase
                    )
            ring = KeyRing(records, private)
            if ring.current(self.clock()) is None:
                raise KeyStoreError(
                    f"no current signing key in {self.store.description} "
                    "(create one with `authority keys rotate --now`)"
                )
        except KeyStoreError as exc:
            if self.ring is not None and self.problem != str(exc):
                log.error("key store: %s (still signing with the keys loaded before)", exc)
            self.problem = str(exc)
            return False
        self.ring, self._private, self._fingerprint = ring, private, fingerprint
        self.problem = self._step_problem
        return True

    async def maintain(self) -> None:
        """Run the automatic rotation and pruning steps that are due. A store that
        cannot be written (read-only, full) is reported even when no step is due."""
        try:
            await self.store.check_writable()
            created = await auto_rotate(self.store, self.settings, self.clock)
            if created:
                log.info(
                    "published next key %s, current from %.0f", created.kid, created.activate_at
                )
            for kid in await prune(self.store, self.settings, self.clock):
                log.info("pruned retired key %s", kid)
            self._step_problem = None
        except KeyStoreError as exc:
            log.error("key maintenance failed: %s", exc)
            self._step_problem = f"key maintenance failed: {exc}"
        await self.reload()

    def report(self) -> None:
        """Publish the key store's health and the current key's age as metrics."""
        metrics.KEYSTORE_OK.set(0 if self.problem else 1)
        with contextlib.suppress(KeyStoreError):
            metrics.KEY_AGE.set(self.clock() - self.signing_key().activate_at)

    async def run(self) -> None:
        """Background loop: poll for changes often, run maintenance less often."""
        loop = asyncio.get_running_loop()
        next_maintenance = loop.time()
        while True:
            try:
                if loop.time() >= next_maintenance:
                    next_maintenance = loop.time() + self.settings.maintenance_interval
                    await self.maintain()
                else:
                    await self.reload()
            except Exception as exc:  # the loop must outlive any one bad poll
                log.exception("key store poll failed")
                self.problem = f"key store poll failed: {type(exc).__name__}"
            self.report()
            await asyncio.sleep(self.settings.keystore_poll_interval)
