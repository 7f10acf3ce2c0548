"""Login and sign-up throttling per account, client address and (account, address) pair,
shared by replicas (README, "Throttling"; OWASP Authentication Cheat Sheet, "Login
Throttling"; NIST SP 800-63B section 5.2.2).

Counters live in the database every replica already shares, so the limits hold across
processes and machines without another store. A refused attempt costs no hashing and
counts against nothing. The design, so that no stranger can lock an account while
distributed guessing stays slow:

- **Address**: failures from one address, counted after the fact. At ``address`` of
  them the address is refused until its window ends, whatever account it names, and
  those refusals do not touch the account. Successes do not count: many people behind
  one NAT, or one back-end-for-frontend, may log in at the same moment (a burst of
  guesses can overshoot by at most the logins in flight, which the hashing queue bounds).
- **Account budget**: every attempt at an account is reserved atomically *before* the
  password is hashed (an upsert that returns the new count), so a concurrent burst
  cannot slip in under the limit. The first ``account`` attempts of a window go ahead
  from anywhere. Past that the account is *guarded*: each attempt must wait for a gate,
  whose step doubles with every attempt beyond the budget (``window / 16``, ``/ 8``, ...):
  - an address that already tried this account in the window (a known pair) waits for
    the pair's own gate, up to the whole window;
  - a new address waits for the account's gate for new addresses, which only new
    addresses move and which never exceeds a quarter of the window.
  So one address hammering an account slows only itself: the owner, from any other
  address, still gets in at once with the right password. Many addresses together get
  about ``account`` + 10 guesses per window at one account, and the owner, from a new
  address, waits at most a quarter of the window (the ``Retry-After`` says how long).
- A success clears the account's and the pair's counters.

Windows are fixed: they start at the first count and end ``window`` seconds later; a
gate never outlasts its window.

Sign-ups are throttled per address alone (``take_registration``): every attempt counts,
so the answers (a taken name or email) cannot be collected at speed and a flood of
sign-ups cannot fill the password hashing queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authority.storage.tables import LoginThrottle

MAX_KEY = 200
REGISTRATIONS_PER_ADDRESS = 10  # sign-up attempts per address per login failure window


@dataclass(frozen=True, slots=True)
class Limits:
    account: int
    address: int
    window: int


def account_key(account: str) -> str:
    return f"account:{account}"[:MAX_KEY]


def address_key(address: str) -> str:
    return f"address:{address}"[:MAX_KEY]


def pair_key(account: str, address: str) -> str:
    return f"pair:{address}:{account}"[:MAX_KEY]


def registration_key(address: str) -> str:
    return f"register:{address}"[:MAX_KEY]


def step(limits: Limits, beyond: int, cap: float) -> float:
    """The gate's wait after the ``beyond``-th attempt past the account's budget."""
    return min(cap, limits.window / 16 * 2.0 ** min(beyond, 16))


def take_attempt(
    conn: Connection, account: str, address: str, limits: Limits, now: float
) -> int | None:
    """Reserve an attempt at ``account`` from ``address``; the seconds to wait when it
    must be refused (then nothing was counted), else None."""
    address_row = _live(conn, address_key(address), limits.window, now)
    if address_row is not None and address_row.failures >= limits.address:
        return _seconds(address_row.window_start + limits.window - now)
    budget = _increment(conn, account_key(account), limits.window, now)
    pair = _increment(conn, pair_key(account, address), limits.window, now)
    beyond = budget.failures - limits.account  # this attempt's place past the budget
    known = pair.failures > 1  # this address tried this account before, in the window
    gate = pair if known else budget if beyond > 0 else None
    if gate is not None and gate.blocked_until > now:
        _undo(conn, account_key(account), pair_key(account, address))
        return _seconds(min(gate.blocked_until, gate.window_start + limits.window) - now)
    if beyond >= 0:
        if known:
            _block(conn, pair.key, now + step(limits, beyond, limits.window))
        else:
            _block(conn, budget.key, now + step(limits, beyond, limits.window / 4))
            _block(conn, pair.key, now + step(limits, beyond, limits.window))
    return None


def record_failure(conn: Connection, address: str, limits: Limits, now: float) -> None:
    _increment(conn, address_key(address), limits.window, now)


def succeeded(conn: Connection, account: str, address: str) -> None:
    """The account and this pair start afresh."""
    keys = (account_key(account), pair_key(account, address))
    conn.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def take_registration(conn: Connection, address: str, window: int, now: float) -> int | None:
    """Count a sign-up attempt from ``address``; the seconds to wait when it is one too
    many (it must then be refused, and was not counted), else None."""
    row = _increment(conn, registration_key(address), window, now)
    if row.failures > REGISTRATIONS_PER_ADDRESS:
        _undo(conn, row.key)  # a refused attempt counts against nothing
        return _seconds(row.window_start + window - now)
    return None


def prune(conn: Connection, now: float, window: int) -> int:
    """Delete the counters whose window has ended."""
    return int(
        conn.execute(
            delete(LoginThrottle).where(LoginThrottle.window_start <= now - window)
        ).rowcount
    )


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def _live(conn: Connection, key: str, window: int, now: float) -> Any:
    return conn.execute(
        select(LoginThrottle.failures, LoginThrottle.window_start).where(
            LoginThrottle.key == key, LoginThrottle.window_start > now - window
        )
    ).first()


def _undo(conn: Connection, *keys: str) -> None:
    """Take back a refused attempt's reservations (their rows are still locked by it)."""
    conn.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key.in_(keys))
        .values(failures=LoginThrottle.failures - 1)
    )


def _block(conn: Connection, key: str, until: float) -> None:
    conn.execute(update(LoginThrottle).where(LoginThrottle.key == key).values(blocked_until=until))


def _increment(conn: Connection, key: str, window: int, now: float) -> Any:
    """Count one more in ``key``'s window (a new window when the last has ended); the
    row after the count, locked until the transaction ends."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    new = insert(LoginThrottle).values(key=key, failures=1, window_start=now, blocked_until=0.0)
    expired = LoginThrottle.window_start <= now - window
    stmt = new.on_conflict_do_update(
        index_elements=[LoginThrottle.key],
        set_={
            "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
            "window_start": case((expired, now), else_=LoginThrottle.window_start),
            "blocked_until": case((expired, 0.0), else_=LoginThrottle.blocked_until),
        },
    ).returning(
        LoginThrottle.key,
        LoginThrottle.failures,
        LoginThrottle.window_start,
        LoginThrottle.blocked_until,
    )
    return conn.execute(stmt).one()
