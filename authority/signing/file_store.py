"""The file key store: one JSON file per key in ``KEYS_DIR``, mode 0600, written
atomically, steps serialized by ``flock`` on a lock file. A ``kid`` is only ever a name
we computed ourselves and checked against ``KID_PATTERN``: never a path fragment."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from authority.signing.records import (
    KID_PATTERN,
    KeyRecord,
    KeyStoreError,
    KeyTransaction,
    check_record,
    checked_kid,
    public_jwk_members,
)

LOCK_TIMEOUT = 30.0


class FileKeyStore:
    """One JSON file per key, ``<kid>.json``, mode 0600, written atomically."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.description = f"directory {directory}"

    def _check_directory(self) -> None:
        if not self.directory.exists():
            raise KeyStoreError(
                f"keys directory {self.directory} does not exist "
                "(create it with `authority keys rotate --now`)"
            )
        if not self.directory.is_dir():
            raise KeyStoreError(f"keys directory {self.directory} is not a directory")
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise KeyStoreError(f"keys directory {self.directory} is not readable")

    def _key_files(self) -> list[Path]:
        self._check_directory()
        return sorted(
            p for p in self.directory.iterdir() if p.suffix == ".json" and KID_PATTERN.match(p.stem)
        )

    def _read(self, path: Path) -> KeyRecord:
        try:
            data = json.loads(path.read_bytes())
            record = KeyRecord(
                kid=str(data["kid"]),
                size=int(data["size"]),
                created_at=float(data["created_at"]),
                activate_at=float(data["activate_at"]),
                private_pem=str(data["private_key"]).encode(),
                public_jwk=public_jwk_members(data["public_jwk"]),
            )
        except PermissionError:
            raise KeyStoreError(f"key file {path} is not readable") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise KeyStoreError(f"key file {path} is corrupted (not a key record)") from None
        if record.kid != path.stem:
            raise KeyStoreError(f"key file {path} is corrupted: it holds key {record.kid[:60]!r}")
        check_record(record)
        return record

    async def load(self) -> list[KeyRecord]:
        return await asyncio.to_thread(self._load)

    def _load(self) -> list[KeyRecord]:
        # A listed file gone by the time it is read was deleted by a concurrent step.
        # Skipping it could hide the current key and make a retired one look current,
        # so take the whole snapshot again instead.
        for _ in range(10):
            try:
                return [self._read(path) for path in self._key_files()]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise KeyStoreError(
                    f"cannot read keys in {self.directory}: {exc.strerror}"
                ) from None
        raise KeyStoreError(f"keys in {self.directory} keep changing while being read")

    async def fingerprint(self) -> str:
        def stat_all() -> str:
            digest = hashlib.sha256()
            for path in self._key_files():
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    digest.update(
                        f"{path.name}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino};".encode()
                    )
            return digest.hexdigest()

        return await asyncio.to_thread(stat_all)

    async def check_writable(self) -> None:
        self._check_directory()
        if not os.access(self.directory, os.W_OK):
            raise KeyStoreError(f"keys directory {self.directory} is not writable")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KeyTransaction]:
        await self.check_writable()
        try:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KeyStoreError(
                f"cannot open lock file in {self.directory}: {exc.strerror}"
            ) from None
        try:
            await _flock(fd, self.directory)
            self._remove_stale_temp_files()
            yield _FileTransaction(self)
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _remove_stale_temp_files(self) -> None:
        for path in self.directory.glob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                path.unlink()

    def write(self, record: KeyRecord) -> None:
        """Temp file, fsync, rename, fsync the directory: a crash leaves old or new."""
        kid = checked_kid(record.kid)
        data = json.dumps(
            {
                "kid": kid,
                "size": record.size,
                "created_at": record.created_at,
                "activate_at": record.activate_at,
                "public_jwk": record.public_jwk,
                "private_key": record.private_pem.decode(),
            },
            indent=2,
        ).encode()
        temp = self.directory / f".{kid}.json.tmp-{secrets.token_hex(4)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # os.write may write less than asked (a nearly full disk) without error:
                # write the rest, so that a full disk fails here, before the rename.
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.directory / f"{kid}.json")
            self._fsync_directory()
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise KeyStoreError(_os_problem(exc, self.directory)) from None

    def remove(self, kid: str) -> None:
        try:
            (self.directory / f"{checked_kid(kid)}.json").unlink(missing_ok=True)
            self._fsync_directory()
        except OSError as exc:
            raise KeyStoreError(_os_problem(exc, self.directory)) from None

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _os_problem(exc: OSError, directory: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left to write keys in {directory}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"keys directory {directory} is not writable"
    return f"cannot write keys in {directory}: {exc.strerror}"


async def _flock(fd: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_TIMEOUT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if loop.time() > deadline:
                raise KeyStoreError(f"key store {directory} is locked by another process") from None
            await asyncio.sleep(0.02)


class _FileTransaction:
    def __init__(self, store: FileKeyStore):
        self.store = store

    async def records(self) -> list[KeyRecord]:
        return await self.store.load()

    async def add(self, record: KeyRecord) -> None:
        await asyncio.to_thread(self.store.write, record)

    async def set_activate_at(self, kid: str, activate_at: float) -> None:
        record = await asyncio.to_thread(
            self.store._read, self.store.directory / f"{checked_kid(kid)}.json"
        )
        await asyncio.to_thread(self.store.write, _with_activate_at(record, activate_at))

    async def set_private_pem(self, kid: str, private_pem: bytes) -> None:
        record = await asyncio.to_thread(
            self.store._read, self.store.directory / f"{checked_kid(kid)}.json"
        )
        await asyncio.to_thread(
            self.store.write, dataclasses.replace(record, private_pem=private_pem)
        )

    async def delete(self, kid: str) -> None:
        await asyncio.to_thread(self.store.remove, kid)


def _with_activate_at(record: KeyRecord, activate_at: float) -> KeyRecord:
    return KeyRecord(
        record.kid,
        record.size,
        record.created_at,
        activate_at,
        record.private_pem,
        record.public_jwk,
    )
