"""One table of signing algorithms feeds key generation, the key store, the key ring
and its JWKS, token signing, reading our own tokens back, and the offline verifier.

Registering an algorithm is one entry: here a test-only ES256 entry (RFC 7518 section
3.4) goes into the table, and keys of it are made, stored, published, signed with and
verified, beside RS256 keys, with no other change; PyJWT checks the result on its own.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from pathlib import Path

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import generate
from authority.signing.manager import KeyManager
from authority.signing.own_tokens import decode_own_access_token
from authority.signing.records import KeyRecord, thumbprint
from authority.signing.signer import AccessTokenSigner
from authority.verifier import InvalidToken, Verifier
from authority.verifier.algorithms import ALGORITHMS, RS256, Algorithm

ISSUER = "https://auth.example.com"
_P256 = ec.SECP256R1()
_SHA256 = hashes.SHA256()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_SHA256)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # RFC 7518 section 3.4: R || S


def _verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> None:
    if len(signature) != 64:
        raise InvalidSignature
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_SHA256))


def _members(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {"x": _b64(numbers.x.to_bytes(32, "big")), "y": _b64(numbers.y.to_bytes(32, "big"))}


def _load(members: Mapping[str, bytes]) -> ec.EllipticCurvePublicKey:
    x, y = (int.from_bytes(members[name], "big") for name in ("x", "y"))
    return ec.EllipticCurvePublicNumbers(x, y, _P256).public_key()


ES256 = Algorithm(
    name="ES256",
    kty="EC",
    crv="P-256",
    members=("x", "y"),
    generate=lambda _size: ec.generate_private_key(_P256),
    sign=_sign,
    verify=_verify,
    public_members=_members,
    load_public=_load,
    private_type=ec.EllipticCurvePrivateKey,
    public_type=ec.EllipticCurvePublicKey,
)


@pytest.fixture
def with_es256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ALGORITHMS, "ES256", ES256)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(keys_dir=tmp_path / "keys", env="test", key_passphrase="seam passphrase")


async def store_with(tmp_path: Path, *records: KeyRecord) -> KeyManager:
    settings = settings_for(tmp_path)
    settings.keys_dir.mkdir()
    store = FileKeyStore(settings.keys_dir)
    async with store.transaction() as tx:
        for record in records:
            await tx.add(record)
    manager = KeyManager(store, settings)
    await manager.load()
    return manager


def sign(manager: KeyManager, audience: str = "api") -> str:
    return (
        AccessTokenSigner(ISSUER, 600)
        .sign(
            manager.signing_key(),
            now=time.time(),
            sub="svc",
            client_id="svc",
            scope="read",
            audience=audience,
        )
        .token
    )


@pytest.mark.usefixtures("with_es256")
async def test_a_registered_algorithm_signs_publishes_and_verifies_beside_rs256(
    tmp_path: Path,
) -> None:
    now = time.time()
    old = generate(2048, "seam passphrase", now - 100, now - 100, algorithm=RS256)
    new = generate(0, "seam passphrase", now - 10, now - 10, algorithm=ES256)
    manager = await store_with(tmp_path, old, new)

    published = {k["kid"]: k for k in json.loads(manager.current_ring().jwks)["keys"]}
    assert published[new.kid] == {
        "kty": "EC",
        "use": "sig",
        "alg": "ES256",
        "kid": new.kid,
        "crv": "P-256",
        "x": new.public_jwk["x"],
        "y": new.public_jwk["y"],
    }
    assert thumbprint(published[new.kid]) == new.kid
    assert published[old.kid]["alg"] == "RS256"

    token = sign(manager)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    verifier = Verifier(ISSUER, "api", jwks=manager.current_ring().jwks)
    assert verifier.verify(token)["sub"] == "svc"
    assert decode_own_access_token(
        manager.current_ring(), token, issuer=ISSUER, now=time.time(), leeway=0
    )
    independent = jwt.PyJWKSet.from_json(manager.current_ring().jwks.decode())[new.kid]
    assert jwt.decode(token, independent.key, ["ES256"], audience="api")["sub"] == "svc"


@pytest.mark.usefixtures("with_es256")
async def test_a_token_whose_alg_is_not_its_keys_own_is_refused(tmp_path: Path) -> None:
    now = time.time()
    rsa_record = generate(2048, "seam passphrase", now - 100, now - 100, algorithm=RS256)
    ec_record = generate(0, "seam passphrase", now - 10, now - 10, algorithm=ES256)
    manager = await store_with(tmp_path, rsa_record, ec_record)
    token = sign(manager)
    _header, payload, signature = token.split(".")
    # The same ES256 signature presented under the RSA key's kid: refused before crypto
    # could be confused, because the header's alg is not that key's algorithm.
    swapped = _b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": rsa_record.kid}).encode())
    verifier = Verifier(ISSUER, "api", jwks=manager.current_ring().jwks)
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(f"{swapped}.{payload}.{signature}")
    assert refused.value.reason == "alg_not_allowed"


async def test_without_the_entry_such_keys_are_neither_loaded_nor_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ALGORITHMS, "ES256", ES256)
    now = time.time()
    record = generate(0, "seam passphrase", now - 10, now - 10, algorithm=ES256)
    manager = await store_with(tmp_path, record)
    jwks = manager.current_ring().jwks
    token = sign(manager)
    monkeypatch.delitem(ALGORITHMS, "ES256")
    with pytest.raises(InvalidToken) as refused:
        Verifier(ISSUER, "api", jwks=jwks).verify(token)
    assert refused.value.reason == "alg_not_allowed"
    reloaded = KeyManager(FileKeyStore(tmp_path / "keys"), settings_for(tmp_path))
    await reloaded.reload()
    assert reloaded.problem is not None
