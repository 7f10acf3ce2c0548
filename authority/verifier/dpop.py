"""DPoP proofs (RFC 9449 section 4.3): the checks a DPoP proof JWT must pass, shared by
the authority's token endpoint and by resource servers.

``check_proof`` does every check that needs no storage: one compact JWS, ``typ``
``dpop+jwt``, an asymmetric ``alg`` of ``authority.verifier.algorithms`` whose key type
(and curve) is the ``jwk`` header's, a public ``jwk`` only, the signature by that key,
``htm``, ``htu`` (ignoring query and fragment), ``iat`` within a short window, a
``jti``, and, when asked, ``nonce`` and ``ath`` (the access token's hash). Whether a
``jti`` was seen before is the caller's to remember (``ProofMemory`` per process, a
database table at the authority), for as long as the proof window. Only ``cryptography``
and the standard library.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authority.verifier.algorithms import ALGORITHMS, Algorithm, InvalidSignature
from authority.verifier.jose import InvalidToken, b64decode, json_object, split

PROOF_TYPE = "dpop+jwt"
# How old a proof may be, and how far in the future its iat may lie (clock skew).
MAX_AGE = 300
FUTURE_LEEWAY = 30
MAX_JTI = 256
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Public keys of proofs loaded lately, by algorithm and encoded members: (key, thumbprint).
MAX_KEYS = 1024
_KEYS: dict[tuple[str, ...], tuple[Any, str]] = {}


class InvalidProof(Exception):
    """A DPoP proof was refused: ``error`` is the RFC 9449 error code
    (``invalid_dpop_proof``, or ``use_dpop_nonce`` when a fresh nonce is needed)."""

    error = "invalid_dpop_proof"

    def __init__(self, description: str):
        self.description = description
        super().__init__(description)


class UseNonce(InvalidProof):
    """RFC 9449 section 8: the proof lacks the server's current nonce."""

    error = "use_dpop_nonce"


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed ``check_proof``: its key's RFC 7638 thumbprint, its jti and
    the nonce it carries (None without a string one)."""

    jkt: str
    jti: str
    iat: float
    nonce: str | None = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(algorithm: Algorithm, jwk: Mapping[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    members = algorithm.public_fields(jwk)
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(access_token: str) -> str:
    """RFC 9449 section 4.2: the ``ath`` of a proof sent with ``access_token``."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


@functools.lru_cache(maxsize=256)  # the endpoint's own URL and its clients' few htu
def normalized_uri(url: str) -> str | None:
    """The URI without query and fragment, scheme and host lowercased, default port
    dropped (RFC 3986 section 6.2.2 and 6.2.3); None when it is not an http(s) URI."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _public_key(algorithm: Algorithm, jwk: object) -> tuple[Any, str]:
    """The verification key of the ``jwk`` header and its thumbprint."""
    if not isinstance(jwk, dict):
        raise InvalidProof("the jwk header is not a JSON object")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise InvalidProof("the jwk header holds private key material")
    if not algorithm.matches(jwk) or jwk.get("alg", algorithm.name) != algorithm.name:
        raise InvalidProof(f"the jwk header is not a key of {algorithm.name}")
    encoded: list[str] = []
    for name in algorithm.members:
        value = jwk.get(name)
        if type(value) is not str or not value:
            raise InvalidProof("the jwk header is not a usable public key")
        encoded.append(value)
    # A client proves with one key for many requests: loading a point (and checking it
    # is on the curve) cost as much as the rest of the checks but the signature's.
    cache_key = (algorithm.name, *encoded)
    known = _KEYS.get(cache_key)
    if known is not None:
        return known
    try:
        members = {
            name: b64decode(value.encode("ascii"))
            for name, value in zip(algorithm.members, encoded, strict=True)
        }
        key = algorithm.load_public(members)
    except (ValueError, InvalidToken, UnicodeEncodeError):
        raise InvalidProof("the jwk header is not a usable public key") from None
    loaded = key, thumbprint(algorithm, jwk)
    if len(_KEYS) >= MAX_KEYS:
        _KEYS.clear()
    _KEYS[cache_key] = loaded
    return loaded


def check_proof(
    proof: object,
    *,
    method: str,
    url: str,
    now: float,
    access_token: str | None = None,
    nonce: str | None = None,
    algorithms: Mapping[str, Algorithm] = ALGORITHMS,
) -> Proof:
    """Every storage-free check of RFC 9449 section 4.3, or ``InvalidProof`` saying which
    failed. ``access_token``: the token the proof comes with (its ``ath`` must match);
    ``nonce``: the server's nonce the proof must carry (``UseNonce`` otherwise)."""
    try:
        header, signing_input, payload, signature = split(proof)
        claims = json_object(payload)
    except InvalidToken as exc:
        raise InvalidProof(f"the proof is not a JWS: {exc.description}") from None
    if header.get("typ") != PROOF_TYPE:
        raise InvalidProof("typ must be dpop+jwt")
    alg = header.get("alg")
    algorithm = algorithms.get(alg) if type(alg) is str else None
    if algorithm is None:
        raise InvalidProof("alg is not one of dpop_signing_alg_values_supported")
    if "crit" in header:
        raise InvalidProof("crit names an unsupported extension")
    key, jkt = _public_key(algorithm, header.get("jwk"))
    try:
        algorithm.verify(key, signature, signing_input)
    except InvalidSignature:
        raise InvalidProof("the proof's signature does not verify") from None
    _check_claims(claims, method=method, url=url, now=now)
    if access_token is not None:
        ath = claims.get("ath")
        if type(ath) is not str or not hmac.compare_digest(ath, access_token_hash(access_token)):
            raise InvalidProof("ath is not the hash of the access token")
    if nonce is not None:
        sent = claims.get("nonce")
        if type(sent) is not str or not hmac.compare_digest(sent, nonce):
            raise UseNonce("the proof must carry the server's DPoP-Nonce")
    sent_nonce = claims.get("nonce")
    return Proof(
        jkt, claims["jti"], float(claims["iat"]), sent_nonce if type(sent_nonce) is str else None
    )


def _check_claims(claims: dict[str, Any], *, method: str, url: str, now: float) -> None:
    jti = claims.get("jti")
    if type(jti) is not str or not 0 < len(jti) <= MAX_JTI:
        raise InvalidProof("jti is missing or too long")
    if claims.get("htm") != method:
        raise InvalidProof("htm is not the request's method")
    htu = claims.get("htu")
    expected = normalized_uri(url)
    if type(htu) is not str or expected is None or normalized_uri(htu) != expected:
        raise InvalidProof("htu is not the request's URI")
    iat = claims.get("iat")
    if not (type(iat) is int or (type(iat) is float and math.isfinite(iat))):
        raise InvalidProof("iat must be a number")
    if not now - MAX_AGE <= iat <= now + FUTURE_LEEWAY:
        raise InvalidProof("iat is outside the accepted window")


class ProofMemory:
    """The ``jti``s of the proofs accepted in this process during the proof window
    (RFC 9449 section 11.1): ``first_use`` says whether a jti is new, and remembers it.
    Thread-safe; bounded by ``limit`` entries (a flood of fresh proofs evicts the
    oldest, which have the least time left in the window)."""

    def __init__(self, window: float = MAX_AGE + FUTURE_LEEWAY, limit: int = 100_000):
        self.window = window
        self.limit = limit
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, proof: Proof, now: float) -> bool:
        key = f"{proof.jkt}:{proof.jti}"
        with self._lock:
            if len(self._seen) >= self.limit or len(self._seen) % 1024 == 0:
                self._forget(now)
            expires = self._seen.get(key)
            if expires is not None and expires > now:
                return False
            self._seen[key] = now + self.window
            return True

    def _forget(self, now: float) -> None:
        for key in [k for k, expires in self._seen.items() if expires <= now]:
            del self._seen[key]
        while len(self._seen) >= self.limit:
            del self._seen[next(iter(self._seen))]
