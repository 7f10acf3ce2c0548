"""Key material: making a key (any algorithm of ``authority.verifier.algorithms``),
opening a stored one, and the key ring the running service signs and publishes with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization

from authority.settings import Settings
from authority.signing.records import KeyRecord, KeyStoreError, sort_key, thumbprint
from authority.signing.signer import SigningKey
from authority.verifier.algorithms import ALGORITHMS, RS256, Algorithm
from authority.verifier.jwks import PublicKey


def key_algorithm(settings: Settings) -> Algorithm:
    """The algorithm of new keys: ``KEY_ALGORITHM``'s entry of the algorithms table."""
    return ALGORITHMS[settings.key_algorithm]


def generate(
    size: int,
    passphrase: str | None,
    activate_at: float,
    now: float,
    algorithm: Algorithm = RS256,
) -> KeyRecord:
    private_key = algorithm.generate(size)
    pem = private_pem(private_key, passphrase)
    jwk = algorithm.public_jwk(private_key.public_key())
    return KeyRecord(
        kid=thumbprint(jwk),
        size=algorithm.bits or size,
        created_at=now,
        activate_at=activate_at,
        private_pem=pem,
        public_jwk=jwk,
    )


def private_pem(private_key: Any, passphrase: str | None) -> bytes:
    """How a private key is stored: PKCS#8 PEM, encrypted under ``passphrase`` if any."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    return bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
    )


def decrypt(record: KeyRecord, passphrase: str | None) -> Any:
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
    algorithm = record.algorithm
    if not algorithm.owns(key):
        raise KeyStoreError(f"key {record.kid} is not a key of {algorithm.name}")
    if thumbprint(algorithm.public_jwk(key.public_key())) != record.kid:
        raise KeyStoreError(f"key {record.kid} is corrupted: its thumbprint does not match its kid")
    return key


def prove_passphrase(
    records: Iterable[KeyRecord], passphrase: str | None, proven: set[tuple[str, bytes]]
) -> None:
    """Raise ``KeyStoreError`` unless ``passphrase`` opens every stored private key.
    Every step that writes to the store proves it first: a key written under another
    passphrase than the others' would leave a store that no passphrase loads whole.
    ``proven`` holds the (kid, PEM) pairs already opened, and gains those opened now."""
    for record in records:
        if (record.kid, record.private_pem) in proven:
            continue
        try:
            decrypt(record, passphrase)
        except KeyStoreError as exc:
            if record.encrypted and passphrase:
                raise KeyStoreError(
                    f"AUTHORITY_KEY_PASSPHRASE does not open the stored key {record.kid}: "
                    "nothing was changed (give the passphrase the keys are encrypted with)"
                ) from None
            raise KeyStoreError(f"{exc}: nothing was changed") from None
        proven.add((record.kid, record.private_pem))


def refuse_mixed_store(records: Iterable[KeyRecord], passphrase: str | None) -> None:
    """Before a new key is written: with ``KEY_PASSPHRASE`` set, every stored key must
    be encrypted too. Else the new key would need the passphrase and the old ones not,
    and a hurried ``AUTHORITY_KEY_PASSPHRASE=…`` on one command would leave a store
    that only loads with it; ``keys encrypt`` is how a store starts being encrypted."""
    if not passphrase:
        return  # without it, the new key is plain and prove_passphrase opens the rest
    plain = sorted(r.kid for r in records if not r.encrypted)
    if plain:
        raise KeyStoreError(
            f"key {plain[0]} is stored unencrypted but AUTHORITY_KEY_PASSPHRASE is set: "
            "nothing was changed (run `authority keys encrypt` first to encrypt every "
            "key, or unset AUTHORITY_KEY_PASSPHRASE)"
        )


def refuse_other_pending(pending: Sequence[KeyRecord], algorithm: Algorithm | None) -> None:
    """A rotation to ``algorithm`` while a ``next`` key of another waits would either
    do nothing or promote that other key: neither is what was asked, so say so."""
    if pending and algorithm is not None and pending[0].algorithm != algorithm:
        raise KeyStoreError(
            f"a next {pending[0].algorithm.name} key {pending[0].kid} is pending: nothing "
            f"was changed (let it become current, or revoke it, before a {algorithm.name} key)"
        )


def refuse_plain_keys(records: list[KeyRecord], where: str) -> None:
    """Production keeps every private key encrypted at rest (README, "Signing keys"):
    a key made without ``KEY_PASSPHRASE`` (in development, say) is refused, not used."""
    plain = sorted(r.kid for r in records if not r.encrypted)
    if plain:
        more = f" and {len(plain) - 1} more" if len(plain) > 1 else ""
        raise KeyStoreError(
            f"key {plain[0]}{more} in {where} is not encrypted, which production refuses "
            "(run `authority keys encrypt` with AUTHORITY_KEY_PASSPHRASE set)"
        )


class KeyRing:
    """An immutable snapshot of the store: the signing keys and the pre-encoded JWKS."""

    def __init__(self, records: Sequence[KeyRecord], private_keys: dict[str, Any]):
        self.records = tuple(sorted(records, key=sort_key))
        self._public = {
            r.kid: PublicKey(r.kid, r.algorithm, private_keys[r.kid].public_key())
            for r in self.records
        }
        self._signing = tuple(
            SigningKey(r.kid, r.algorithm, private_keys[r.kid], r.activate_at) for r in self.records
        )
        keys = [
            {"kty": r.public_jwk["kty"], "use": "sig", "alg": r.algorithm.name, "kid": r.kid}
            | r.algorithm.public_fields(r.public_jwk)
            for r in self.records
        ]
        self.jwks = json.dumps({"keys": keys}, separators=(",", ":")).encode()
        used = {r.algorithm.name for r in self.records}
        # The algorithms of the published keys, in the table's order: what tokens,
        # status lists and ID tokens may be signed with now (README, "Signing algorithms").
        self.algorithms = [name for name in ALGORITHMS if name in used]
        self.etag = '"' + hashlib.sha256(self.jwks).hexdigest()[:32] + '"'

    def public_key(self, kid: str) -> PublicKey | None:
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
