"""Project Wycheproof's JWS and JWK vectors (shared/vectors/README.md): with a verifier
built from each group's public key, only a ``valid`` vector whose ``alg`` is RS256 and
whose key is an RS256 signing key passes ``verify_signature``; every other vector raises
InvalidToken, and nothing raises anything else."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from authority.verifier import InvalidToken, Verifier
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


def acceptable(group: dict[str, Any], test: dict[str, Any]) -> bool:
    keys = key_set(group)["keys"]
    return (
        test["result"] == "valid"
        and header_alg(test["jws"]) == "RS256"
        and len(keys) == 1
        and keys[0].get("kty") == "RSA"
        and keys[0].get("alg") == "RS256"
        and keys[0].get("use", "sig") == "sig"
    )


def verifier_for(group: dict[str, Any]) -> Verifier:
    return Verifier("https://issuer.example", "api", jwks=key_set(group))


def test_the_vectors_are_there() -> None:
    assert len(VECTOR_PARAMS) == 427
    assert sum(acceptable(p.values[0], p.values[1]) for p in VECTOR_PARAMS) == 9


@pytest.mark.parametrize(("group", "test"), VECTOR_PARAMS)
def test_only_valid_rs256_vectors_pass_verify_signature(
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
