"""Key ids are RFC 7638 thumbprints; private keys are encrypted at rest."""

from __future__ import annotations

import pytest

from authority.signing.keys import decrypt, generate
from authority.signing.records import KeyStoreError, thumbprint

# RFC 7638 section 3.1: the example key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
    "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTW"
    "hAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_matches_rfc7638_known_answer() -> None:
    assert thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_generated_key_id_is_the_thumbprint_of_its_public_key() -> None:
    record = generate(2048, None, activate_at=1.0, now=1.0)
    assert record.kid == thumbprint(record.public_jwk)
    assert len(record.kid) == 43
    assert set(record.public_jwk) == {"kty", "n", "e"}


@pytest.mark.parametrize("size", [2048, 3072])
def test_key_size_is_honoured(size: int) -> None:
    record = generate(size, None, 1.0, 1.0)
    assert decrypt(record, None).key_size == size


def test_private_key_is_encrypted_with_the_passphrase() -> None:
    record = generate(2048, "correct horse", 1.0, 1.0)
    assert record.encrypted
    assert b"PRIVATE KEY" in record.private_pem
    assert b"BEGIN PRIVATE KEY" not in record.private_pem
    assert decrypt(record, "correct horse").key_size == 2048


def test_wrong_passphrase_is_one_clear_error() -> None:
    record = generate(2048, "correct horse", 1.0, 1.0)
    with pytest.raises(KeyStoreError, match="wrong AUTHORITY_KEY_PASSPHRASE"):
        decrypt(record, "battery staple")


def test_missing_passphrase_for_encrypted_key_is_one_clear_error() -> None:
    record = generate(2048, "correct horse", 1.0, 1.0)
    with pytest.raises(KeyStoreError, match="AUTHORITY_KEY_PASSPHRASE is not set"):
        decrypt(record, None)


def test_key_whose_private_part_does_not_match_its_kid_is_refused() -> None:
    a = generate(2048, None, 1.0, 1.0)
    b = generate(2048, None, 1.0, 1.0)
    swapped = type(a)(a.kid, a.size, a.created_at, a.activate_at, b.private_pem, a.public_jwk)
    with pytest.raises(KeyStoreError, match="thumbprint does not match"):
        decrypt(swapped, None)
