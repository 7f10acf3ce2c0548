"""Refresh rotations in one PostgreSQL statement (README, "Durability and workers").

``families.rotate_token`` takes five round trips on PostgreSQL (BEGIN, the lookup that
locks the family, the compare-and-set, the new token's INSERT, COMMIT), and the round
trips, not the database's work, bound how many refreshes a second a small server
gives. The common case, a live token presented once, is here one statement that runs
outside an explicit transaction (so it commits by itself): it finds the token, locks
its family, consumes the token and then its grace siblings with compare-and-set, and
inserts the replacement (binding an unbound family to the proof's key when asked,
``binding``), or does nothing at all.

The statement takes a batch: the rotations asked for in one turn of the event loop go
together (``storage.batches``), each a row of the arrays it is given, so a batch pays
for one round trip, one commit and one WAL flush. Each row is decided alone, as if it
had come by itself, with one exception: two rows of one family (one token presented
twice, or two siblings) change nothing here and go to the transaction, which decides
one after the other. The batch locks its families in the order of their ids, so two
batches never deadlock; a batch that another writer's locks would deadlock steps
aside whole (``STEP_ASIDE``). The statement runs on the hot path's own connections,
which keep a generic plan (``Database.hot_engine``). Anything else (unknown, consumed, expired,
revoked, foreign, a scope or audience beyond the family's, a family bound to another
DPoP key than the request's proof, a race) returns no row and changes nothing, and the
caller runs ``rotate_token`` in a transaction, which decides and answers exactly as
before (reuse revokes the family, grace gives a sibling, a wrong key changes nothing).

The family's conditions are checked on its row found by primary key (``locked``), and
its client through the token's row: a plan that used the client's index would read
every family of the client.

One statement sees the database as it was when it started, also after it waited for
the family's lock: a grace sibling inserted meanwhile would not be consumed with its
group. So the statement steps aside when the family's row or the token's row changed
since it started (their ``xmin``, the transaction that wrote the row version it
reads, differs under the lock); ``families.touch_family`` gives the family a new row
version whenever a grace sibling joins it. Locks are taken in the order every other
writer takes them: the family first, then its tokens.

The statement goes straight to asyncpg's connection (``fetch``): SQLAlchemy's async
layer (a greenlet, its compiled cache, its result processing) cost a worker more CPU
than the statement itself when the statement is all the request does. The connection
comes out of the same pool; an outage is ``DatabaseUnavailable`` (a 503) as for
``Database``, and its connection is dropped from the pool.
"""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from typing import Any, Protocol

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from authority.storage.batches import IN_FLIGHT, Batches
from authority.storage.errors import DatabaseUnavailable, describe_db_error, is_outage

# asyncpg's own errors that mean the database is away or busy, not that the statement
# is wrong (the same list ``is_outage`` knows by name through SQLAlchemy).
OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
    asyncpg.QueryCanceledError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
)

FAILURES: tuple[type[BaseException], ...] = (*OUTAGES, PoolTimeout, OperationalError, DBAPIError)


class Engined(Protocol):
    """What a statement here needs of ``storage.database.Database``: the pool of the hot
    path's connections (PostgreSQL), on which prepared statements keep a generic plan."""

    @property
    def hot_engine(self) -> AsyncEngine | None: ...


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``CAST(:name AS type)`` placeholders as asyncpg's ``$n::type``, and the names in
    ``$n`` order: one statement text serves both drivers' tests."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"(${names.index(name) + 1}::{match.group(2)})"

    return re.sub(r"CAST\(:(\w+) AS ([a-z ]+(?:\[\])?)\)", number, sql), tuple(names)


async def fetch(db: Engined, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of one statement (PostgreSQL only), committed by itself: the pool's
    connection without SQLAlchemy's ``Connection`` around it (whose isolation level is
    set on each checkout and reset on each return), so no transaction is begun. The
    errors of ``STEP_ASIDE`` are raised as they are; the connection stays usable."""
    engine = db.hot_engine
    if engine is None:
        raise ValueError("one statement is for PostgreSQL")
    try:
        fairy = await engine.raw_connection()
    except FAILURES as exc:
        raise _unavailable(exc) from exc
    try:
        driver: asyncpg.Connection = fairy.driver_connection
        rows: list[asyncpg.Record] = await driver.fetch(sql, *args)
        return rows
    except STEP_ASIDE:
        raise
    except FAILURES as exc:
        await greenlet_spawn(fairy.invalidate)  # not back into the pool
        raise _unavailable(exc) from exc
    finally:
        await greenlet_spawn(fairy.close)


def _unavailable(exc: BaseException) -> BaseException:
    """``DatabaseUnavailable`` for an outage; a programming error stays itself."""
    if isinstance(exc, DBAPIError) and not is_outage(exc):
        return exc
    return DatabaseUnavailable(describe_db_error(exc))


_ROTATE, _NAMES = positional(
    """
WITH asked AS (
    SELECT * FROM unnest(
        CAST(:presented AS bytea[]), CAST(:replacement AS bytea[]), CAST(:client_id AS text[]),
        CAST(:now AS double precision[]), CAST(:refresh_ttl AS double precision[]),
        CAST(:scope AS text[]), CAST(:audience AS text[]), CAST(:status_idx AS integer[]),
        CAST(:jkt AS text[]), CAST(:bind_key AS boolean[])
    ) WITH ORDINALITY AS a(presented, replacement, client_id, now, refresh_ttl, scope,
                           audience, status_idx, jkt, bind_key, n)
),
presented AS (
    SELECT a.n, a.replacement, a.client_id AS asked_client, a.now, a.refresh_ttl,
           a.scope AS asked_scope, a.audience AS asked_audience, a.status_idx, a.jkt,
           a.bind_key, t.id, t.parent_id, t.xmin AS token_version, f.xmin AS family_version,
           f.id AS family_id, f.user_id, u.username, f.client_id, f.scope, f.audience,
           f.expires_at AS family_expires_at,
           count(*) OVER (PARTITION BY f.id) AS in_family
    FROM asked a
    JOIN refresh_tokens t ON t.token_hash = a.presented
    JOIN refresh_families f ON f.id = t.family_id
    JOIN users u ON u.id = f.user_id
    WHERE t.consumed_at IS NULL AND t.expires_at > a.now AND u.is_active
),
locked AS (
    SELECT f.id FROM refresh_families f
    JOIN presented p ON p.family_id = f.id
    WHERE p.in_family = 1
      AND f.xmin = p.family_version
      AND p.client_id = p.asked_client
      AND f.revoked_at IS NULL
      AND f.expires_at > p.now
      AND (p.asked_scope IS NULL
           OR string_to_array(f.scope, ' ') @> string_to_array(p.asked_scope, ' '))
      AND (p.asked_audience IS NULL OR f.audience = p.asked_audience)
      AND (f.dpop_jkt IS NULL OR f.dpop_jkt = p.jkt)
    ORDER BY f.id
    FOR UPDATE OF f
),
won AS (
    UPDATE refresh_tokens t SET consumed_at = p.now
    FROM presented p
    WHERE t.id = p.id AND t.xmin = p.token_version AND t.consumed_at IS NULL
      AND p.family_id = ANY (ARRAY(SELECT id FROM locked))
    RETURNING p.n
),
siblings AS (
    UPDATE refresh_tokens t SET consumed_at = p.now
    FROM presented p JOIN won w ON w.n = p.n
    WHERE t.parent_id = p.parent_id AND t.id <> p.id AND t.consumed_at IS NULL
),
bound AS (
    UPDATE refresh_families f SET dpop_jkt = p.jkt
    FROM presented p JOIN won w ON w.n = p.n
    WHERE f.id = p.family_id AND f.dpop_jkt IS NULL AND p.jkt IS NOT NULL AND p.bind_key
),
child AS (
    INSERT INTO refresh_tokens
        (token_hash, family_id, parent_id, created_at, expires_at, status_idx)
    SELECT p.replacement, p.family_id, p.id, p.now,
           LEAST(p.now + p.refresh_ttl, p.family_expires_at), p.status_idx
    FROM presented p JOIN won w ON w.n = p.n
    RETURNING token_hash, expires_at
)
SELECT p.n, p.family_id, p.user_id, p.username, p.client_id, p.scope, p.audience,
       p.family_expires_at, c.expires_at
FROM presented p JOIN child c ON c.token_hash = p.replacement
"""
)
COLUMNS = (
    "presented",
    "replacement",
    "client_id",
    "now",
    "refresh_ttl",
    "scope",
    "audience",
    "status_idx",
    "jkt",
    "bind_key",
)
# A batch that another writer's locks would deadlock steps aside: its requests go to
# the transaction, one by one, which waits for those locks in the usual order.
STEP_ASIDE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_batches: weakref.WeakKeyDictionary[Engined, Batches[dict[str, Any], Any]] = (
    weakref.WeakKeyDictionary()
)


async def rotate_live_token(
    db: Engined,
    *,
    presented: bytes,
    replacement: bytes,
    client_id: str,
    now: float,
    refresh_ttl: int,
    scope: list[str] | None = None,
    audience: str | None = None,
    status_idx: int | None = None,
    jkt: str | None = None,
    bind_key: bool = False,
) -> Any:
    """Rotate a live token in one statement (PostgreSQL, on asyncpg's connection,
    outside a transaction, with the other rotations of this turn of the event loop:
    ``storage.batches``): the family's columns (``families.Family``) and the new
    token's expiry, or None when nothing changed and ``families.rotate_token`` must
    decide."""
    asked = {
        "presented": presented,
        "replacement": replacement,
        "client_id": client_id,
        "now": now,
        "refresh_ttl": float(refresh_ttl),
        "scope": None if scope is None else " ".join(scope),
        "audience": audience,
        "status_idx": status_idx,
        "jkt": jkt,
        "bind_key": bind_key,
    }
    batches = _batches.get(db)
    if batches is None or batches.loop not in (None, asyncio.get_running_loop()):
        # By a weak reference: the value must not keep its own key alive.
        run = functools.partial(_rotate_batch, weakref.ref(db))
        batches = _batches[db] = Batches(run, in_flight=IN_FLIGHT)
    return await batches.submit(asked)


async def _rotate_batch(ref: weakref.ref[Engined], batch: list[dict[str, Any]]) -> list[Any]:
    """One statement for the rotations of a batch: each one's row, or None."""
    db = ref()
    if db is None:  # nobody holds the database any more, so nobody waits for this
        raise DatabaseUnavailable("the database was closed")
    columns = {name: [asked[name] for asked in batch] for name in COLUMNS}
    try:
        rows = await fetch(db, _ROTATE, *(columns[name] for name in _NAMES))
    except STEP_ASIDE:
        return [None] * len(batch)
    rotated = {row[0]: tuple(row)[1:] for row in rows}
    return [rotated.get(n) for n in range(1, len(batch) + 1)]
