"""Authorization codes (RFC 6749 section 4.1.2, RFC 7636, RFC 9700 section 4.5).

A code has 256 random bits, is stored only as its SHA-256, lives ``AUTH_CODE_TTL``
and is bound to the client, redirect URI, code challenge, nonce, scope and audience it
was issued with, and to the DPoP key of ``dpop_jkt`` when the request named one (RFC
9449 section 10: the exchange must then carry a proof by that key). Redemption is one
transaction: a code already used is refused and
the session it opened is revoked (RFC 6749 section 4.1.2, "SHOULD revoke"), with an
audit event ``code.replayed``; otherwise the bindings are checked, the code is marked
used by compare-and-set (``UPDATE ... WHERE used_at IS NULL``: the database decides
which of two simultaneous exchanges wins) and the new session (refresh family) is
opened and recorded on the code, all or nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import Connection, insert, select, update

from authority.accounts.redirects import redirect_matches
from authority.accounts.users import get_user
from authority.sessions.families import Family, revoke_family, start_family
from authority.storage import audit
from authority.storage.tables import AuthorizationCode, RefreshFamily

CODE_BYTES = 32
# RFC 7636 section 4.1: 43 to 128 unreserved characters.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CODE = re.compile(r"[A-Za-z0-9_-]{43}")

Outcome = Literal[
    "ok",
    "unknown",
    "replayed",
    "expired",
    "foreign",
    "redirect",
    "verifier",
    "dpop",
    "scope",
    "target",
]


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What a code stands for: the authorization the user gave one client."""

    client_id: str
    user_id: int
    redirect_uri: str | None
    code_challenge: str
    nonce: str | None
    scope: str
    audience: str
    auth_time: float
    browser_session: str
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class Redemption:
    outcome: Outcome
    grant: CodeGrant | None = None
    family: Family | None = None
    refresh_expires_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NewSession:
    """The session a redeemed code opens (``start_family``'s arguments)."""

    token_hash: bytes
    refresh_ttl: int
    family_ttl: int
    status_idx: int
    address: str | None
    user_agent: str | None


def new_code() -> tuple[str, bytes]:
    code = secrets.token_urlsafe(CODE_BYTES)
    return code, hashlib.sha256(code.encode()).digest()


def parse_code(code: str) -> bytes | None:
    """The hash of a well-formed code, else None (nothing to look up)."""
    return hashlib.sha256(code.encode()).digest() if _CODE.fullmatch(code) else None


def verifier_matches(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 section 4.6, S256 only."""
    if verifier is None or not VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(create_s256_code_challenge(verifier), challenge)


def store_code(conn: Connection, grant: CodeGrant, code_hash: bytes, now: float, ttl: int) -> None:
    conn.execute(
        insert(AuthorizationCode).values(
            code_hash=code_hash,
            client_id=grant.client_id,
            user_id=grant.user_id,
            redirect_uri=grant.redirect_uri,
            code_challenge=grant.code_challenge,
            nonce=grant.nonce,
            scope=grant.scope,
            audience=grant.audience,
            auth_time=grant.auth_time,
            browser_session=grant.browser_session,
            dpop_jkt=grant.dpop_jkt,
            created_at=now,
            expires_at=now + ttl,
        )
    )


def redeem_code(
    conn: Connection,
    code_hash: bytes,
    *,
    client_id: str,
    redirect_uri: str | None,
    verifier: str | None,
    now: float,
    session: NewSession,
    scope: list[str] | None = None,
    resource: str | None = None,
    dpop_jkt: str | None = None,
) -> Redemption:
    """Redeem a code (module docstring). Only ``ok`` changes the code; ``replayed``
    revokes what the code issued, and that is committed with the refusal. A token
    request may narrow the scope (``scope``: refused when it asks for more) and may
    name the code's audience again (``resource``: refused when it names another);
    ``dpop_jkt`` is the thumbprint of the key of the request's DPoP proof, if any."""
    table = AuthorizationCode.__table__
    row = conn.execute(select(table).where(table.c.code_hash == code_hash)).first()
    if row is None:
        return Redemption("unknown")
    grant = CodeGrant(
        row.client_id,
        row.user_id,
        row.redirect_uri,
        row.code_challenge,
        row.nonce,
        row.scope,
        row.audience,
        row.auth_time,
        row.browser_session,
        row.dpop_jkt,
    )
    if row.used_at is not None:
        return _replayed(conn, code_hash, grant, now)
    if row.expires_at <= now:
        return Redemption("expired")
    if row.client_id != client_id:
        return Redemption("foreign")
    # RFC 6749 section 4.1.3: the same redirect_uri, when the request had one.
    if row.redirect_uri is not None and (
        redirect_uri is None or not redirect_matches(row.redirect_uri, redirect_uri)
    ):
        return Redemption("redirect")
    if not verifier_matches(verifier, row.code_challenge):
        return Redemption("verifier")
    if row.dpop_jkt is not None and row.dpop_jkt != dpop_jkt:
        return Redemption("dpop")
    if scope is not None and not set(scope) <= set(grant.scope.split()):
        return Redemption("scope")
    if resource is not None and resource != grant.audience:
        return Redemption("target")
    user = get_user(conn, grant.user_id)
    used = conn.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash, AuthorizationCode.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    if not used:  # another exchange won the compare-and-set: this one is a replay
        return _replayed(conn, code_hash, grant, now)
    if user is None or not user.is_active:
        return Redemption("unknown")
    granted = " ".join(scope) if scope is not None else grant.scope
    family, expires_at = start_family(
        conn,
        user_id=user.id,
        username=user.username,
        client_id=client_id,
        scope=granted,
        audience=grant.audience,
        token_hash=session.token_hash,
        now=now,
        refresh_ttl=session.refresh_ttl,
        family_ttl=session.family_ttl,
        address=session.address,
        user_agent=session.user_agent,
        status_idx=session.status_idx,
    )
    conn.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash)
        .values(family_id=family.id)
    )
    return Redemption("ok", grant, family, expires_at)


def _replayed(conn: Connection, code_hash: bytes, grant: CodeGrant, now: float) -> Redemption:
    family_id = conn.execute(
        select(AuthorizationCode.family_id).where(AuthorizationCode.code_hash == code_hash)
    ).scalar()
    revoked = bool(family_id) and revoke_family(conn, str(family_id), "code_replayed", now)
    audit.record(
        conn,
        "code.replayed",
        at=now,
        user_id=grant.user_id,
        client_id=grant.client_id,
        detail={"family_id": family_id, "revoked": revoked},
    )
    return Redemption("replayed", grant)


def families_of_browser_session(conn: Connection, browser_session: str) -> list[str]:
    """The sessions that codes issued in a browser's login session opened (RP-initiated
    logout ends them with it)."""
    rows = conn.execute(
        select(AuthorizationCode.family_id).where(
            AuthorizationCode.browser_session == browser_session,
            AuthorizationCode.family_id.is_not(None),
        )
    )
    return [str(family_id) for (family_id,) in rows]


def session_started(conn: Connection, family_id: str) -> float | None:
    """When a browser's login session began: the ``auth_time`` of what it authorizes."""
    started = conn.execute(
        select(RefreshFamily.created_at).where(RefreshFamily.id == family_id)
    ).scalar()
    return float(started) if started is not None else None
