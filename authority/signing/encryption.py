"""Encrypting stored private keys anew with the current ``KEY_PASSPHRASE`` (README,
"Signing keys"): keys made without a passphrase, and keys under an old one.

Each key is rewritten alone, in its own step under the store's lock, and atomically
(the file store's temp file and rename, one database transaction), so a crash leaves
every key either as it was or re-encrypted: the store loads with the old passphrase
for the keys not reached yet and with the new one for the others, and running the
command again finishes the job. The private key and its ``kid`` never change, so
tokens and the JWKS are not affected.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from authority.signing.keys import decrypt, private_pem
from authority.signing.records import KeyRecord, KeyStore, KeyStoreError, sort_key

Outcome = Literal["encrypted", "re-encrypted", "unchanged"]


@dataclass(frozen=True, slots=True)
class EncryptStep:
    kid: str
    outcome: Outcome


async def encrypt_keys(
    store: KeyStore,
    passphrase: str,
    old_passphrases: Sequence[str] = (),
    progress: Callable[[EncryptStep], None] | None = None,
) -> list[EncryptStep]:
    """Bring every key of ``store`` under ``passphrase``, one key per locked step.
    A key added meanwhile (a rotation) is taken too; one removed meanwhile is skipped.
    Before the first step, every key must open with ``passphrase`` or an old one:
    otherwise the keys reached first would end under a passphrase the others are not."""
    for record in await store.load():
        await asyncio.to_thread(_open_any, record, passphrase, old_passphrases)
    done: list[EncryptStep] = []
    seen: set[str] = set()
    while True:
        todo = [r.kid for r in sorted(await store.load(), key=sort_key) if r.kid not in seen]
        if not todo:
            return done
        for kid in todo:
            seen.add(kid)
            step = await _encrypt_one(store, kid, passphrase, old_passphrases)
            if step is not None:
                done.append(step)
                if progress is not None:
                    progress(step)


async def _encrypt_one(
    store: KeyStore, kid: str, passphrase: str, old_passphrases: Sequence[str]
) -> EncryptStep | None:
    async with store.transaction() as tx:
        record = next((r for r in await tx.records() if r.kid == kid), None)
        if record is None:
            return None
        outcome, pem = await asyncio.to_thread(reencrypt, record, passphrase, old_passphrases)
        if pem is not None:
            await tx.set_private_pem(kid, pem)
        return EncryptStep(kid, outcome)


def reencrypt(
    record: KeyRecord, passphrase: str, old_passphrases: Sequence[str] = ()
) -> tuple[Outcome, bytes | None]:
    """The record's private key as PKCS#8 PEM under ``passphrase``; None when it is
    already. Raises ``KeyStoreError`` (one line) when no passphrase given opens it."""
    outcome: Outcome
    if not record.encrypted:
        key, outcome = decrypt(record, None), "encrypted"
    else:
        try:
            decrypt(record, passphrase)
            return "unchanged", None
        except KeyStoreError:
            key, outcome = _open_with_old(record, old_passphrases), "re-encrypted"
    pem = private_pem(key, passphrase)
    decrypt(dataclasses.replace(record, private_pem=pem), passphrase)  # it opens again
    return outcome, pem


def _open_any(record: KeyRecord, passphrase: str, old_passphrases: Sequence[str]) -> Any:
    if not record.encrypted:
        return decrypt(record, None)
    try:
        return decrypt(record, passphrase)
    except KeyStoreError:
        return _open_with_old(record, old_passphrases)


def _open_with_old(record: KeyRecord, old_passphrases: Sequence[str]) -> Any:
    for old in old_passphrases:
        try:
            return decrypt(record, old)
        except KeyStoreError:
            continue
    given = " or the old passphrase" if old_passphrases else ""
    raise KeyStoreError(
        f"cannot decrypt key {record.kid} with AUTHORITY_KEY_PASSPHRASE{given} "
        "(give the passphrase it is encrypted with on stdin with --old-passphrase-stdin)"
    )
