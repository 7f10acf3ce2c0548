"""Random bytes for tokens, drawn from the operating system a page at a time.

Every token needs fresh randomness (an access token's ``jti``, a refresh token).
``os.urandom`` lets go of the GIL around its system call, and a worker's event loop
then waits for any other thread that wanted the GIL meanwhile: on SQLite, the writer
thread rotating another refresh (issue 14's profile: the new refresh token cost more
than the rest of its rotation's work on the event loop). So the bytes come from the
kernel's CSPRNG 4 KiB at a time, and each byte is handed out once. A forked child
starts with an empty pool, never with its parent's unused bytes.
"""

from __future__ import annotations

import base64
import os
import threading

PAGE = 4096

_lock = threading.Lock()
_pool = bytearray()


def token_bytes(size: int) -> bytes:
    """``size`` random bytes (``secrets.token_bytes``, from a pool)."""
    global _pool
    if size > PAGE:
        return os.urandom(size)
    with _lock:
        if len(_pool) < size:
            _pool = bytearray(os.urandom(PAGE))
        taken = bytes(_pool[-size:])
        del _pool[-size:]
    return taken


def token_urlsafe(size: int) -> str:
    """``size`` random bytes as unpadded base64url (``secrets.token_urlsafe``)."""
    return base64.urlsafe_b64encode(token_bytes(size)).rstrip(b"=").decode("ascii")


def _forget() -> None:
    global _pool, _lock
    _pool = bytearray()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget)
