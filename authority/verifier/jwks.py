"""Public keys from a JWKS (RFC 7517 section 5), checked strictly: only keys of a
registered algorithm (``authority.verifier.algorithms``), only for signatures, never
private key material, never a ``kid`` shared by two keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authority.verifier.algorithms import Algorithm, algorithm_of_jwk
from authority.verifier.jose import InvalidToken, b64decode, json_object, log

MAX_KEYS = 100
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verification key: its ``kid``, the one algorithm it verifies, the key itself."""

    kid: str
    algorithm: Algorithm
    key: Any


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if type(value) is not str or not value:
        raise ValueError(f"{name} is not base64url")
    try:
        return b64decode(value.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise ValueError(f"{name} is not base64url") from None


def public_key(jwk: Mapping[str, Any]) -> PublicKey:
    """The verification key of a public JWK, or ValueError saying why it is unusable.

    Refused: a key without ``alg`` (RFC 8725 section 3.1: a key is for one algorithm,
    and it says which), key types and ``alg`` values no registered algorithm has or
    that disagree (``kty`` and ``crv`` must be the ``alg``'s own), ``use`` other than
    ``sig``, ``key_ops`` without ``verify``, private key material, and whatever the
    algorithm's own checks refuse (weak RSA moduli, points off the curve).
    """
    kid = jwk.get("kid")
    if type(kid) is not str or not kid:
        raise ValueError("no kid")
    if "alg" not in jwk:
        raise ValueError("no alg")
    algorithm = algorithm_of_jwk(jwk)
    if algorithm is None:
        raise ValueError(
            f"no accepted algorithm for kty {jwk.get('kty')!r}, alg {jwk.get('alg')!r}"
        )
    if jwk.get("use", "sig") != "sig":
        raise ValueError("use is not sig")
    ops = jwk.get("key_ops", ["verify"])
    if not isinstance(ops, list) or "verify" not in ops:
        raise ValueError("key_ops lacks verify")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise ValueError("holds private key material")
    members = {name: _member(jwk, name) for name in algorithm.members}
    return PublicKey(kid, algorithm, algorithm.load_public(members))


def parse_jwks(document: Mapping[str, Any] | str | bytes) -> dict[str, PublicKey]:
    """The usable keys of a JWKS by ``kid``; ValueError if it is not a JWKS at all.

    Unusable keys are skipped (and logged); a ``kid`` given to two keys is ambiguous, so
    neither is used.
    """
    if isinstance(document, str | bytes):
        try:
            document = json_object(document.encode() if isinstance(document, str) else document)
        except InvalidToken:
            raise ValueError("JWKS is not a JSON object") from None
    entries = document.get("keys")
    if not isinstance(entries, list) or len(entries) > MAX_KEYS:
        raise ValueError("JWKS has no list of keys")
    keys: dict[str, PublicKey] = {}
    ambiguous: set[str] = set()
    for jwk in entries:
        if not isinstance(jwk, Mapping):
            continue
        try:
            key = public_key(jwk)
        except ValueError as exc:
            log.warning("JWKS key %.64r ignored: %s", jwk.get("kid"), exc)
            continue
        if key.kid in keys:
            ambiguous.add(key.kid)
        keys[key.kid] = key
    for kid in ambiguous:
        log.warning("JWKS key %.64r ignored: two keys have this kid", kid)
        del keys[kid]
    return keys
