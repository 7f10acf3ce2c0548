"""DPoP at ``/auth`` (RFC 9449; README, "DPoP: sender-constrained tokens"): body
sessions bound to the key of the client's proofs.

Login, sign-up and refresh in body delivery take one ``DPoP`` proof (section 5): its
key's thumbprint binds the access token (``cnf.jkt``) and the session's refresh family,
with the token endpoint's checks, replay table and nonce (``authority.grants.dpop``).
A bound access token then counts at ``/auth`` only as ``Authorization: DPoP`` with a
proof by that key for the request, carrying the token's hash (``ath``, section 7); a
bound token sent as ``Bearer`` or in a cookie is refused (section 7.2). Those proofs'
``jti``s go to the same shared ``dpop_proofs`` table: ``/auth/password`` and the logouts
change state, and a proof replayed at another replica must fail there too.
Cookie sessions are never bound: a cookie request with a proof is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from authority.accounts.clients import FIRST_PARTY_CLIENT_ID
from authority.grants.dpop import (
    InvalidDpopProofError,
    UseDpopNonceError,
    check_refresh_binding,
    key_of_proof,
    ledger_of,
)
from authority.sessions.service import Authority
from authority.verifier.algorithms import ALGORITHMS

NOT_FOR_COOKIES = (
    'DPoP binds body-delivery sessions only: send delivery "body" (or the refresh token '
    "in the body) with the DPoP header, or leave the header out for cookies"
)
ALGS = " ".join(ALGORITHMS)


class DpopRefused(Exception):
    """A request refused for its DPoP proof or its bound token: ``/auth`` answers it in
    its error shape (``authority.web.auth``), ``error`` being the RFC 9449 code."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str]):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers


@dataclass(frozen=True)
class Credential:
    """The token of the ``Authorization`` header and its scheme: ``bearer`` or ``dpop``."""

    token: str
    scheme: str

    @property
    def dpop(self) -> bool:
        return self.scheme == "dpop"


def authorization(request: Request[Any, Any, Any]) -> Credential | None:
    """The ``Authorization: Bearer`` or ``Authorization: DPoP`` credential ("" when
    empty); None without one. Other schemes are not ours and are ignored."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    scheme = scheme.lower()
    return Credential(token.strip(), scheme) if scheme in ("bearer", "dpop") else None


def has_proof(request: Request[Any, Any, Any]) -> bool:
    return "dpop" in request.headers


def refuse_for_cookies(request: Request[Any, Any, Any]) -> None:
    """Cookie delivery takes no proof: a cookie session cannot be bound to a key."""
    if has_proof(request):
        raise DpopRefused(400, "invalid_dpop_proof", NOT_FOR_COOKIES, {})


def bound_key(claims: dict[str, Any]) -> str | None:
    """The ``cnf.jkt`` an access token is bound to (RFC 9449 section 6.1), if any."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None


def _url(auth: Authority, request: Request[Any, Any, Any]) -> str:
    """The ``htu`` a proof must name: the issuer's URL of this path (as the token
    endpoint's is), so that a TLS-terminating proxy in front changes nothing."""
    return f"{auth.settings.issuer}{request.url.path}"


async def proof_key(
    auth: Authority, request: Request[Any, Any, Any], *, refresh: str | None = None
) -> str | None:
    """The key of the request's proof at login, sign-up, refresh and logout (None
    without one), with the server's nonce when ``DPOP_NONCE`` is on; a ``refresh`` token
    (at logout: a refresh checks its key in the rotation) bound to a key needs a proof by
    it. A 400 ``invalid_dpop_proof`` or
    ``use_dpop_nonce`` (with ``DPoP-Nonce``) otherwise."""
    try:
        jkt = await key_of_proof(
            ledger_of(auth.db),
            request.headers.getall("dpop", []),
            method=request.method,
            url=_url(auth, request),
            now=auth.clock(),
            client_id=FIRST_PARTY_CLIENT_ID,
            nonce_secret=auth.secret_key if auth.settings.dpop_nonce else None,
        )
        if refresh is not None:
            await check_refresh_binding(auth.db, refresh, jkt)
    except UseDpopNonceError as exc:
        raise DpopRefused(400, exc.error, exc.description, {"DPoP-Nonce": exc.nonce}) from None
    except InvalidDpopProofError as exc:
        raise DpopRefused(400, exc.error, exc.description, {}) from None
    return jkt


def refused(error: str, description: str) -> DpopRefused:
    """A 401 of the DPoP scheme (RFC 9449 section 7.1). The descriptions are this
    module's and the proof checker's own words, which hold no quote or backslash."""
    header = f'DPoP error="{error}", error_description="{description}", algs="{ALGS}"'
    return DpopRefused(401, error, description, {"WWW-Authenticate": header})


async def check_token_proof(
    auth: Authority,
    request: Request[Any, Any, Any],
    credential: Credential | None,
    claims: dict[str, Any],
) -> str | None:
    """The key of a bound access token once the request proved it holds it (None for
    an unbound token sent as ``Bearer``); a 401 otherwise."""
    jkt = bound_key(claims)
    if credential is None or not credential.dpop:
        if jkt is None and not has_proof(request):
            return None
        if jkt is not None:
            raise refused("invalid_token", "the token is bound to a DPoP key: send it as DPoP")
        raise refused("invalid_dpop_proof", "a DPoP proof goes with Authorization: DPoP")
    if jkt is None:
        raise refused("invalid_token", "the token is not bound to a DPoP key: send it as Bearer")
    try:
        proved = await key_of_proof(
            ledger_of(auth.db),
            request.headers.getall("dpop", []),
            method=request.method,
            url=_url(auth, request),
            now=auth.clock(),
            client_id=FIRST_PARTY_CLIENT_ID,
            nonce_secret=None,
            access_token=credential.token,
        )
    except InvalidDpopProofError as exc:
        raise refused("invalid_dpop_proof", exc.description) from None
    if proved is None:
        raise refused("invalid_dpop_proof", "a DPoP token needs a DPoP proof")
    if proved != jkt:
        raise refused("invalid_dpop_proof", "the proof is not by the token's key")
    return jkt
