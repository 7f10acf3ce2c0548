"""Failed-login throttling per account and per client address, shared by replicas.

Counters live in the database every replica already shares, so the limits hold across
processes and machines without another store. Each attempt takes its slot atomically
before any password is hashed (an upsert that returns the new count): a burst of
concurrent guesses cannot all slip in under the limit, and a throttled attempt costs
no hashing at all. A success gives the slots back. Windows are fixed: they start at
the first failure and end ``window`` seconds later, whatever happens meanwhile, so a
lock never lasts longer than one window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, case, delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authority.models import LoginThrottle

MAX_KEY = 200


@dataclass(frozen=True, slots=True)
class Limits:
    account: int
    address: int
    window: int


def account_key(account: str) -> str:
    return f"account:{account}"[:MAX_KEY]


def address_key(address: str) -> str:
    return f"address:{address}"[:MAX_KEY]


def take_attempt(
    conn: Connection, account: str, address: str, limits: Limits, now: float
) -> int | None:
    """Count an attempt against both keys; the seconds to wait when either is over its
    limit (the attempt must then be refused), else None."""
    wait = 0.0
    keys = ((account_key(account), limits.account), (address_key(address), limits.address))
    for key, limit in keys:
        failures, window_start = _increment(conn, key, limits.window, now)
        if failures > limit:
            wait = max(wait, window_start + limits.window - now)
    return max(1, math.ceil(wait)) if wait > 0 else None


def give_back(conn: Connection, account: str, address: str) -> None:
    """After a success: the account starts afresh, and the address gets its slot back."""
    conn.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(account)))
    conn.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == address_key(address), LoginThrottle.failures > 0)
        .values(failures=LoginThrottle.failures - 1)
    )


def prune(conn: Connection, now: float, window: int) -> int:
    """Delete the counters whose window has ended."""
    return int(
        conn.execute(
            delete(LoginThrottle).where(LoginThrottle.window_start <= now - window)
        ).rowcount
    )


def _increment(conn: Connection, key: str, window: int, now: float) -> tuple[int, float]:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    new = insert(LoginThrottle).values(key=key, failures=1, window_start=now)
    expired = LoginThrottle.window_start <= now - window
    stmt = new.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={
            "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
            "window_start": case((expired, now), else_=LoginThrottle.window_start),
        },
    ).returning(LoginThrottle.failures, LoginThrottle.window_start)
    row = conn.execute(stmt).one()
    return int(row.failures), float(row.window_start)
