"""The status list token (draft-ietf-oauth-status-list, section 5.1): a JWS of ``typ``
``statuslist+jwt`` signed by the current signing key (published in the JWKS), with
``sub`` (its URI), ``iat``, ``exp``, ``ttl`` and ``status_list: {bits: 1, lst}``.

It is built in memory and served as is: rebuilt from the database (``store.revoked``)
when the list's version changed, which each replica polls every ``POLL`` seconds, and
re-signed (same bits) every ``RESIGN_TTLS`` ttls or when another key signs, never per
request. ``exp`` is ``LIFETIME_TTLS`` ttls after ``iat``: how long a verifier that
cannot reach us may keep using its last list (README, "Revocation that reaches
resource servers").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

import msgspec
from sqlalchemy import Connection

from authority import metrics
from authority.clock import Clock
from authority.settings import Settings
from authority.signing.signer import KeySource, b64url
from authority.status.store import revoked, version
from authority.storage.database import Database
from authority.verifier.status_bits import encode, pack

log = logging.getLogger("authority.status")

POLL = 1.0
RESIGN_TTLS = 2
LIFETIME_TTLS = 4
STATUS_PATH = "/status/1"
MEDIA_TYPE = "application/statuslist+jwt"

_encode = msgspec.json.Encoder().encode


def status_uri(issuer: str) -> str:
    """The URI of the (one) status list, under the issuer."""
    return issuer + STATUS_PATH


@dataclass(frozen=True, slots=True)
class Published:
    """One signed status list token and what its answer needs."""

    body: bytes
    etag: str
    kid: str
    iat: int
    exp: int


class StatusPublisher:
    """This replica's copy of the status list and the token that publishes it."""

    def __init__(self, db: Database, keys: KeySource, settings: Settings, clock: Clock):
        self._db = db
        self._keys = keys
        self._clock = clock
        self.ttl = settings.status_list_ttl
        self.size = settings.status_list_size
        self.uri = status_uri(settings.issuer)
        self.version: int | None = None
        self._lst = encode(pack(self.size, ()))
        self._published: Published | None = None

    async def sync(self) -> bool:
        """Rebuild from the database if the list changed there; whether it did."""
        current, indexes = await self._db.read(_if_changed, self.version)
        if current == self.version or indexes is None:
            return False
        self._lst = await asyncio.to_thread(lambda: encode(pack(self.size, indexes)))
        self.version = current
        self._published = None
        metrics.STATUS_LIST_REBUILDS.inc()
        metrics.STATUS_LIST_REVOKED.set(len(indexes))
        return True

    async def run(self) -> None:
        """Background loop: follow the database's version of the list."""
        while True:
            await asyncio.sleep(POLL)
            try:
                await self.sync()
            except Exception:  # the loop must outlive any one bad poll
                log.exception("status list poll failed")

    def published(self) -> Published:
        """The current token: the last one signed, unless it is due for re-signing."""
        now = int(self._clock())
        key = self._keys.signing_key()
        done = self._published
        if done is None or done.kid != key.kid or now - done.iat >= RESIGN_TTLS * self.ttl:
            header = b64url(
                _encode({"alg": key.algorithm.name, "typ": "statuslist+jwt", "kid": key.kid})
            )
            claims = {
                "sub": self.uri,
                "iat": now,
                "exp": now + LIFETIME_TTLS * self.ttl,
                "ttl": self.ttl,
                "status_list": {"bits": 1, "lst": self._lst},
            }
            signing_input = header + b"." + b64url(_encode(claims))
            body = signing_input + b"." + b64url(key.algorithm.sign(key.private_key, signing_input))
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            done = self._published = Published(
                body, etag, key.kid, now, now + LIFETIME_TTLS * self.ttl
            )
            metrics.STATUS_LIST_BYTES.set(len(body))
        return done


def _if_changed(conn: Connection, known: int | None) -> tuple[int, list[int] | None]:
    """The list's version, and its set bits unless that version is ``known`` already."""
    current = version(conn)
    if current == known:
        return current, None
    return revoked(conn)
