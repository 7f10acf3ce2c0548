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
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "ALGORITHMS",
    "ES256",
    "RS256",
    "Algorithm",
    "EdDSA",
    "InvalidSignature",
    "algorithm_of_jwk",
]


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
    bits: int | None = None  # the fixed key size of curve algorithms (RSA: chosen)
    # Whether a private key of ``private_type`` is of this algorithm (its curve, say)
    fits: Callable[[Any], bool] = lambda _key: True

    def owns(self, private_key: object) -> bool:
        """Whether this algorithm signs with ``private_key``."""
        return isinstance(private_key, self.private_type) and self.fits(private_key)

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


# --- ES256: ECDSA on P-256 with SHA-256 (RFC 7518 section 3.4) -------------------------

_P256 = ec.SECP256R1()
_ECDSA = ec.ECDSA(_SHA256)
_P256_BYTES = 32


def _p256_generate(_size: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(_P256)


def _es256_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """RFC 7518 section 3.4: the signature is R || S, each 32 bytes big-endian, not
    the DER ``cryptography`` gives."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA))
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def _es256_verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    """Only the 64-byte R || S form: a DER signature (70 to 72 bytes) is refused, so
    a signature has exactly one encoding. OpenSSL refuses R or S of 0 or at least
    the group order."""
    if len(signature) != 2 * _P256_BYTES:
        raise InvalidSignature
    r = int.from_bytes(signature[:_P256_BYTES], "big")
    s = int.from_bytes(signature[_P256_BYTES:], "big")
    key.verify(encode_dss_signature(r, s), data, _ECDSA)


def _p256_members(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "x": _b64url(numbers.x.to_bytes(_P256_BYTES, "big")),
        "y": _b64url(numbers.y.to_bytes(_P256_BYTES, "big")),
    }


def _p256_load(members: Mapping[str, bytes]) -> ec.EllipticCurvePublicKey:
    """RFC 7518 section 6.2.1: coordinates of the full 32 bytes; the point must lie on
    the curve (``cryptography`` checks it), so an invalid-curve point is refused."""
    if any(len(members[name]) != _P256_BYTES for name in ("x", "y")):
        raise ValueError("P-256 coordinates must be 32 bytes")
    x, y = (int.from_bytes(members[name], "big") for name in ("x", "y"))
    return ec.EllipticCurvePublicNumbers(x, y, _P256).public_key()


def _is_p256(key: ec.EllipticCurvePrivateKey) -> bool:
    return isinstance(key.curve, ec.SECP256R1)


ES256 = Algorithm(
    name="ES256",
    kty="EC",
    crv="P-256",
    bits=256,
    members=("x", "y"),
    generate=_p256_generate,
    sign=_es256_sign,
    verify=_es256_verify,
    public_members=_p256_members,
    load_public=_p256_load,
    private_type=ec.EllipticCurvePrivateKey,
    public_type=ec.EllipticCurvePublicKey,
    fits=_is_p256,
)


# --- EdDSA: Ed25519 (RFC 8037 section 3.1) --------------------------------------------

_ED25519_BYTES = 32


def _ed25519_generate(_size: int) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def _ed25519_sign(key: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def _ed25519_verify(key: ed25519.Ed25519PublicKey, signature: bytes, data: bytes) -> None:
    if len(signature) != 2 * _ED25519_BYTES:
        raise InvalidSignature
    key.verify(signature, data)


def _ed25519_members(key: ed25519.Ed25519PublicKey) -> dict[str, str]:
    return {"x": _b64url(key.public_bytes_raw())}


def _ed25519_load(members: Mapping[str, bytes]) -> ed25519.Ed25519PublicKey:
    if len(members["x"]) != _ED25519_BYTES:
        raise ValueError("Ed25519 public key must be 32 bytes")
    return ed25519.Ed25519PublicKey.from_public_bytes(members["x"])


EdDSA = Algorithm(
    name="EdDSA",
    kty="OKP",
    crv="Ed25519",
    bits=256,
    members=("x",),
    generate=_ed25519_generate,
    sign=_ed25519_sign,
    verify=_ed25519_verify,
    public_members=_ed25519_members,
    load_public=_ed25519_load,
    private_type=ed25519.Ed25519PrivateKey,
    public_type=ed25519.Ed25519PublicKey,
)

ALGORITHMS: dict[str, Algorithm] = {alg.name: alg for alg in (RS256, ES256, EdDSA)}


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
        if algorithm.owns(private_key):
            return algorithm
    return None
