"""DPoP at the token endpoint (RFC 9449 sections 5, 8 and 11.1): the proof of the
request is checked (``authority.verifier.dpop``, the same checks resource servers
make), its ``jti`` is accepted once across every replica (the ``dpop_proofs`` table,
pruned as proofs age out), and with ``DPOP_NONCE`` it must carry the server's current
nonce. The thumbprint of its key then binds the tokens the grant issues
(``authority.signing.signer.DPOP_KEY``: ``cnf.jkt`` and ``token_type`` ``DPoP``), and
the refresh tokens of a public client (their family: ``refresh_families.dpop_jkt``),
which then refresh only with a proof by the same key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import weakref
from collections.abc import Sequence
from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from authority.sessions.binding import REFUSAL, refuses
from authority.sessions.refresh_tokens import parse_refresh_token
from authority.storage.audit import record
from authority.storage.database import Database
from authority.storage.tables import DpopProof, RefreshFamily, RefreshToken
from authority.verifier.dpop import FUTURE_LEEWAY, MAX_AGE, InvalidProof, check_proof

WINDOW = MAX_AGE + FUTURE_LEEWAY  # how long a jti is remembered
NONCE_PERIOD = 300  # a nonce is good for this period and the next one


class InvalidDpopProofError(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 section 5: the DPoP proof is missing a claim, stale, replayed or wrong."""

    error = "invalid_dpop_proof"


class UseDpopNonceError(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 section 8: the proof must carry the nonce of the ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"

    def __init__(self, nonce: str, description: str):
        super().__init__(description=description)
        self.nonce = nonce


def nonce(secret: bytes, now: float, periods_ago: int = 0) -> str:
    """The server's nonce for the period of ``now`` (the same on every replica: an HMAC
    of the period under ``SECRET_KEY``)."""
    period = int(now // NONCE_PERIOD) - periods_ago
    digest = hmac.new(secret, f"dpop-nonce:{period}".encode(), hashlib.sha256).digest()
    return digest[:18].hex()


# Built once (on the table, not the ORM class): building and keying the statement anew
# cost three times its execution, for every batch.
_PROOFS: Table = DpopProof.__table__  # type: ignore[assignment]
_REMEMBER = {
    postgres: insert_(_PROOFS).on_conflict_do_nothing().returning(_PROOFS.c.proof_hash)
    for postgres, insert_ in ((True, pg_insert), (False, sqlite_insert))
}


def remember_proof(conn: Connection, proof_hash: str, now: float, client_id: str) -> bool:
    """Remember a proof; False (and a ``dpop.replayed`` event) when any replica has.
    The database decides: of two replicas inserting one proof at once, one inserts.
    A proof outside its window fails ``check_proof`` first, so rows past
    ``expires_at`` only wait to be pruned."""
    return remember_proofs(conn, [(proof_hash, now, client_id)])[0]


def remember_proofs(conn: Connection, proofs: Sequence[tuple[str, float, str]]) -> list[bool]:
    """``remember_proof`` for each ``(proof_hash, now, client_id)`` in one statement:
    whether each is its first use. Of one proof sent twice in the batch, the first
    wins; each refused one is a ``dpop.replayed`` event."""
    if secrets.randbelow(64) == 0:  # proofs age out in minutes: prune now and then
        conn.execute(delete(DpopProof).where(DpopProof.expires_at < proofs[0][1]))
    rows: dict[str, dict[str, Any]] = {}
    for proof_hash, now, _ in proofs:
        rows.setdefault(proof_hash, {"proof_hash": proof_hash, "expires_at": now + WINDOW})
    statement = _REMEMBER[conn.dialect.name == "postgresql"]
    added = set(conn.execute(statement, list(rows.values())).scalars())
    firsts = []
    for proof_hash, now, client_id in proofs:
        first = proof_hash in added
        added.discard(proof_hash)
        if not first:
            record(conn, "dpop.replayed", at=now, client_id=client_id)
        firsts.append(first)
    return firsts


class ProofLedger:
    """Remembers the proofs of concurrent requests in one write: a request's proof
    waits for the batch being written to finish and goes in the next, with every other
    proof that came meanwhile (one statement, one transaction: per request, the
    write had cost more than checking the proof). Nothing is answered before its
    batch has committed; a failed write fails its whole batch."""

    def __init__(self, db: Database):
        self._db = db
        self._waiting: list[tuple[str, float, str, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def first_use(self, proof_hash: str, now: float, client_id: str) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((proof_hash, now, client_id, future))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._writer = loop.create_task(self._write(), name="authority-dpop-proofs")
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                firsts = await self._db.write(remember_proofs, [entry[:3] for entry in batch])
            except BaseException as exc:
                for *_, future in batch:
                    if future.done():
                        continue
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:  # the writer itself was cancelled: so are its waiters
                        future.cancel()
                if not isinstance(exc, Exception):
                    raise
                continue
            for (*_, future), first in zip(batch, firsts, strict=True):
                if not future.done():  # its request may have been cancelled meanwhile
                    future.set_result(first)


_LEDGERS: weakref.WeakKeyDictionary[Database, ProofLedger] = weakref.WeakKeyDictionary()


def ledger_of(db: Database) -> ProofLedger:
    """The one ledger of a database in this process, shared by ``/oauth/token`` and
    ``/auth`` so that their proofs go in the same batches."""
    ledger = _LEDGERS.get(db)
    if ledger is None:
        ledger = _LEDGERS[db] = ProofLedger(db)
    return ledger


async def key_of_proof(
    ledger: ProofLedger,
    proofs: Sequence[str],
    *,
    method: str,
    url: str,
    now: float,
    client_id: str,
    nonce_secret: bytes | None,
    access_token: str | None = None,
) -> str | None:
    """The thumbprint of the key of the request's one DPoP proof, None without one;
    ``InvalidDpopProofError`` or ``UseDpopNonceError`` for a proof that fails. With
    ``access_token`` (a request to a protected resource) the proof's ``ath`` must be
    that token's hash."""
    if not proofs:
        return None
    if len(proofs) > 1:
        raise InvalidDpopProofError(description="more than one DPoP header")
    try:
        proof = check_proof(proofs[0], method=method, url=url, now=now, access_token=access_token)
    except InvalidProof as exc:
        raise InvalidDpopProofError(description=exc.description) from None
    if nonce_secret is not None:
        fresh = nonce(nonce_secret, now)
        if proof.nonce is None or proof.nonce not in (fresh, nonce(nonce_secret, now, 1)):
            raise UseDpopNonceError(fresh, "the proof must carry the server's DPoP-Nonce")
    proof_hash = hashlib.sha256(f"{proof.jkt}:{proof.jti}".encode()).hexdigest()
    if not await ledger.first_use(proof_hash, now, client_id):
        raise InvalidDpopProofError(description="the DPoP proof was used before")
    return proof.jkt


def _family_key(conn: Connection, token_hash: bytes) -> str | None:
    return conn.execute(
        select(RefreshFamily.dpop_jkt)
        .join(RefreshToken, RefreshToken.family_id == RefreshFamily.id)
        .where(RefreshToken.token_hash == token_hash)
    ).scalar()


def _bind_family(conn: Connection, token_hash: bytes, jkt: str) -> None:
    family = select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash)
    conn.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family.scalar_subquery(), RefreshFamily.dpop_jkt.is_(None))
        .values(dpop_jkt=jkt)
    )


async def check_refresh_binding(db: Database, refresh_token: str | None, jkt: str | None) -> None:
    """A refresh token bound to a key ends its session (``/auth/logout``) only with a
    proof by that key; a refresh checks it in its rotation (``sessions.binding``)."""
    token_hash = parse_refresh_token(refresh_token or "")
    if token_hash is None:
        return
    if refuses(await db.read(_family_key, token_hash), jkt):
        raise InvalidDpopProofError(description=REFUSAL)


async def bind_refresh_token(db: Database, refresh_token: str | None, jkt: str | None) -> None:
    """Bind the family of a newly issued refresh token to ``jkt`` (once: a family
    keeps the key it was first bound to)."""
    token_hash = parse_refresh_token(refresh_token or "")
    if token_hash is not None and jkt is not None:
        await db.write(_bind_family, token_hash, jkt)
