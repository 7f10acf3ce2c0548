"""The offline verifier (docs/verifier.md): access tokens of the JWT profile of RFC 9068,
checked against the issuer's published keys without a call per token.

    verifier = Verifier("https://auth.example.com", "api://orders")
    claims = verifier.verify(token)          # or: await verifier.averify(token)

Two visible steps, as in RFC 7515 section 5.2 then RFC 9068 section 4:

1. the JWS: size, three segments, canonical base64url, JSON objects without duplicate
   members or NaN, an ``alg`` of ``authority.verifier.algorithms``, no
   ``jwk``/``jku``/``x5u``/``x5c``/``crit``, a well-formed ``kid`` (all before any
   crypto), then the signature with the key of that ``kid``, whose algorithm must be the
   header's (``verify_signature`` stops here and returns the payload; ``jws.py``);
2. the claims: ``typ`` at+jwt (checked with the header), ``iss`` exact, ``aud``,
   ``exp``/``nbf``/``iat`` numeric with leeway, the other RFC 9068 claims present;
3. the token's status, when it has a ``status.status_list`` claim (``status.py``):
   ``revoked`` or ``status_unavailable``. A token without one is accepted as before.

Importing this loads only the standard library and ``cryptography``. Framework glue is in
``authority.verifier.asgi`` and ``authority.verifier.litestar``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from authority.verifier.cache import CachePolicy, Fetch, KeyCache, urllib_fetch
from authority.verifier.dpop import InvalidProof, ProofMemory, check_proof
from authority.verifier.jose import InvalidToken, shown
from authority.verifier.jwks import parse_jwks
from authority.verifier.jws import check_header, check_signature, parse_access_token, split
from authority.verifier.status import StatusLists

# RFC 9068 section 2.2: every access token of the profile carries these.
REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
_STRINGS = ("sub", "client_id", "jti")


class Verifier:
    """Verifies access tokens of one issuer for one audience (or any of several).

    Keys come from ``jwks`` (a fixed JWKS: a mapping or JSON text), else from
    ``jwks_url``, else from the ``jwks_uri`` of ``{issuer}/.well-known/
    oauth-authorization-server``; fetched keys are cached per ``cache``
    (``CachePolicy``). ``fetch`` replaces the HTTP client (default: ``urllib``).
    ``clock`` gives the time in seconds since the epoch. Thread-safe.

    ``check_status`` (default) looks tokens up in their token status list;
    ``status_fail_open`` accepts them (logging once per outage) when no usable list
    can be had, instead of raising ``StatusUnavailable``.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str],
        *,
        jwks_url: str | None = None,
        jwks: Mapping[str, Any] | str | bytes | None = None,
        leeway: float = 30,
        cache: CachePolicy | None = None,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        check_status: bool = True,
        status_fail_open: bool = False,
    ):
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        audiences = frozenset([audience] if isinstance(audience, str) else audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("audience must be a non-empty string or strings")
        if not (isinstance(leeway, int | float) and 0 <= leeway < math.inf):
            raise ValueError("leeway must be a non-negative number of seconds")
        if jwks is not None and jwks_url is not None:
            raise ValueError("give jwks or jwks_url, not both")
        metadata_url = None
        if jwks is None and jwks_url is None:
            metadata_url = f"{issuer.rstrip('/')}/.well-known/oauth-authorization-server"
        for url in (jwks_url, metadata_url):
            if url is not None and not url.startswith(("https://", "http://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        self.issuer = issuer
        self.audiences = audiences
        self.leeway = leeway
        self._clock = clock
        policy = cache or CachePolicy()
        self._cache = KeyCache(
            issuer=issuer,
            jwks_url=jwks_url,
            metadata_url=metadata_url,
            fixed=parse_jwks(jwks) if jwks is not None else None,
            fetch=fetch or urllib_fetch,
            clock=clock,
            policy=policy,
        )
        self._status = StatusLists(
            issuer=issuer,
            keys=self._cache,
            fetch=fetch or urllib_fetch,
            clock=clock,
            policy=policy,
            leeway=leeway,
            fail_open=status_fail_open,
        )
        self.check_status = check_status
        self._proofs = ProofMemory()

    @property
    def kids(self) -> frozenset[str]:
        """The key ids currently cached."""
        return frozenset(self._cache.snapshot.keys)

    def load_keys(self) -> None:
        """Fetch the keys now unless cached (e.g. at startup); KeysUnavailable on failure."""
        self._cache.load()

    async def aload_keys(self) -> None:
        await self._cache.aload()

    def status_list_age(self, uri: str) -> float | None:
        """Seconds since the status list at ``uri`` was last fetched or revalidated
        (None before the first fetch): a metric of how late a revocation may be seen."""
        return self._status.age(uri)

    # --- the two steps -------------------------------------------------------------

    def verify(
        self,
        token: str | bytes,
        *,
        dpop: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid access token; InvalidToken with a ``reason`` otherwise.

        A token bound to a key (``cnf.jkt``, RFC 9449 section 6) needs ``dpop``, a proof
        by that key for this request (``method`` and ``url``) and this token (``ath``),
        not seen before in this process; a proof with an unbound token is refused too."""
        parsed = parse_access_token(token)
        now = self._clock()
        snapshot = self._cache.snapshot
        key = snapshot.keys.get(parsed.kid)
        if key is None or now >= snapshot.refresh_at:
            key = self._cache.get(parsed.kid, now)
        check_signature(key, parsed.alg, parsed.signature, parsed.signing_input)
        self._check_claims(parsed.claims, now)
        self._check_binding(parsed.claims, token, dpop, method, url, now)
        if self.check_status and "status" in parsed.claims:
            self._status.check(parsed.claims, now)
        return parsed.claims

    async def averify(
        self,
        token: str | bytes,
        *,
        dpop: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """``verify`` for event loops: a key fetch, when needed, is awaited."""
        parsed = parse_access_token(token)
        now = self._clock()
        snapshot = self._cache.snapshot
        key = snapshot.keys.get(parsed.kid)
        if key is None or now >= snapshot.refresh_at:
            key = await self._cache.aget(parsed.kid, now)
        check_signature(key, parsed.alg, parsed.signature, parsed.signing_input)
        self._check_claims(parsed.claims, now)
        self._check_binding(parsed.claims, token, dpop, method, url, now)
        if self.check_status and "status" in parsed.claims:
            await self._status.acheck(parsed.claims, now)
        return parsed.claims

    def verify_signature(self, token: str | bytes) -> bytes:
        """Only the JWS (algorithm, key, signature; no ``typ``, no claims): the payload."""
        header, signing_input, payload, signature = split(token)
        alg, kid = check_header(header, typ=False)
        key = self._cache.get(kid, self._clock())
        check_signature(key, alg, signature, signing_input)
        return payload

    def _check_binding(
        self,
        claims: dict[str, Any],
        token: str | bytes,
        dpop: str | None,
        method: str | None,
        url: str | None,
        now: float,
    ) -> None:
        """RFC 9449 section 7.1: a bound token only with a proof by its key."""
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if cnf is not None and type(jkt) is not str:
            raise InvalidToken("invalid_claim", "cnf must hold a jkt")
        if jkt is None:
            if dpop is not None:
                raise InvalidToken("dpop_unbound")
            return
        if dpop is None:
            raise InvalidToken("dpop_required")
        if method is None or url is None:
            raise ValueError("verify(token, dpop=...) needs the request's method and url")
        text = token if isinstance(token, str) else token.decode("ascii")
        try:
            proof = check_proof(dpop, method=method, url=url, now=now, access_token=text)
        except InvalidProof as exc:
            raise InvalidToken("invalid_dpop_proof", exc.description) from None
        if proof.jkt != jkt:
            raise InvalidToken("invalid_dpop_proof", "the proof is not by the token's key")
        if not self._proofs.first_use(proof, now):
            raise InvalidToken("invalid_dpop_proof", "the proof was used before")

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise InvalidToken("missing_claim", f"{name} is missing")
        if claims["iss"] != self.issuer:  # signed by the issuer's key: safe to show
            raise InvalidToken(
                "wrong_issuer", f"iss is {shown(claims['iss'])}, not {self.issuer!r}"
            )
        aud = claims["aud"]
        if type(aud) is str:
            if aud not in self.audiences:
                raise InvalidToken("wrong_audience")
        elif type(aud) is list and all(type(a) is str for a in aud):
            if self.audiences.isdisjoint(aud):
                raise InvalidToken("wrong_audience")
        else:
            raise InvalidToken("invalid_claim", "aud must be a string or strings")
        for name in _STRINGS:
            if type(claims[name]) is not str:
                raise InvalidToken("invalid_claim", f"{name} must be a string")
        scope = claims.get("scope")
        if scope is not None and type(scope) is not str:
            raise InvalidToken("invalid_claim", "scope must be a string")
        if _time(claims["exp"], "exp") <= now - self.leeway:
            raise InvalidToken("expired")
        nbf = claims.get("nbf")
        if nbf is not None and _time(nbf, "nbf") > now + self.leeway:
            raise InvalidToken("not_yet_valid")
        if _time(claims["iat"], "iat") > now + self.leeway:
            raise InvalidToken("issued_in_future")


def _time(value: object, name: str) -> float:
    """A NumericDate (RFC 7519 section 2): a finite JSON number, not a boolean."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    raise InvalidToken("invalid_claim", f"{name} must be a number")
