"""The status list's bits (``authority.verifier.status_bits``) against the examples of
draft-ietf-oauth-status-list section 4.1, and the garbage a verifier must refuse."""

from __future__ import annotations

import base64
import zlib

import pytest

from authority.verifier.status_bits import (
    MAX_LIST_BYTES,
    BadStatusList,
    decode,
    encode,
    is_set,
    pack,
)

# Section 4.1: statuses 1 at indexes 0, 3, 4, 5, 7, 8, 9, 13 and 15 of 16.
DRAFT_REVOKED = [0, 3, 4, 5, 7, 8, 9, 13, 15]
DRAFT_LST = "eNrbuRgAAhcBXQ"


def test_packing_the_drafts_example_gives_its_bytes_and_its_lst() -> None:
    bits = pack(16, DRAFT_REVOKED)
    assert bytes(bits) == bytes([0xB9, 0xA3])
    assert encode(bits) == DRAFT_LST


def test_decoding_the_drafts_lst_gives_each_status_from_the_least_significant_bit() -> None:
    bits = decode(DRAFT_LST)
    assert [i for i in range(16) if is_set(bits, i)] == DRAFT_REVOKED
    assert is_set(bits, 16) is None
    assert is_set(bits, -1) is None


def test_a_large_list_round_trips_and_sets_only_its_indexes() -> None:
    revoked = {1, 1023, 1024, 500_000, 2_097_151}
    bits = decode(encode(pack(2_097_152, revoked)))
    assert {i for i in range(2_097_152) if bits[i >> 3] and is_set(bits, i)} == revoked


@pytest.mark.parametrize(
    "lst",
    [
        "",
        42,
        None,
        "not base64 !!",
        base64.urlsafe_b64encode(b"plain bytes, not zlib").decode(),
        base64.urlsafe_b64encode(zlib.compress(b"\x01" * 100)[:-4]).decode(),  # truncated
    ],
)
def test_garbage_is_refused(lst: object) -> None:
    with pytest.raises(BadStatusList):
        decode(lst)


def test_a_list_that_inflates_past_the_limit_is_refused() -> None:
    bomb = base64.urlsafe_b64encode(zlib.compress(bytes(MAX_LIST_BYTES + 1), 9)).decode()
    assert len(bomb) < 10_000
    with pytest.raises(BadStatusList, match="size limit"):
        decode(bomb.rstrip("="))
