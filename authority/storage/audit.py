"""The audit trail (SPEC section 12): one row per security event, never a secret.

``record(conn, type, ...)`` adds the event to the caller's transaction, so an event is
stored exactly when what it describes is; the address and request id come from the
request being served (``request_scope``, set by the web layer), the CLI has none. Once
the transaction commits, each event is one JSON line on the ``authority.audit``
logger; a rolled-back event is never logged.
Events are read with ``query`` (``authority events``) and pruned in batches after
``AUDIT_RETENTION`` (``prune_batch``).
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from sqlalchemy import Connection, delete, insert, select

from authority.storage.tables import AuditEvent
from authority.storage.writer import after_commit

log = logging.getLogger("authority.audit")

EventType = Literal[
    "login.succeeded",
    "login.failed",
    "login.throttled",
    "user.registered",
    "user.created",
    "refresh.reuse_detected",
    "session.revoked",
    "password.changed",
    "user.disabled",
    "user.enabled",
    "client.created",
    "client.secret_rotated",
    "client.disabled",
    "client.enabled",
    "client.deleted",
    "key.created",
    "key.promoted",
    "key.revoked",
    "key.pruned",
    "code.replayed",
    "dpop.replayed",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class RequestInfo(NamedTuple):
    """What the audit trail and the access log know of the request being served (a
    tuple: one is made for every request, six times faster than a frozen dataclass)."""

    request_id: str
    address: str | None = None
    user_agent: str | None = None


_current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "authority_request", default=None
)


def current_request() -> RequestInfo | None:
    return _current.get()


class request_scope:
    """``with request_scope(info):`` the code inside sees ``info`` as the current request.
    A class rather than ``contextlib.contextmanager``: it runs for every request."""

    def __init__(self, info: RequestInfo) -> None:
        self.info = info

    def __enter__(self) -> None:
        self.token = _current.set(self.info)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self.token)


def record(
    conn: Connection,
    type: EventType,
    *,
    at: float,
    user_id: int | None = None,
    username: str | None = None,
    client_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Store one event in ``conn``'s transaction; logged once that commits."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown audit event type {type!r}")
    request = current_request()
    row = {
        "at": at,
        "type": type,
        "user_id": user_id,
        "username": username,
        "client_id": client_id,
        "address": request.address if request else None,
        "request_id": request.request_id if request else None,
        "detail": json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":")),
    }
    conn.execute(insert(AuditEvent).values(**row))
    after_commit(conn, lambda: _log(row))


def _log(row: dict[str, Any]) -> None:
    line = {**row, "detail": json.loads(row["detail"])}
    log.info(json.dumps({"audit": line}, sort_keys=True, separators=(",", ":")))


@dataclass(frozen=True)
class Filter:
    since: float | None = None
    user_id: int | None = None
    client_id: str | None = None
    type: str | None = None
    limit: int = 100


def query(conn: Connection, which: Filter) -> list[dict[str, Any]]:
    """The newest matching events first."""
    table = AuditEvent.__table__
    stmt = select(table).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if which.since is not None:
        stmt = stmt.where(AuditEvent.at >= which.since)
    if which.user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == which.user_id)
    if which.client_id is not None:
        stmt = stmt.where(AuditEvent.client_id == which.client_id)
    if which.type is not None:
        stmt = stmt.where(AuditEvent.type == which.type)
    rows = conn.execute(stmt.limit(which.limit)).all()
    return [
        {
            "id": row.id,
            "at": row.at,
            "type": row.type,
            "user_id": row.user_id,
            "username": row.username,
            "client_id": row.client_id,
            "address": row.address,
            "request_id": row.request_id,
            "detail": json.loads(row.detail or "{}"),
        }
        for row in rows
    ]


def prune_batch(conn: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` events older than ``before``; the count deleted."""
    ids = select(AuditEvent.id).where(AuditEvent.at < before).limit(limit).scalar_subquery()
    return conn.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids))).rowcount or 0
