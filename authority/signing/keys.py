"""Signing keys (SPEC section 4): RFC 7638 ids, the lifecycle, and the published key ring.

A key's state is a function of time, never a stored flag, so a crash cannot leave two
``current`` keys: among keys whose ``activate_at`` has passed the latest is
``current`` and the others are ``retired`` (since their successor's ``activate_at``);
keys still waiting are ``next``. The only stored steps are adding a key, moving a
pending key's ``activate_at`` to now, and deleting a key; the key store performs each
under its lock (``keystore.py``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
State = Literal["next", "current", "retired"]
Clock = Callable[[], float]


class KeyStoreError(RuntimeError):
    """The key store cannot be used; the message is one line for an operator."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key: the private key is PKCS#8 PEM, encrypted when a passphrase is set."""

    kid: str
    size: int
    created_at: float
    activate_at: float
    private_pem: bytes = field(repr=False)
    public_jwk: dict[str, str]

    @property
    def encrypted(self) -> bool:
        return self.private_pem.startswith(b"-----BEGIN ENCRYPTED")


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA public JWK."""
    return str(
        RSAKey.import_key({"kty": "RSA", "n": public_jwk["n"], "e": public_jwk["e"]}).thumbprint()
    )


def public_jwk_of(private_key: rsa.RSAPrivateKey) -> dict[str, str]:
    exported = RSAKey.import_key(private_key).as_dict(private=False)
    return {"kty": "RSA", "n": str(exported["n"]), "e": str(exported["e"])}


def generate(size: int, passphrase: str | None, activate_at: float, now: float) -> KeyRecord:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=size)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    jwk = public_jwk_of(private_key)
    return KeyRecord(
        kid=thumbprint(jwk),
        size=size,
        created_at=now,
        activate_at=activate_at,
        private_pem=pem,
        public_jwk=jwk,
    )


def decrypt(record: KeyRecord, passphrase: str | None) -> rsa.RSAPrivateKey:
    """Load a record's private key and check that it matches the record's ``kid``."""
    if record.encrypted and not passphrase:
        raise KeyStoreError(
            f"key {record.kid} is encrypted but AUTHORITY_KEY_PASSPHRASE is not set"
        )
    password = passphrase.encode() if record.encrypted and passphrase else None
    try:
        key = serialization.load_pem_private_key(record.private_pem, password)
    except ValueError as exc:
        if record.encrypted:
            raise KeyStoreError(
                f"cannot decrypt key {record.kid}: wrong AUTHORITY_KEY_PASSPHRASE"
            ) from None
        raise KeyStoreError(f"key {record.kid} is corrupted: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyStoreError(f"key {record.kid} is not an RSA key")
    if thumbprint(public_jwk_of(key)) != record.kid:
        raise KeyStoreError(f"key {record.kid} is corrupted: its thumbprint does not match its kid")
    return key


def check_record(record: KeyRecord) -> None:
    """Structural checks done on every load, before any private key is touched."""
    if not KID_PATTERN.match(record.kid):
        raise KeyStoreError(f"key store holds an invalid kid {record.kid[:60]!r}")
    if record.public_jwk.get("kty") != "RSA" or thumbprint(record.public_jwk) != record.kid:
        raise KeyStoreError(f"key {record.kid} is corrupted: public key does not match its kid")


def sort_key(record: KeyRecord) -> tuple[float, float, str]:
    return (record.activate_at, record.created_at, record.kid)


@dataclass(frozen=True, slots=True)
class KeyStatus:
    record: KeyRecord
    state: State
    retired_at: float | None
    remove_after: float | None


def lifecycle(records: Iterable[KeyRecord], now: float, retired_lifetime: float) -> list[KeyStatus]:
    """Every key with its state at ``now``, oldest first."""
    ordered = sorted(records, key=sort_key)
    active = [r for r in ordered if r.activate_at <= now]
    statuses = []
    for record in ordered:
        if record.activate_at > now:
            statuses.append(KeyStatus(record, "next", None, None))
        elif record is active[-1]:
            statuses.append(KeyStatus(record, "current", None, None))
        else:
            successor = active[active.index(record) + 1]
            statuses.append(
                KeyStatus(
                    record,
                    "retired",
                    successor.activate_at,
                    successor.activate_at + retired_lifetime,
                )
            )
    return statuses


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    activate_at: float


class KeyRing:
    """An immutable snapshot of the store: the signing keys and the pre-encoded JWKS."""

    def __init__(self, records: Sequence[KeyRecord], private_keys: dict[str, rsa.RSAPrivateKey]):
        self.records = tuple(sorted(records, key=sort_key))
        self._public = {r.kid: private_keys[r.kid].public_key() for r in self.records}
        self._signing = tuple(
            SigningKey(r.kid, private_keys[r.kid], r.activate_at) for r in self.records
        )
        keys = [
            {
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": r.kid,
                "n": r.public_jwk["n"],
                "e": r.public_jwk["e"],
            }
            for r in self.records
        ]
        self.jwks = json.dumps({"keys": keys}, separators=(",", ":")).encode()
        self.etag = '"' + hashlib.sha256(self.jwks).hexdigest()[:32] + '"'

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        """A published key by ``kid`` (a dictionary lookup: never a path, never SQL)."""
        return self._public.get(kid)

    def current(self, now: float) -> SigningKey | None:
        """The one key that signs at ``now``: the latest whose ``activate_at`` has passed."""
        for key in reversed(self._signing):
            if key.activate_at <= now:
                return key
        return None

    def __len__(self) -> int:
        return len(self.records)


def system_clock() -> float:
    return time.time()
