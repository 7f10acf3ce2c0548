"""The running authority's parts, built once by ``create_app`` and shared by handlers."""

from __future__ import annotations

from dataclasses import dataclass

from authority.clients import ClientCache
from authority.db import Database
from authority.keys import Clock
from authority.rotation import KeyManager
from authority.settings import Settings
from authority.tokens import AccessTokenSigner


@dataclass(frozen=True, slots=True)
class Authority:
    settings: Settings
    db: Database
    keys: KeyManager
    signer: AccessTokenSigner
    secret_key: bytes
    clock: Clock
    clients: ClientCache
