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
from dataclasses import dataclass, replace
from typing import Any, Literal

from authority import metrics
from authority.clock import Clock, system_clock
from authority.settings import Settings
from authority.signing.key_events import KeyAudit, KeyEvent, tell
from authority.signing.keys import (
    KeyRing,
    decrypt,
    generate,
    key_algorithm,
    prove_passphrase,
    refuse_mixed_store,
    refuse_other_pending,
    refuse_plain_keys,
)
from authority.signing.records import (
    KeyRecord,
    KeyStatus,
    KeyStore,
    KeyStoreError,
    KeyTransaction,
    lifecycle,
)
from authority.signing.signer import SigningKey
from authority.verifier.algorithms import Algorithm

log = logging.getLogger("authority.keys")
# The (kid, private PEM) pairs KEY_PASSPHRASE has been seen to open.
Proven = set[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class RotateResult:
    outcome: Literal["created", "promoted", "pending"]
    kid: str
    activate_at: float


def statuses(records: list[KeyRecord], settings: Settings, now: float) -> list[KeyStatus]:
    return lifecycle(records, now, settings.retired_key_lifetime)


async def _prove(records: list[KeyRecord], settings: Settings, proven: Proven) -> None:
    """``KEY_PASSPHRASE`` opens every stored key, or ``KeyStoreError``: checked before a
    key is made (on a worker thread: a KDF run per key) and again under the lock for
    the keys that appeared meanwhile."""
    await asyncio.to_thread(prove_passphrase, records, settings.key_passphrase, proven)


async def _fresh(
    store: KeyStore, settings: Settings, size: int, proven: Proven, now: float
) -> KeyRecord:
    """A new key of ``KEY_ALGORITHM``, once the passphrase is proven to open the others."""
    records = await store.load()
    await _prove(records, settings, proven)
    refuse_mixed_store(records, settings.key_passphrase)
    made = key_algorithm(settings)
    return await asyncio.to_thread(generate, size, settings.key_passphrase, 0.0, now, made)


async def rotate(
    store: KeyStore,
    settings: Settings,
    *,
    now_: bool = False,
    size: int | None = None,
    algorithm: Algorithm | None = None,
    clock: Clock = system_clock,
    trail: KeyAudit | None = None,
    proven: Proven | None = None,
) -> RotateResult:
    """Publish a new ``next`` key (or with ``now_``, make one ``current`` at once), of
    ``algorithm`` (default ``KEY_ALGORITHM``): a switch of algorithm is a rotation.

    A pending ``next`` key makes a plain rotation a no-op, and ``--now`` promotes it
    instead of generating another, so two rotations at once never stack up keys.
    ``proven``: keys already opened by this process's passphrase (see ``_prove``).
    """
    proven = set() if proven is None else proven
    spec = settings.replace(key_algorithm=algorithm.name) if algorithm else settings
    fresh = await _fresh(store, spec, size or settings.key_size, proven, clock())
    async with store.transaction() as tx:
        now = clock()
        records = await tx.records()
        await _prove(records, settings, proven)
        states = statuses(records, settings, now)
        pending = [s.record for s in states if s.state == "next"]
        refuse_other_pending(pending, algorithm)
        if now_:
            result, events = await _make_current(tx, states, fresh, now)
        elif pending:
            return RotateResult("pending", pending[0].kid, pending[0].activate_at)
        else:
            result = RotateResult("created", fresh.kid, now + settings.key_publish_delay)
            await tx.add(replace(fresh, created_at=now, activate_at=result.activate_at))
            events = [KeyEvent.of("key.created", fresh)]
    await tell(trail, events)
    return result


async def ensure_key(
    store: KeyStore,
    settings: Settings,
    clock: Clock = system_clock,
    trail: KeyAudit | None = None,
) -> RotateResult | None:
    """Create a ``current`` key when the store has none (first start); else nothing."""
    if any(s.state == "current" for s in statuses(await store.load(), settings, clock())):
        return None
    proven: Proven = set()
    fresh = await _fresh(store, settings, settings.key_size, proven, clock())
    async with store.transaction() as tx:
        now = clock()
        records = await tx.records()
        if any(s.state == "current" for s in statuses(records, settings, now)):
            return None
        await _prove(records, settings, proven)
        await tx.add(replace(fresh, created_at=now, activate_at=now))
    await tell(trail, [KeyEvent.of("key.created", fresh)])
    return RotateResult("created", fresh.kid, now)


async def revoke(
    store: KeyStore,
    settings: Settings,
    kid: str,
    clock: Clock = system_clock,
    trail: KeyAudit | None = None,
    proven: Proven | None = None,
) -> RotateResult | None:
    """Remove a key now. Revoking the ``current`` key first puts another in its place,
    so the store is never left without a signer and a retired key never signs again."""
    proven = set() if proven is None else proven
    fresh = await _fresh(store, settings, settings.key_size, proven, clock())
    async with store.transaction() as tx:
        now = clock()
        records = await tx.records()
        states = {s.record.kid: s for s in statuses(records, settings, now)}
        if kid not in states:
            raise KeyStoreError(f"no key with kid {kid[:60]!r}")
        await _prove(records, settings, proven)
        replacement: RotateResult | None = None
        events: list[KeyEvent] = []
        if states[kid].state == "current":
            others = [s for s in states.values() if s.record.kid != kid]
            replacement, events = await _make_current(tx, others, fresh, now)
        await tx.delete(kid)
    await tell(trail, [*events, KeyEvent.of("key.revoked", states[kid].record)])
    return replacement


async def prune(
    store: KeyStore,
    settings: Settings,
    clock: Clock = system_clock,
    trail: KeyAudit | None = None,
    proven: Proven | None = None,
) -> list[str]:
    """Delete retired keys whose tokens have all expired; returns their kids."""
    async with store.transaction() as tx:
        now = clock()
        records = await tx.records()
        due = [
            s.record
            for s in statuses(records, settings, now)
            if s.remove_after is not None and s.remove_after <= now
        ]
        await _prove(records, settings, set() if proven is None else proven)
        for record in due:
            await tx.delete(record.kid)
    await tell(trail, [KeyEvent.of("key.pruned", record) for record in due])
    return [record.kid for record in due]


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
    store: KeyStore,
    settings: Settings,
    clock: Clock = system_clock,
    trail: KeyAudit | None = None,
    proven: Proven | None = None,
) -> RotateResult | None:
    """Publish the next key ``KEY_PUBLISH_DELAY`` before the rotation interval ends."""
    if rotation_due(await store.load(), settings, clock()) is None:
        return None
    proven = set() if proven is None else proven
    fresh = await _fresh(store, settings, settings.key_size, proven, clock())
    async with store.transaction() as tx:
        now = clock()
        records = await tx.records()
        activate_at = rotation_due(records, settings, now)
        if activate_at is None:
            return None
        await _prove(records, settings, proven)
        await tx.add(replace(fresh, created_at=now, activate_at=activate_at))
    await tell(trail, [KeyEvent.of("key.created", fresh)])
    return RotateResult("created", fresh.kid, activate_at)


async def _make_current(
    tx: KeyTransaction, states: list[KeyStatus], fresh: KeyRecord, now: float
) -> tuple[RotateResult, list[KeyEvent]]:
    """Promote the pending key, or add ``fresh``, to sign from now on. Its time is
    after every active key's, so it wins even against a key made this instant."""
    active = [s.record.activate_at for s in states if s.state != "next"]
    at = max([now, *(t + 0.001 for t in active)])
    pending = [s.record for s in states if s.state == "next"]
    if pending:
        await tx.set_activate_at(pending[0].kid, at)
        return RotateResult("promoted", pending[0].kid, at), [
            KeyEvent.of("key.promoted", pending[0])
        ]
    await tx.add(replace(fresh, created_at=now, activate_at=at))
    return RotateResult("created", fresh.kid, at), [KeyEvent.of("key.created", fresh)]


class KeyManager:
    """The running service's view of the store: reloads on change, keeps the last good
    ring when the store breaks, and performs due lifecycle steps."""

    def __init__(
        self,
        store: KeyStore,
        settings: Settings,
        clock: Clock = system_clock,
        trail: KeyAudit | None = None,
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.trail = trail
        self.ring: KeyRing | None = None
        self.problem: str | None = None
        # The key that signed until it vanished from the store without a newer key
        # taking over (deleted, not revoked): reported until a newer key signs.
        self.missing_current: SigningKey | None = None
        # Why the last maintenance could not write to the store: reported until one can.
        self._step_problem: str | None = None
        self._fingerprint: str | None = None
        self._private: dict[str, Any] = {}
        self._proven: Proven = set()

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
            proven = {(r.kid, r.private_pem) for r in records} & self._proven
            for record in records:
                if record.kid not in private:  # a KDF run: off the event loop
                    private[record.kid] = await asyncio.to_thread(
                        decrypt, record, self.settings.key_passphrase
                    )
                    proven.add((record.kid, record.private_pem))
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
        previous = self.ring.current(self.clock()) if self.ring is not None else None
        self.ring, self._private, self._fingerprint = ring, private, fingerprint
        self._proven = proven
        self.problem = self._step_problem
        self._watch_current(previous)
        return True

    def _watch_current(self, previous: SigningKey | None) -> None:
        """A signing key leaves the store only for a newer one (``keys revoke`` puts
        one in its place first), so a current key that vanished while an older key
        takes over was deleted behind the lifecycle's back: say so until a newer key
        signs (a rotation, automatic or ``keys rotate --now``)."""
        ring = self.current_ring()
        current = ring.current(self.clock())
        if current is None:
            return
        if (
            previous is not None
            and ring.public_key(previous.kid) is None
            and current.activate_at < previous.activate_at
            and self.missing_current is None
        ):
            self.missing_current = previous
            log.warning(
                "signing key %s is missing from %s (deleted, not revoked): the older key %s "
                "signs instead until a newer key is current (`authority keys rotate --now`)",
                previous.kid,
                self.store.description,
                current.kid,
            )
        elif (
            self.missing_current is not None
            and current.activate_at > self.missing_current.activate_at
        ):
            log.info("key %s signs now, in place of %s", current.kid, self.missing_current.kid)
            self.missing_current = None

    async def maintain(self) -> None:
        """Run the automatic rotation and pruning steps that are due. A store that
        cannot be written (read-only, full) is reported even when no step is due."""
        try:
            await self.store.check_writable()
            created = await auto_rotate(
                self.store, self.settings, self.clock, self.trail, self._proven
            )
            if created:
                log.info(
                    "published next key %s, current from %.0f", created.kid, created.activate_at
                )
            for kid in await prune(self.store, self.settings, self.clock, self.trail, self._proven):
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
