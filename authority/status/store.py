"""The status list's truth, in the shared database (README, "Revocation that reaches
resource servers").

Indexes are leased in blocks of ``STATUS_BLOCK_SIZE`` (``status_blocks``): a replica
issues from one block for at most ``BLOCK_USE`` seconds, so no token of a block lives
past ``leased_at + BLOCK_USE + ACCESS_TTL + LEEWAY``, and only then (``reusable_at``)
can the block be leased again, its set bits cleared. The list is a ring of
``STATUS_LIST_SIZE / STATUS_BLOCK_SIZE`` blocks; when none is free, no token is issued
(``StatusListFull``): a token nobody could revoke is worse than a 503.

A set bit is a row of ``status_revoked``, added in the transaction of the revocation
that sets it, and ``status_state.version`` grows with it: each replica polls that
version and rebuilds its list when it changed. A family's tokens are found through
``refresh_tokens.status_idx`` (written with the refresh token, no statement more), and
only while their block's lease is the one they were issued under.

A ``client_credentials`` token belongs to no family: its index and client are rows of
``status_client_tokens``, written by each replica in one batch a second
(``record_client_tokens``), never by the token request. Disabling or deleting the client
sets their bits (``set_client_bits``); a batch written after that sets its own bits when
its client is no longer active, so a token issued from a stale client cache is caught.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Float, Select, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authority.settings import STATUS_BLOCK_SIZE
from authority.storage.tables import (
    Client,
    RevokedAccessToken,
    StatusBlock,
    StatusClientToken,
    StatusRevoked,
    StatusState,
)

# The longest a replica issues from one block: bounds how long a block stays busy.
BLOCK_USE = 60.0
# ``client_credentials`` tokens written per statement (SQLite's bound parameters).
BATCH = 400


class StatusListFull(Exception):
    """Every block of the status list may still hold a live token: none can be leased."""


def block_hold(access_ttl: int, leeway: int) -> float:
    """Seconds from a block's lease until no token issued from it can verify."""
    return BLOCK_USE + access_ttl + leeway


def lease_block(conn: Connection, now: float, size: int, hold: float) -> int:
    """Lease a free block of the ring of ``size`` indexes; its first index. Its old bits
    are cleared (their tokens have all expired). ``StatusListFull`` when none is free."""
    free = conn.execute(
        select(StatusBlock.slot)
        .where(StatusBlock.reusable_at <= now)
        .order_by(StatusBlock.reusable_at, StatusBlock.slot)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar()
    if free is not None:
        conn.execute(
            update(StatusBlock)
            .where(StatusBlock.slot == free)
            .values(leased_at=now, reusable_at=now + hold)
        )
        start = free * STATUS_BLOCK_SIZE
        end = start + STATUS_BLOCK_SIZE
        conn.execute(
            delete(StatusClientToken).where(
                StatusClientToken.idx >= start, StatusClientToken.idx < end
            )
        )
        cleared = conn.execute(
            delete(StatusRevoked).where(StatusRevoked.idx >= start, StatusRevoked.idx < end)
        ).rowcount
        if cleared:
            conn.execute(StatusState.bump())
        return start
    # No free block: take a block never used yet, racing other replicas for it.
    for _ in range(8):
        highest = conn.execute(select(func.max(StatusBlock.slot))).scalar()
        slot = 0 if highest is None else highest + 1
        if slot >= size // STATUS_BLOCK_SIZE:
            raise StatusListFull(f"all {size // STATUS_BLOCK_SIZE} status list blocks are in use")
        values = {"slot": slot, "leased_at": now, "reusable_at": now + hold}
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        if conn.execute(insert_(StatusBlock).values(values).on_conflict_do_nothing()).rowcount:
            return slot * STATUS_BLOCK_SIZE
    raise StatusListFull("could not lease a status list block")


def revoke_index(conn: Connection, idx: int, issued_at: float, now: float) -> bool:
    """Set the bit of one access token issued at ``issued_at`` (its whole-second
    ``iat``), if its block has not been leased again since; whether it was newly set."""
    leased_at = conn.execute(
        select(StatusBlock.leased_at).where(StatusBlock.slot == idx // STATUS_BLOCK_SIZE)
    ).scalar()
    if leased_at is None or leased_at >= issued_at + 1:
        return False
    insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    added = conn.execute(
        insert_(StatusRevoked).values(idx=idx, revoked_at=now).on_conflict_do_nothing()
    ).rowcount
    if added:
        conn.execute(StatusState.bump())
    return bool(added)


def index_revoked(conn: Connection, idx: int, issued_at: float) -> bool:
    """Whether the bit of the token issued at ``issued_at`` holding ``idx`` is set: what
    the list says of it (introspection agrees with the list through this)."""
    row = conn.execute(
        select(StatusBlock.leased_at)
        .join(StatusRevoked, StatusRevoked.idx == idx)
        .where(StatusBlock.slot == idx // STATUS_BLOCK_SIZE)
    ).first()
    return row is not None and row.leased_at < issued_at + 1


# One statement for a whole batch, its rows in one JSON parameter: SQLite's driver lets
# go of the GIL around every step, so an executemany hands it to the event loop and
# waits to get it back once a row (thousands of context switches a second, issue 17's
# profile). ``StatusClientToken``'s table; the tests of ``record_client_tokens`` run it.
_SQLITE_RECORD = (
    "INSERT OR IGNORE INTO status_client_tokens (idx, client_id) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)"
)


def record_client_tokens(conn: Connection, tokens: list[tuple[int, str]], now: float) -> int:
    """Write a batch of ``(idx, client_id)`` of ``client_credentials`` tokens; the bits of
    those whose client is disabled or deleted by now are set. How many were set.

    The clients' rows are read ``FOR SHARE`` after the insert: a disabling that
    committed first is seen, and one that comes later waits for this batch, whose rows
    its own statement sees."""
    if conn.dialect.name == "sqlite":
        # On the driver, not SQLAlchemy, whose per-row parameter work cost three times
        # SQLite's insert (a second's tokens, on the writer thread).
        driver: Any = conn.connection.dbapi_connection
        driver.execute(_SQLITE_RECORD, (json.dumps(tokens),))
    else:
        rows = [{"idx": idx, "client_id": client_id} for idx, client_id in tokens]
        conn.execute(_insert(conn, StatusClientToken).on_conflict_do_nothing(), rows)
    clients = sorted({client_id for _, client_id in tokens})
    active: set[str] = set()
    for at in range(0, len(clients), BATCH):
        active.update(
            conn.execute(
                select(Client.client_id)
                .where(Client.client_id.in_(clients[at : at + BATCH]), Client.is_active)
                .with_for_update(read=True)
            ).scalars()
        )
    gone = [idx for idx, client_id in tokens if client_id not in active]
    set_ = 0
    for at in range(0, len(gone), BATCH):
        set_ += _set_bits(
            conn,
            select(StatusClientToken.idx, literal(now, Float)).where(
                StatusClientToken.idx.in_(gone[at : at + BATCH])
            ),
        )
    return set_


def set_client_bits(conn: Connection, client_id: str, now: float) -> int:
    """Set the bits of the client's ``client_credentials`` tokens written so far (all
    from their block's current lease: a new lease clears its rows); how many were new."""
    return _set_bits(
        conn,
        select(StatusClientToken.idx, literal(now, Float)).where(
            StatusClientToken.client_id == client_id
        ),
    )


def _set_bits(conn: Connection, rows: Select[Any]) -> int:
    inserted = _insert(conn, StatusRevoked).from_select(["idx", "revoked_at"], rows)
    added = int(conn.execute(inserted.on_conflict_do_nothing()).rowcount)
    if added:
        conn.execute(StatusState.bump())
    return added


def _insert(conn: Connection, table: Any) -> Any:
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def version(conn: Connection) -> int:
    return int(conn.execute(select(StatusState.version).where(StatusState.id == 1)).scalar_one())


def revoked(conn: Connection) -> tuple[int, list[int]]:
    """The list's version and its set bits, read together."""
    return version(conn), list(conn.execute(select(StatusRevoked.idx)).scalars())


def index_of(claims: Mapping[str, Any], uri: str) -> int | None:
    """The status list index an access token of ours holds in the list at ``uri``."""
    status = claims.get("status")
    ref = status.get("status_list") if isinstance(status, dict) else None
    if not isinstance(ref, dict) or ref.get("uri") != uri:
        return None
    idx = ref.get("idx")
    return idx if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0 else None


def revoke_access_token(conn: Connection, jti: str, expires_at: float) -> None:
    values = {"jti": jti, "expires_at": expires_at}
    if conn.dialect.name == "postgresql":
        conn.execute(pg_insert(RevokedAccessToken).values(values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite_insert(RevokedAccessToken).values(values).on_conflict_do_nothing())


def access_token_revoked(conn: Connection, jti: str) -> bool:
    return (
        conn.execute(
            select(func.count())
            .select_from(RevokedAccessToken)
            .where(RevokedAccessToken.jti == jti)
        ).scalar_one()
        > 0
    )
