"""The audit trail's store (SPEC section 12): an event is stored in the transaction of
what it records, logged as one JSON line only once that commits, read newest first
with filters, and pruned in batches. On both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, func, select

from authority.storage import audit
from authority.storage.database import Database
from authority.storage.tables import AuditEvent
from tests.helpers.log_lines import Lines, caught


@pytest.fixture
def audit_lines() -> Iterator[Lines]:
    with caught("authority.audit") as lines:
        yield lines


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


class Refused(Exception):
    pass


def record_then_fail(conn: Connection) -> None:
    audit.record(conn, "login.failed", at=1.0, username="alice", detail={"reason": "x"})
    raise Refused


def test_an_event_is_stored_and_logged_after_commit_with_the_request(
    migrated_url: str, audit_lines: Lines
) -> None:
    async def scenario() -> list[dict[str, object]]:
        db = Database(migrated_url)
        try:
            info = audit.RequestInfo("req-1", "203.0.113.9", "ua")
            with audit.request_scope(info):
                await db.write(
                    audit.record,
                    "login.succeeded",
                    at=100.0,
                    user_id=7,
                    username="alice",
                    client_id="authority-web",
                    detail={"delivery": "cookie"},
                )
            await db.write(audit.record, "key.created", at=200.0, detail={"kid": "k1"})
            return await db.read(audit.query, audit.Filter())
        finally:
            await db.dispose()

    events = asyncio.run(scenario())
    assert [e["type"] for e in events] == ["key.created", "login.succeeded"]
    login = events[1]
    assert login["request_id"] == "req-1"
    assert login["address"] == "203.0.113.9"
    assert login["user_id"] == 7
    assert login["detail"] == {"delivery": "cookie"}
    assert events[0]["request_id"] is None  # outside a request (the CLI)
    assert [line["audit"]["type"] for line in audit_lines.lines] == [
        "login.succeeded",
        "key.created",
    ]
    assert audit_lines.lines[0]["audit"]["request_id"] == "req-1"


def test_a_rolled_back_event_is_neither_stored_nor_logged(
    migrated_url: str, audit_lines: Lines
) -> None:
    async def scenario() -> int:
        db = Database(migrated_url)
        try:
            with pytest.raises(Refused):
                await db.write(record_then_fail)
            # The same pooled connection serves the next transaction: nothing carried over.
            await db.write(audit.record, "user.enabled", at=3.0, username="bob")
            return await db.read(count)
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == 1
    assert [line["audit"]["type"] for line in audit_lines.lines] == ["user.enabled"]


def test_an_unknown_type_is_refused(migrated_url: str) -> None:
    async def scenario() -> None:
        db = Database(migrated_url)
        try:
            await db.write(audit.record, "login.maybe", at=1.0)  # type: ignore[arg-type]
        finally:
            await db.dispose()

    with pytest.raises(ValueError, match="unknown audit event type"):
        asyncio.run(scenario())


def test_query_filters_and_prune_batches(migrated_url: str) -> None:
    def fill(conn: Connection) -> None:
        for at in range(10):
            audit.record(conn, "login.failed", at=float(at), user_id=at % 2, client_id="c")
        audit.record(conn, "client.created", at=20.0, client_id="other")

    async def scenario() -> tuple[list[int], int, int, int, int]:
        db = Database(migrated_url)
        try:
            await db.write(fill)
            odd = await db.read(audit.query, audit.Filter(user_id=1, since=4.0, limit=2))
            typed = await db.read(audit.query, audit.Filter(type="client.created"))
            first = await db.write(audit.prune_batch, 6.0, 4)
            second = await db.write(audit.prune_batch, 6.0, 4)
            left = await db.read(count)
            return [int(e["at"]) for e in odd], len(typed), first, second, left
        finally:
            await db.dispose()

    odd, typed, first, second, left = asyncio.run(scenario())
    assert odd == [9, 7]
    assert typed == 1
    assert (first, second) == (4, 2)
    assert left == 5
