"""Token randomness from a pool (``authority.randomness``): each byte is handed out
once, tokens have the shape ``secrets`` gives, and a forked child never reuses its
parent's pool."""

from __future__ import annotations

import os
import re

import pytest

from authority import randomness
from authority.sessions.refresh_tokens import REFRESH_TOKEN, new_refresh_token


def test_tokens_are_unique_and_shaped_like_secrets_tokens() -> None:
    tokens = [randomness.token_urlsafe(32) for _ in range(5000)]  # about 40 refills
    assert len(set(tokens)) == len(tokens)
    assert all(REFRESH_TOKEN.fullmatch(token) for token in tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", randomness.token_urlsafe(16)) for _ in range(99))
    assert REFRESH_TOKEN.fullmatch(new_refresh_token()[0])


def test_consecutive_draws_never_share_bytes() -> None:
    """Draws of one page, taken in small pieces, are the page's bytes once each."""
    randomness._forget()
    pieces = [randomness.token_bytes(16) for _ in range(randomness.PAGE // 16)]
    page = b"".join(pieces)
    assert len(set(pieces)) == len(pieces)
    # the next draw comes from a new page, not from what was handed out
    assert randomness.token_bytes(16) not in {page[i : i + 16] for i in range(len(page) - 15)}
    assert len(randomness.token_bytes(randomness.PAGE + 1)) == randomness.PAGE + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    randomness._forget()
    randomness.token_bytes(16)  # the parent's pool now holds unused bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes, to the parent
        try:
            os.write(write, randomness.token_bytes(64))
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 64
    assert randomness.token_bytes(64) != child  # the parent's next bytes differ
