"""The bit list of a Token Status List (draft-ietf-oauth-status-list, section 4.1):
one bit per token, token ``i`` at bit ``i % 8`` of byte ``i // 8`` counted from the
least significant bit, the bytes ZLIB-compressed (RFC 1950) and base64url-encoded
without padding as ``lst``. 1 means revoked (the draft's status type 0x01, INVALID).

Shared by the authority (which encodes) and the verifier (which decodes); standard
library only.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable

# A decompressed list larger than this is refused: 16 Mbit of statuses is more than
# any issuer of ours publishes, and a small ``lst`` must not inflate without limit.
MAX_LIST_BYTES = 1 << 21


class BadStatusList(ValueError):
    """``lst`` is not base64url, not ZLIB, or too large once inflated."""


def pack(size: int, revoked: Iterable[int]) -> bytearray:
    """The bytes of a list of ``size`` statuses with the ``revoked`` indexes set."""
    bits = bytearray((size + 7) // 8)
    for idx in revoked:
        if 0 <= idx < size:
            bits[idx >> 3] |= 1 << (idx & 7)
    return bits


def encode(bits: bytes | bytearray) -> str:
    """``lst``: the bytes compressed at ZLIB's best level, base64url without padding."""
    return base64.urlsafe_b64encode(zlib.compress(bytes(bits), 9)).rstrip(b"=").decode()


def decode(lst: object) -> bytes:
    """The bytes of ``lst``; ``BadStatusList`` for anything else."""
    if not isinstance(lst, str) or not lst or len(lst) > MAX_LIST_BYTES:
        raise BadStatusList("lst is not a non-empty string")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadStatusList("lst is not base64url") from exc
    inflater = zlib.decompressobj()
    try:
        bits = inflater.decompress(compressed, MAX_LIST_BYTES + 1)
    except zlib.error as exc:
        raise BadStatusList("lst is not ZLIB data") from exc
    if len(bits) > MAX_LIST_BYTES or inflater.unconsumed_tail:
        raise BadStatusList("lst inflates beyond the size limit")
    if not inflater.eof:
        raise BadStatusList("lst is truncated ZLIB data")
    return bits


def is_set(bits: bytes, idx: int) -> bool | None:
    """The status bit of ``idx``; None when the list does not reach that far."""
    byte = idx >> 3
    if idx < 0 or byte >= len(bits):
        return None
    return bool(bits[byte] >> (idx & 7) & 1)
