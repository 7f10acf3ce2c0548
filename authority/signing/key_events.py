"""The audit trail of the key lifecycle (README, "Signing keys"): ``key.created``,
``key.promoted``, ``key.revoked`` and ``key.pruned``, each naming the key's ``kid`` and
algorithm, never key material.

A key store step is not a database transaction (the file store has none), so its
events are written in one transaction of their own right after the step succeeded,
by the command line and by the running service alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection

from authority.clock import Clock, system_clock
from authority.signing.records import KeyRecord
from authority.storage import audit
from authority.storage.database import Database, DatabaseUnavailable

log = logging.getLogger("authority.keys")

KeyEventType = Literal["key.created", "key.promoted", "key.revoked", "key.pruned"]


@dataclass(frozen=True, slots=True)
class KeyEvent:
    type: KeyEventType
    kid: str
    algorithm: str

    @classmethod
    def of(cls, type: KeyEventType, record: KeyRecord) -> KeyEvent:
        return cls(type, record.kid, record.algorithm.name)


KeyAudit = Callable[[Sequence[KeyEvent]], Awaitable[None]]


def audit_trail(db: Database, clock: Clock = system_clock) -> KeyAudit:
    """Where the key steps of a process record their events: ``db``'s audit trail."""

    async def record(events: Sequence[KeyEvent]) -> None:
        await db.write(_record_all, list(events), clock())

    return record


def _record_all(conn: Connection, events: list[KeyEvent], at: float) -> None:
    for event in events:
        audit.record(
            conn, event.type, at=at, detail={"kid": event.kid, "algorithm": event.algorithm}
        )


async def tell(trail: KeyAudit | None, events: Sequence[KeyEvent]) -> None:
    """Record ``events`` of a step that has succeeded. The step stands whatever
    happens here: an audit trail that cannot be written is said, not raised."""
    if trail is None or not events:
        return
    try:
        await trail(events)
    except DatabaseUnavailable as exc:
        said = ", ".join(f"{e.type} {e.kid}" for e in events)
        log.error("audit trail: %s not recorded: %s", said, exc)
