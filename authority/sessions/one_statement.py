"""A refresh rotation in one PostgreSQL statement (README, "Durability and workers").

``families.rotate_token`` takes five round trips on PostgreSQL (BEGIN, the lookup that
locks the family, the compare-and-set, the new token's INSERT, COMMIT), and the round
trips, not the database's work, bound how many refreshes a second a small server
gives. The common case, a live token presented once, is here one statement that runs
outside an explicit transaction (so it commits by itself): it finds the token, locks
its family, consumes the token and then its grace siblings with compare-and-set, and
inserts the replacement (binding an unbound family to the proof's key when asked,
``binding``), or does nothing at all. Anything else (unknown, consumed, expired,
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

The statement goes straight to asyncpg's connection (``fetchrow``): SQLAlchemy's async
layer (a greenlet, its compiled cache, its result processing) cost a worker more CPU
than the statement itself when the statement is all the request does. The connection
comes out of the same pool; an outage is ``DatabaseUnavailable`` (a 503) as for
``Database``, and its connection is dropped from the pool.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

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
    """What a statement here needs of ``storage.database.Database``: its engine's pool."""

    @property
    def engine(self) -> AsyncEngine: ...


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


async def fetchrow(db: Engined, sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of one statement (PostgreSQL only), committed by itself: the pool's
    connection without SQLAlchemy's ``Connection`` around it (whose isolation level is
    set on each checkout and reset on each return), so no transaction is begun."""
    try:
        fairy = await db.engine.raw_connection()
    except FAILURES as exc:
        raise _unavailable(exc) from exc
    try:
        driver: asyncpg.Connection = fairy.driver_connection
        return await driver.fetchrow(sql, *args)
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
WITH presented AS (
    SELECT t.id, t.parent_id, t.xmin AS token_version, f.xmin AS family_version,
           f.id AS family_id, f.user_id, u.username, f.client_id, f.scope, f.audience,
           f.expires_at AS family_expires_at
    FROM refresh_tokens t
    JOIN refresh_families f ON f.id = t.family_id
    JOIN users u ON u.id = f.user_id
    WHERE t.token_hash = CAST(:presented AS bytea)
      AND t.consumed_at IS NULL
      AND t.expires_at > CAST(:now AS double precision)
      AND u.is_active
),
locked AS (
    SELECT f.id FROM refresh_families f
    WHERE f.id = (SELECT family_id FROM presented)
      AND f.xmin = (SELECT family_version FROM presented)
      AND (SELECT client_id FROM presented) = CAST(:client_id AS text)
      AND f.revoked_at IS NULL
      AND f.expires_at > CAST(:now AS double precision)
      AND (CAST(:scope AS text[]) IS NULL
           OR string_to_array(f.scope, ' ') @> CAST(:scope AS text[]))
      AND (CAST(:audience AS text) IS NULL OR f.audience = CAST(:audience AS text))
      AND (f.dpop_jkt IS NULL OR f.dpop_jkt = CAST(:jkt AS text))
    FOR UPDATE
),
won AS (
    UPDATE refresh_tokens t SET consumed_at = CAST(:now AS double precision)
    FROM presented p
    WHERE t.id = p.id AND t.xmin = p.token_version AND t.consumed_at IS NULL
      AND EXISTS (SELECT 1 FROM locked)
    RETURNING t.id
),
siblings AS (
    UPDATE refresh_tokens t SET consumed_at = CAST(:now AS double precision)
    FROM presented p
    WHERE t.parent_id = p.parent_id AND t.id <> p.id AND t.consumed_at IS NULL
      AND EXISTS (SELECT 1 FROM won)
),
bound AS (
    UPDATE refresh_families f SET dpop_jkt = CAST(:jkt AS text)
    FROM locked l
    WHERE f.id = l.id AND f.dpop_jkt IS NULL AND CAST(:jkt AS text) IS NOT NULL
      AND CAST(:bind_key AS boolean) AND EXISTS (SELECT 1 FROM won)
),
child AS (
    INSERT INTO refresh_tokens
        (token_hash, family_id, parent_id, created_at, expires_at, status_idx)
    SELECT CAST(:replacement AS bytea), p.family_id, p.id, CAST(:now AS double precision),
           LEAST(CAST(:now AS double precision) + CAST(:refresh_ttl AS double precision),
                 p.family_expires_at),
           CAST(:status_idx AS integer)
    FROM presented p
    WHERE EXISTS (SELECT 1 FROM won)
    RETURNING expires_at
)
SELECT p.family_id, p.user_id, p.username, p.client_id, p.scope, p.audience,
       p.family_expires_at, c.expires_at
FROM presented p, child c
"""
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
    outside a transaction: ``fetchrow``): the family's columns
    (``families.Family``) and the new token's expiry, or None when nothing changed and
    ``families.rotate_token`` must decide."""
    given = {
        "presented": presented,
        "replacement": replacement,
        "client_id": client_id,
        "now": now,
        "refresh_ttl": float(refresh_ttl),
        "scope": scope,
        "audience": audience,
        "status_idx": status_idx,
        "jkt": jkt,
        "bind_key": bind_key,
    }
    return await fetchrow(db, _ROTATE, *(given[name] for name in _NAMES))
