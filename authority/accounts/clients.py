"""OAuth clients (RFC 6749 section 2): registration, lookup, authentication, and the
operator's lifecycle (secret rotation with an overlap, disable, enable, delete).

Secrets are made here (256 random bits), shown once, and stored as HMAC-SHA256 under
the server's secret key: a high-entropy secret needs no slow hash, so authenticating
a client costs microseconds. Comparison is constant-time. During a rotation's overlap
a client has two secrets, the new one and the previous one until
``previous_secret_until``; both are compared on every attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from authority.storage.tables import Client

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 section 3.3 scope-token
# The public client behind /auth (migration 0004): no OAuth grant, never deleted.
FIRST_PARTY_CLIENT_ID = "authority-web"
MAX_NAME = 200
MAX_AUDIENCE = 200  # a session keeps its audience in refresh_families.audience, 200 long
MAX_OVERLAP = 30 * 86400  # the longest a rotated-out secret may keep working (s)
CACHE_TTL = 2.0  # how long a server trusts a client record it read (s): README, "Clients"
_NO_HASH = bytes(32)


class Reads(Protocol):
    """What the client cache needs of ``storage.database.Database``: a read."""

    async def read(self, fn: Any, /, *args: Any) -> Any: ...


class ClientNameTaken(ValueError):
    """The name is another client's name (or id: commands take either)."""

    def __init__(self, name: str):
        super().__init__(f"a client named {name!r} already exists")


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
    previous_secret_hash: bytes | None = None
    previous_secret_until: float | None = None
    created_at: float = 0.0
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    first_party: bool = False

    def default_audience(self, fallback: str) -> str:
        """What a token request naming no audience gets: the first audience the client
        was registered with, else ``fallback`` (AUTHORITY_AUDIENCE)."""
        return self.audiences[0] if self.audiences else fallback

    def previous_secret_valid_until(self, now: float) -> float | None:
        """When the previous secret stops working, if it still works at ``now``."""
        until = self.previous_secret_until
        if self.previous_secret_hash is None or until is None or until <= now:
            return None
        return until


def hash_secret(key: bytes, secret: str) -> bytes:
    """HMAC-SHA256 of the secret under ``key``, from a copy of the key's prepared HMAC:
    ``hmac.digest`` lets go of the GIL, and a token request then waits for any other
    thread of the worker to hand it back (6 us a call under load, against 1 us)."""
    keyed = _KEYED.get(key)
    if keyed is None:
        if len(_KEYED) >= 4:  # one key per process in practice (SECRET_KEY)
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = keyed.copy()
    mac.update(secret.encode())
    return mac.digest()


_KEYED: dict[bytes, hmac.HMAC] = {}


def secret_matches(key: bytes, secret: str, client: ClientRecord, now: float) -> bool:
    """The secret is the client's, or its previous one within the overlap. Both hashes
    are always computed and compared, so neither a public client's id nor a rotation
    gives a timing signal."""
    candidate = hash_secret(key, secret)
    current = hmac.compare_digest(candidate, client.secret_hash or _NO_HASH)
    previous = hmac.compare_digest(candidate, client.previous_secret_hash or _NO_HASH)
    if client.secret_hash is None:
        return False
    return current or (previous and client.previous_secret_valid_until(now) is not None)


def authenticates(
    client: ClientRecord | None, secret: str | None, key: bytes, now: float, allow_public: bool
) -> bool:
    """RFC 6749 section 2.3: an active client, with its secret, or a public client with
    none (when the endpoint accepts public clients)."""
    if client is None or not client.is_active:
        return False
    if client.is_public:
        return secret is None and allow_public
    return secret is not None and secret_matches(key, secret, client, now)


def new_client_id() -> str:
    """128 random bits, base64url, never beginning with "-" (ids are typed as command
    arguments, where a leading dash reads as an option)."""
    while (client_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return client_id


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a client, or None."""
    if not name.strip() or len(name) > MAX_NAME:
        return f"a client name is 1 to {MAX_NAME} characters"
    if not name.isprintable():
        return "a client name cannot hold control characters"
    if name != name.strip():
        return "a client name cannot begin or end with a space"
    if name.startswith("-"):
        return "a client name cannot begin with '-' (commands would read it as an option)"
    return None


_C = Client.__table__.c
_GET_CLIENT = select(Client.__table__).where(_C.client_id == bindparam("client_id"))


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
        previous_secret_hash=row.previous_secret_hash,
        previous_secret_until=row.previous_secret_until,
        created_at=row.created_at,
        redirect_uris=tuple(row.redirect_uris.split()),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris.split()),
        first_party=row.first_party,
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
    redirect_uris: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    first_party: bool = False,
) -> ClientRecord:
    """A new client; ``ClientNameTaken`` when the name is another's (the database's
    unique constraint decides, so two concurrent creations cannot both win). Redirect
    URIs are checked by the caller (``authority.accounts.redirects``)."""
    record = ClientRecord(
        client_id=new_client_id(),
        name=name,
        is_public=secret_hash is None,
        grant_types=frozenset(grant_types),
        scopes=frozenset(scopes),
        audiences=tuple(dict.fromkeys(audiences)),
        is_active=True,
        secret_hash=secret_hash,
        created_at=now,
        redirect_uris=tuple(dict.fromkeys(redirect_uris or ())),
        post_logout_redirect_uris=tuple(dict.fromkeys(post_logout_redirect_uris or ())),
        first_party=first_party,
    )
    if conn.execute(_GET_CLIENT, {"client_id": name}).first() is not None:
        raise ClientNameTaken(name)
    try:
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
                redirect_uris=" ".join(record.redirect_uris),
                post_logout_redirect_uris=" ".join(record.post_logout_redirect_uris),
                first_party=first_party,
            )
        )
    except IntegrityError:
        raise ClientNameTaken(name) from None
    return record


def get_client(conn: Connection, client_id: str) -> ClientRecord | None:
    if "\x00" in client_id:  # PostgreSQL text cannot hold NUL; no client id has one
        return None
    row = conn.execute(_GET_CLIENT, {"client_id": client_id}).first()
    return _record(row) if row is not None else None


def find_client(conn: Connection, ref: str) -> ClientRecord | None:
    """The client named ``ref``, else the client whose id is ``ref`` (a name is never
    another client's id when it is given: ``create_client``)."""
    if "\x00" in ref:
        return None
    rows = conn.execute(select(Client.__table__).where(or_(_C.name == ref, _C.client_id == ref)))
    found = sorted((_record(row) for row in rows), key=lambda c: c.name != ref)
    return found[0] if found else None


def list_clients(conn: Connection) -> list[ClientRecord]:
    return [_record(row) for row in conn.execute(select(Client).order_by(Client.created_at))]


def all_scopes(conn: Connection) -> list[str]:
    scopes: set[str] = set()
    for (value,) in conn.execute(select(Client.scopes)):
        scopes.update(value.split())
    return sorted(scopes)


def rotate_secret(
    conn: Connection, client_id: str, secret_hash: bytes, now: float, overlap: int
) -> float | None:
    """Give a confidential client a new secret; the one it had keeps working until
    ``now + overlap`` (not at all when ``overlap`` is 0). A secret kept by an earlier
    rotation's overlap stops at once. Returns when the previous secret stops."""
    until = now + overlap if overlap > 0 else None
    conn.execute(
        update(Client)
        .where(Client.client_id == client_id, Client.secret_hash.is_not(None))
        .values(
            # The right-hand side reads the row as it was: the secret being replaced.
            previous_secret_hash=Client.secret_hash if until is not None else None,
            previous_secret_until=until,
            secret_hash=secret_hash,
        )
    )
    return until


def set_client_active(conn: Connection, client_id: str, active: bool) -> bool:
    """Enable or disable a client; False when it already was so."""
    return bool(
        conn.execute(
            update(Client)
            .where(Client.client_id == client_id, Client.is_active == (not active))
            .values(is_active=active)
        ).rowcount
    )


def delete_client(conn: Connection, client_id: str) -> bool:
    """Delete a client; its refresh families and their tokens go with it (the foreign
    keys cascade)."""
    return bool(conn.execute(delete(Client).where(Client.client_id == client_id)).rowcount)


# A read of the client cache: when it began (a sequence number, None before), and it.
Reading = tuple[list[int | None], "asyncio.Future[ClientRecord | None]"]


class ClientCache:
    """Client records kept ``ttl`` seconds in each process, so that a token request
    needs no database read for its client.

    Only found clients are kept (a new client works at once), and a refusal is never
    the cache's: a client that a cached record refuses is read again before the answer,
    so a new secret and a re-enabled client work at once. What the cache can delay is
    the other direction: a server that read a client less than ``ttl`` ago may accept
    it for the rest of that ``ttl`` after it was disabled, deleted, or given a new
    secret without overlap. The end of the previous secret's overlap is in the record
    and checked at every attempt, so no cached record accepts it after the overlap.
    Time is the service's clock (``now``); a record read "in the future" (the clock
    went back) is read again."""

    def __init__(self, ttl: float = CACHE_TTL, size: int = 10_000):
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, ClientRecord]] = {}
        # One read per client at a time: when a record expires, every request of the
        # client in flight would otherwise read it at once (a busy client's 32
        # connections, 32 reads every ``ttl``), where one read answers them all.
        self._reading: dict[str, Reading] = {}
        self._reads_begun = 0

    async def authenticate(
        self,
        db: Reads,
        client_id: str,
        secret: str | None,
        *,
        key: bytes,
        now: float,
        allow_public: bool = True,
    ) -> ClientRecord | None:
        """The client, when ``secret`` authenticates it at ``now`` (``authenticates``)."""
        hit = self._entries.get(client_id)
        if (
            hit is not None
            and 0 <= now - hit[0] < self.ttl
            and authenticates(hit[1], secret, key, now, allow_public)
        ):
            return hit[1]
        client = await self._read(db, client_id, now)
        return client if authenticates(client, secret, key, now, allow_public) else None

    async def _read(self, db: Reads, client_id: str, now: float) -> ClientRecord | None:
        """The record as the database has it now. A caller joins a read of the same
        client that begins after it asked (or has not begun yet); a read already under
        way when it asked may hold an older record (a refused secret must see the
        newest), so it waits for that one to end and then joins or starts the next.
        The read is a task of its own: a caller that goes away leaves it to the others."""
        asked = self._reads_begun
        while True:
            reading = self._reading.get(client_id)
            if reading is None:
                reading = self._start_read(db, client_id, now)
            began, task = reading
            if began[0] is None or began[0] > asked:
                return await asyncio.shield(task)
            await asyncio.wait([task])  # however it ends

    def _start_read(self, db: Reads, client_id: str, now: float) -> Reading:
        began: list[int | None] = [None]

        async def read() -> ClientRecord | None:
            self._reads_begun += 1
            began[0] = self._reads_begun
            client: ClientRecord | None = await db.read(get_client, client_id)
            return client

        task = asyncio.ensure_future(read())
        reading = self._reading[client_id] = (began, task)

        def done(task: asyncio.Future[ClientRecord | None]) -> None:
            # The first callback, so it runs before any waiter wakes: they see it gone.
            if self._reading.get(client_id) is reading:
                del self._reading[client_id]
            if not task.cancelled() and task.exception() is None:
                self._keep(client_id, task.result(), now)

        task.add_done_callback(done)
        return reading

    def _keep(self, client_id: str, client: ClientRecord | None, now: float) -> None:
        if client is None:
            self._entries.pop(client_id, None)
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[client_id] = (now, client)
