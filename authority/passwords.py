"""Password hashing: argon2id at OWASP's parameters, re-hashed when they change.

Hashing runs in a worker thread behind a semaphore, so a flood of logins queues
instead of allocating 19 MiB per concurrent attempt without bound.
"""

from __future__ import annotations

import asyncio
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (at least).
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_LENGTH = 8
MAX_LENGTH = 256
MAX_CONCURRENT_HASHES = 4

_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
_dummy_hash: str | None = None


def hash_password(password: str) -> str:
    with _slots:
        return HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """``(matches, needs_rehash)``. With no stored hash (unknown user), a dummy hash is
    verified anyway so that the answer takes the same time."""
    with _slots:
        try:
            HASHER.verify(stored_hash or _dummy(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, False
    if stored_hash is None:
        return False, False
    return True, HASHER.check_needs_rehash(stored_hash)


async def averify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    return await asyncio.to_thread(verify_password, stored_hash, password)


async def ahash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = HASHER.hash("dummy password for timing equalization")
    return _dummy_hash
