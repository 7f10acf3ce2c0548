"""The key store a configuration names: ``KEYSTORE=file`` (``KEYS_DIR``) or
``KEYSTORE=database`` (shared by replicas). Both keep the ``KeyStore`` contract."""

from __future__ import annotations

from authority.settings import Settings
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.file_store import FileKeyStore
from authority.signing.records import KeyStore
from authority.storage.database import Database


def make_keystore(settings: Settings, db: Database) -> KeyStore:
    if settings.keystore == "database":
        return DatabaseKeyStore(db.engine)
    return FileKeyStore(settings.keys_dir)
