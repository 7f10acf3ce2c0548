"""Stored signing keys and their lifecycle (README, "Signing keys"): RFC 7638 ids,
the states, and the contract every key store keeps.

A key's state is a function of time, never a stored flag, so a crash cannot leave two
``current`` keys: among keys whose ``activate_at`` has passed the latest is
``current`` and the others are ``retired`` (since their successor's ``activate_at``);
keys still waiting are ``next``. The only stored steps are adding a key, moving a
pending key's ``activate_at`` to now, and deleting a key; a key store performs each
under its lock (``KeyStore.transaction``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

from authority.verifier.algorithms import Algorithm, algorithm_of_jwk

KID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
State = Literal["next", "current", "retired"]


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

    @property
    def algorithm(self) -> Algorithm:
        found = algorithm_of_jwk(self.public_jwk)
        if found is None:
            raise KeyStoreError(f"key {self.kid} is of no supported algorithm")
        return found


def thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK."""
    return str(JWKRegistry.import_key(dict(public_jwk)).thumbprint())


def public_jwk_members(raw: Any) -> dict[str, str]:
    """The ``kty`` and public members of a stored JWK, as strings; ValueError when it
    is not one of a supported algorithm."""
    if not isinstance(raw, dict):
        raise ValueError("public key is not an object")
    algorithm = algorithm_of_jwk(raw)
    if algorithm is None:
        raise ValueError("public key is of no supported algorithm")
    return algorithm.public_fields(raw)


def check_record(record: KeyRecord) -> None:
    """Structural checks done on every load, before any private key is touched."""
    if not KID_PATTERN.match(record.kid):
        raise KeyStoreError(f"key store holds an invalid kid {record.kid[:60]!r}")
    try:
        matches = thumbprint(record.public_jwk) == record.kid
    except (ValueError, JoseError):
        matches = False
    if algorithm_of_jwk(record.public_jwk) is None or not matches:
        raise KeyStoreError(f"key {record.kid} is corrupted: public key does not match its kid")


def checked_kid(kid: str) -> str:
    """A kid fit to name a file or a row: only ever one we computed ourselves."""
    if not KID_PATTERN.match(kid):
        raise KeyStoreError(f"invalid kid {kid[:60]!r}")
    return kid


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


class KeyTransaction(Protocol):
    async def records(self) -> list[KeyRecord]: ...
    async def add(self, record: KeyRecord) -> None: ...
    async def set_activate_at(self, kid: str, activate_at: float) -> None: ...
    async def set_private_pem(self, kid: str, private_pem: bytes) -> None:
        """Replace a key's private PEM (the same key, encrypted anew), atomically."""
        ...

    async def delete(self, kid: str) -> None: ...


class KeyStore(Protocol):
    """Both backends keep one contract (``tests/test_keystore_contract.py``): ``load``
    returns every stored key or raises ``KeyStoreError`` with one line; ``fingerprint``
    changes whenever the keys change; ``transaction`` holds the store's lock so that of
    two processes only one performs a step and the other sees its result."""

    description: str

    async def load(self) -> list[KeyRecord]: ...
    async def fingerprint(self) -> str: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[KeyTransaction]: ...
    async def check_writable(self) -> None: ...
