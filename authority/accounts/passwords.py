"""Password hashing: argon2id at OWASP's parameters, re-hashed when they change.

A password is NFKC-normalised before it is hashed (NIST SP 800-63B section 5.1.1.2), so
the same password typed on another keyboard or input method still matches. Hashes made
before that, from the password as typed, still verify: when the normalised form does
not match and differs from the typed one, the typed one is tried, and a match asks for
a re-hash (``needs_rehash``), which stores the normalised form. Unknown users cost the
same two checks.

Hashing runs on a small pool of worker threads (one 19 MiB argon2 buffer each), and at
most ``MAX_WAITING`` hashes may queue for them: past that, a login flood is told to
come back later (``HashingBusy``) instead of piling up requests without bound.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 (at least).
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_LENGTH = 8
MAX_LENGTH = 256
MAX_CONCURRENT_HASHES = 4
MAX_WAITING = 64

T = TypeVar("T")
_pool = ThreadPoolExecutor(MAX_CONCURRENT_HASHES, thread_name_prefix="argon2")
_pending = 0
_pending_lock = threading.Lock()
_dummy_hash: str | None = None


class HashingBusy(RuntimeError):
    """Too many password hashes are already waiting; retry shortly."""


def normalize(password: str) -> str:
    """The form of a password that is hashed and judged."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return HASHER.hash(normalize(password))


def verify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    """``(matches, needs_rehash)``. With no stored hash (unknown user), a dummy hash is
    verified anyway so that the answer takes the same time."""
    normalized = normalize(password)
    if _matches(stored_hash, normalized):
        return stored_hash is not None, HASHER.check_needs_rehash(stored_hash or _dummy())
    # A hash from before normalisation: the password as it was typed.
    if normalized != password and _matches(stored_hash, password):
        return stored_hash is not None, True
    return False, False


def _matches(stored_hash: str | None, password: str) -> bool:
    try:
        return bool(HASHER.verify(stored_hash or _dummy(), password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def averify_password(stored_hash: str | None, password: str) -> tuple[bool, bool]:
    return await _bounded(lambda: verify_password(stored_hash, password))


async def ahash_password(password: str) -> str:
    return await _bounded(lambda: hash_password(password))


async def _bounded(work: Callable[[], T]) -> T:
    global _pending
    with _pending_lock:
        if _pending >= MAX_CONCURRENT_HASHES + MAX_WAITING:
            raise HashingBusy("too many logins in progress; retry shortly")
        _pending += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, work)
    finally:
        with _pending_lock:
            _pending -= 1


def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = HASHER.hash("dummy password for timing equalization")
    return _dummy_hash
