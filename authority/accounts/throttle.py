"""Failed-login throttling per account and per client address, shared by replicas.

Counters live in the database every replica already shares, so the limits hold across
processes and machines without another store. A throttled attempt costs no hashing.

- An account's counter is taken atomically *before* the password is hashed (an upsert
  that returns the new count), so a burst of concurrent guesses at one account cannot
  all slip in under its limit. A success clears it.
- An address's counter counts only failures, after the fact: many people behind one
  NAT, or one back-end-for-frontend, may log in at the same moment without tripping it
  (a burst of guesses from one address can overshoot its limit by at most the number
  of logins in flight, which the password hashing queue bounds).

Windows are fixed: they start at the first count and end ``window`` seconds later,
whatever happens meanwhile, so a lock never lasts longer than one window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authority.storage.tables import LoginThrottle

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
    """Count an attempt against the account; the seconds to wait when the account or
    the address is over its limit (the attempt must then be refused), else None."""
    wait = 0.0
    failures, window_start = _increment(conn, account_key(account), limits.window, now)
    if failures > limits.account:
        wait = window_start + limits.window - now
    row = conn.execute(
        select(LoginThrottle.failures, LoginThrottle.window_start).where(
            LoginThrottle.key == address_key(address),
            LoginThrottle.window_start > now - limits.window,
        )
    ).first()
    if row is not None and row.failures >= limits.address:
        wait = max(wait, row.window_start + limits.window - now)
    return max(1, math.ceil(wait)) if wait > 0 else None


def record_failure(conn: Connection, address: str, limits: Limits, now: float) -> None:
    _increment(conn, address_key(address), limits.window, now)


def succeeded(conn: Connection, account: str) -> None:
    """The account starts afresh."""
    conn.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(account)))


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
