"""OAuth clients (RFC 6749 section 2): registration, lookup and authentication.

Secrets are made here (256 random bits), shown once, and stored as HMAC-SHA256 under
the server's secret key: a high-entropy secret needs no slow hash, so authenticating
a client costs microseconds. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from authority.storage.database import Database
from authority.storage.tables import Client

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3 scope-token


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    is_public: bool
    grant_types: frozenset[str]
    scopes: frozenset[str]
    audiences: tuple[str, ...]
    is_active: bool
    secret_hash: bytes | None


def hash_secret(key: bytes, secret: str) -> bytes:
    return hmac.new(key, secret.encode(), hashlib.sha256).digest()


def secret_matches(key: bytes, secret: str, stored: bytes | None) -> bool:
    # Always compute and compare, so a public client's id gives no timing signal.
    candidate = hash_secret(key, secret)
    return hmac.compare_digest(candidate, stored or bytes(32)) and stored is not None


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _record(row: Any) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        name=row.name,
        is_public=row.secret_hash is None,
        grant_types=frozenset(row.grant_types.split()),
        scopes=frozenset(row.scopes.split()),
        audiences=tuple(row.audiences.split()),
        is_active=row.is_active,
        secret_hash=row.secret_hash,
    )


def create_client(
    conn: Connection,
    *,
    name: str,
    secret_hash: bytes | None,
    grant_types: list[str],
    scopes: list[str],
    audiences: list[str],
    now: float,
) -> ClientRecord:
    record = ClientRecord(
        client_id=new_client_id(),
        name=name,
        is_public=secret_hash is None,
        grant_types=frozenset(grant_types),
        scopes=frozenset(scopes),
        audiences=tuple(dict.fromkeys(audiences)),
        is_active=True,
        secret_hash=secret_hash,
    )
    conn.execute(
        insert(Client).values(
            client_id=record.client_id,
            name=name,
            secret_hash=secret_hash,
            grant_types=" ".join(sorted(record.grant_types)),
            scopes=" ".join(sorted(record.scopes)),
            audiences=" ".join(record.audiences),
            is_active=True,
            created_at=now,
        )
    )
    return record


_GET_CLIENT = select(Client.__table__).where(Client.__table__.c.client_id == bindparam("client_id"))


def get_client(conn: Connection, client_id: str) -> ClientRecord | None:
    if "\x00" in client_id:  # PostgreSQL text cannot hold NUL; no client id has one
        return None
    row = conn.execute(_GET_CLIENT, {"client_id": client_id}).first()
    return _record(row) if row is not None else None


def list_clients(conn: Connection) -> list[ClientRecord]:
    return [_record(row) for row in conn.execute(select(Client).order_by(Client.created_at))]


def all_scopes(conn: Connection) -> list[str]:
    scopes: set[str] = set()
    for (value,) in conn.execute(select(Client.scopes)):
        scopes.update(value.split())
    return sorted(scopes)


class ClientCache:
    """Client records kept ``ttl`` seconds in each process, so that a token request
    needs no database read for its client. Only found clients are kept (a new client
    works at once); a change to a client takes effect within ``ttl``."""

    def __init__(self, ttl: float = 2.0, size: int = 10_000):
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, ClientRecord]] = {}

    async def get(self, db: Database, client_id: str) -> ClientRecord | None:
        now = time.monotonic()
        hit = self._entries.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        client = await db.read(get_client, client_id)
        if client is not None:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[client_id] = (now + self.ttl, client)
        return client
