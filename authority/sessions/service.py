"""The running authority's parts, built once by ``create_app`` and shared by handlers."""

from __future__ import annotations

from dataclasses import dataclass

from authority.accounts.clients import ClientCache
from authority.storage.database import Database
from authority.signing.keys import Clock
from authority.signing.manager import KeyManager
from authority.settings import Settings
from authority.signing.signer import AccessTokenSigner


@dataclass(frozen=True, slots=True)
class Authority:
    settings: Settings
    db: Database
    keys: KeyManager
    signer: AccessTokenSigner
    secret_key: bytes
    clock: Clock
    clients: ClientCache
