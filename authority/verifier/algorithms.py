"""The signing algorithms (RFC 7518 section 3): one table read by key generation, the
key store, token signing, the verifier and discovery.

An entry says everything that differs between algorithms: the JWS ``alg`` name, the
JWK key type and its public members, how to make, sign, verify and publish a key, and
which public keys are strong enough to accept from a JWKS. Adding an algorithm is one
entry here plus its tests. Only ``cryptography``: the offline verifier imports this.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["ALGORITHMS", "RS256", "Algorithm", "InvalidSignature", "algorithm_of_jwk"]


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS algorithm and the key type it signs with."""

    name: str  # the JWS "alg" (RFC 7518 section 3.1)
    kty: str  # the JWK "kty" (RFC 7518 section 6.1)
    members: tuple[str, ...]  # the base64url public JWK members (RFC 7518 section 6)
    generate: Callable[[int], Any]  # key size (bits) -> private key
    sign: Callable[[Any, bytes], bytes]  # private key, signing input -> signature
    # public key, signature, signing input; raises InvalidSignature
    verify: Callable[[Any, bytes, bytes], None]
    public_members: Callable[[Any], dict[str, str]]  # public key -> JWK members
    # decoded JWK members -> public key, or ValueError saying why it is unusable
    load_public: Callable[[Mapping[str, bytes]], Any]
    private_type: type
    public_type: type
    crv: str | None = None  # the JWK "crv" of elliptic-curve key types

    def matches(self, jwk: Mapping[str, Any]) -> bool:
        """Whether a JWK (without ``alg``) has this algorithm's key type (and curve)."""
        return jwk.get("kty") == self.kty and (self.crv is None or jwk.get("crv") == self.crv)

    def public_jwk(self, public_key: Any) -> dict[str, str]:
        """The public JWK of a key: ``kty``, ``crv`` and its members, nothing private."""
        return self.public_fields(
            {"kty": self.kty, "crv": self.crv, **self.public_members(public_key)}
        )

    def public_fields(self, jwk: Mapping[str, Any]) -> dict[str, str]:
        """The public fields of a JWK of this algorithm, in RFC 7638 member order
        (KeyError when one is missing)."""
        fields = {"kty": self.kty}
        if self.crv is not None:
            fields["crv"] = self.crv
        return fields | {name: str(jwk[name]) for name in self.members}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


# --- RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 section 3.3) ----------------------

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


def _rsa_generate(size: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def _rsa_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    return key.sign(data, _PKCS1, _SHA256)


def _rsa_verify(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> None:
    # OpenSSL also refuses a signature that is not exactly as long as the modulus
    # (RFC 8017 section 8.2.2).
    key.verify(signature, data, _PKCS1, _SHA256)


def _rsa_members(key: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {"n": _b64url(_uint_bytes(numbers.n)), "e": _b64url(_uint_bytes(numbers.e))}


def _roca_subgroups() -> tuple[tuple[int, frozenset[int]], ...]:
    """For each small prime p, the powers of 65537 mod p: the moduli of keys made by the
    Infineon library (ROCA, CVE-2017-15361) lie in these subgroups for every p."""
    primes = [p for p in range(3, 168) if all(p % d for d in range(2, p))]
    groups = []
    for p in primes:
        powers, x = set(), 1
        while (x := x * 65537 % p) not in powers:
            powers.add(x)
        groups.append((p, frozenset(powers)))
    return tuple(groups)


_ROCA = _roca_subgroups()


def roca_vulnerable(n: int) -> bool:
    return all(n % p in powers for p, powers in _ROCA)


def _rsa_load(members: Mapping[str, bytes]) -> rsa.RSAPublicKey:
    """Refused: moduli under 2048 bits or over 8192, moduli vulnerable to ROCA, and
    exponents that are even, below 3 or above 2**32."""
    n, e = int.from_bytes(members["n"], "big"), int.from_bytes(members["e"], "big")
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        raise ValueError(f"modulus of {n.bit_length()} bits")
    if e < 3 or e % 2 == 0 or e > 2**32:
        raise ValueError("unsafe public exponent")
    if roca_vulnerable(n):
        raise ValueError("modulus is vulnerable to ROCA (CVE-2017-15361)")
    return rsa.RSAPublicNumbers(e, n).public_key()


RS256 = Algorithm(
    name="RS256",
    kty="RSA",
    members=("n", "e"),
    generate=_rsa_generate,
    sign=_rsa_sign,
    verify=_rsa_verify,
    public_members=_rsa_members,
    load_public=_rsa_load,
    private_type=rsa.RSAPrivateKey,
    public_type=rsa.RSAPublicKey,
)

ALGORITHMS: dict[str, Algorithm] = {alg.name: alg for alg in (RS256,)}


def algorithm_of_jwk(jwk: Mapping[str, Any]) -> Algorithm | None:
    """The algorithm a JWK is for: its ``alg`` when given, else the only one of its
    ``kty``; None when no registered algorithm fits."""
    alg = jwk.get("alg")
    if alg is not None:
        found = ALGORITHMS.get(alg) if isinstance(alg, str) else None
        return found if found is not None and found.matches(jwk) else None
    candidates = [a for a in ALGORITHMS.values() if a.matches(jwk)]
    return candidates[0] if len(candidates) == 1 else None


def algorithm_of_key(private_key: object) -> Algorithm | None:
    """The algorithm that signs with this private key."""
    for algorithm in ALGORITHMS.values():
        if isinstance(private_key, algorithm.private_type):
            return algorithm
    return None
