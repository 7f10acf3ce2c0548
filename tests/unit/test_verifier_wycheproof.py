"""Project Wycheproof's vectors (tests/vectors/README.md).

JWS and JWK: with a verifier built from each group's public key, only a ``valid``
vector whose header ``alg`` is one the verifier accepts (RS256, ES256, EdDSA) and whose
key is a signing key of that very algorithm (``kty``, ``crv`` and ``alg`` agreeing)
passes ``verify_signature``; every other vector raises InvalidToken, and nothing raises
anything else.

P-256 (P1363, the JWS ``R||S`` form) and Ed25519 signatures: every ``valid`` one passes
the verifier's signature check (``jws.check_signature``) with the group's JWK, every
``invalid`` one is refused as ``bad_signature``."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from authority.verifier import InvalidToken, Verifier
from authority.verifier.algorithms import ALGORITHMS
from authority.verifier.jwks import public_key
from authority.verifier.jws import check_signature
from tests.helpers.processes import ROOT

# In the repository if copied there, else in the shared checkout next to it.
VECTORS = next(
    (
        p
        for p in (
            ROOT / "tests" / "vectors" / "wycheproof",
            ROOT.parent / "shared" / "vectors" / "wycheproof",
        )
        if p.is_dir()
    ),
    Path("vectors-not-found"),
)
FILES = ("json_web_signature_test.json", "json_web_key_test.json")


def vectors() -> list[Any]:
    found = []
    for name in FILES:
        document = json.loads((VECTORS / name).read_text())
        for group in document["testGroups"]:
            for test in group["tests"]:
                found.append(pytest.param(group, test, id=f"{name[:-10]}-{test['tcId']}"))
    return found


VECTOR_PARAMS = vectors() if VECTORS.is_dir() else []


def key_set(group: dict[str, Any]) -> dict[str, Any]:
    public = group.get("public")
    if public is None:
        return {"keys": []}
    return public if "keys" in public else {"keys": [public]}


def header_alg(jws: str) -> object:
    try:
        head = jws.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("alg")
    except ValueError:
        return None


# What each accepted alg needs of its key (RFC 7518 sections 6.2 and 6.3, RFC 8037).
KEY_TYPES = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}


def acceptable(group: dict[str, Any], test: dict[str, Any]) -> bool:
    keys = key_set(group)["keys"]
    alg = header_alg(test["jws"])
    return (
        test["result"] == "valid"
        and alg in KEY_TYPES
        and len(keys) == 1
        and (keys[0].get("kty"), keys[0].get("crv")) == KEY_TYPES[str(alg)]
        and keys[0].get("alg") == alg
        and keys[0].get("use", "sig") == "sig"
    )


def verifier_for(group: dict[str, Any]) -> Verifier:
    return Verifier("https://issuer.example", "api", jwks=key_set(group))


def test_the_vectors_are_there() -> None:
    assert len(VECTOR_PARAMS) == 427
    accepted = [p for p in VECTOR_PARAMS if acceptable(p.values[0], p.values[1])]
    assert sorted({str(header_alg(p.values[1]["jws"])) for p in accepted}) == ["ES256", "RS256"]
    assert len(SIGNATURE_PARAMS) == 262 + 151


@pytest.mark.parametrize(("group", "test"), VECTOR_PARAMS)
def test_only_valid_vectors_of_an_accepted_alg_and_its_own_key_pass_verify_signature(
    group: dict[str, Any], test: dict[str, Any]
) -> None:
    verifier = verifier_for(group)
    if acceptable(group, test):
        payload = test["jws"].split(".")[1]
        expected = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        assert verifier.verify_signature(test["jws"]) == expected
    else:
        with pytest.raises(InvalidToken):
            verifier.verify_signature(test["jws"])


@pytest.mark.parametrize(("group", "test"), VECTOR_PARAMS)
def test_no_vector_passes_the_full_verify(group: dict[str, Any], test: dict[str, Any]) -> None:
    """None has ``typ`` at+jwt nor RFC 9068 claims."""
    with pytest.raises(InvalidToken):
        verifier_for(group).verify(test["jws"])


# --- raw signatures: ECDSA P-256 in P1363 form, and Ed25519 ----------------------------

SIGNATURE_FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": "ES256",
    "ed25519_test.json": "EdDSA",
}


def group_jwk(group: dict[str, Any]) -> dict[str, Any]:
    """The group's JWK; a few P-256 groups give only the coordinates in hex."""
    if "publicKeyJwk" in group:
        return dict(group["publicKeyJwk"])
    x, y = (int(group["publicKey"][name], 16).to_bytes(32, "big") for name in ("wx", "wy"))
    return {"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signature_vectors() -> list[Any]:
    found = []
    for name, alg in SIGNATURE_FILES.items():
        document = json.loads((VECTORS / name).read_text())
        for group in document["testGroups"]:
            jwk = group_jwk(group) | {"alg": alg, "kid": "wycheproof"}
            for test in group["tests"]:
                found.append(pytest.param(alg, jwk, test, id=f"{alg}-{test['tcId']}"))
    return found


SIGNATURE_PARAMS = signature_vectors() if VECTORS.is_dir() else []


@pytest.mark.parametrize(("alg", "jwk", "test"), SIGNATURE_PARAMS)
def test_signature_vectors_pass_or_fail_the_verifiers_signature_check_exactly(
    alg: str, jwk: dict[str, Any], test: dict[str, Any]
) -> None:
    key = public_key(jwk)
    assert key.algorithm is ALGORITHMS[alg]
    message, signature = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    if test["result"] == "valid":
        check_signature(key, alg, signature, message)
    else:
        assert test["result"] == "invalid"
        with pytest.raises(InvalidToken) as refused:
            check_signature(key, alg, signature, message)
        assert refused.value.reason == "bad_signature"
