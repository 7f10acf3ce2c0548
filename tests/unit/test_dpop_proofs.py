"""DPoP proofs (RFC 9449 section 4.3) as ``authority.verifier.dpop.check_proof`` judges
them, and bound access tokens as ``Verifier.verify(token, dpop=, method=, url=)``
judges them (section 7.1): every refusal with its reason."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import JWKRegistry

from authority.verifier import InvalidToken, Verifier
from authority.verifier.dpop import (
    InvalidProof,
    ProofMemory,
    UseNonce,
    access_token_hash,
    check_proof,
)
from tests.helpers.dpop import ATTACKER, HOLDER, JKT, URL, make_proof, proof_jwk
from tests.helpers.verifier import (
    AUDIENCE,
    ISSUER,
    NOW,
    b64,
    claims,
    curve_jwk,
    ec_key,
    ed_key,
    rsa_key,
    sign_curve,
)


def check(proof: str, **options: Any) -> Any:
    settings: dict[str, Any] = {"method": "POST", "url": URL, "now": NOW} | options
    return check_proof(proof, **settings)


@pytest.mark.parametrize("key", [ec_key(HOLDER), ed_key(HOLDER), rsa_key(HOLDER)])
def test_a_proof_of_each_algorithm_passes_with_its_keys_rfc7638_thumbprint(key: Any) -> None:
    accepted = check(make_proof(key))
    independent = JWKRegistry.import_key(dict(proof_jwk(key).items())).thumbprint()
    assert accepted.jkt == independent
    assert accepted.iat == NOW


def test_htu_is_compared_without_query_and_fragment_and_normalized() -> None:
    assert check(make_proof(htu="HTTPS://API.example.com:443/orders?x=1#f"))
    assert check(make_proof(), url=URL + "?page=2")


REFUSED: list[tuple[str, Any, dict[str, Any]]] = [
    ("typ-missing", lambda: make_proof(header={"typ": None}), {}),
    ("typ-jwt", lambda: make_proof(header={"typ": "JWT"}), {}),
    ("typ-at+jwt", lambda: make_proof(header={"typ": "at+jwt"}), {}),
    ("alg-none", lambda: make_proof(header={"alg": "none"}), {}),
    ("alg-hs256", lambda: make_proof(header={"alg": "HS256"}), {}),
    ("alg-es256-with-ed25519-key", lambda: make_proof(ed_key(HOLDER), header={"alg": "ES256"}), {}),
    ("alg-eddsa-with-p256-key", lambda: make_proof(header={"alg": "EdDSA"}), {}),
    ("alg-Ed25519", lambda: make_proof(ed_key(HOLDER), header={"alg": "Ed25519"}), {}),
    ("jwk-missing", lambda: make_proof(header={"jwk": None}), {}),
    (
        "jwk-private",
        lambda: make_proof(header={"jwk": proof_jwk(ec_key(HOLDER)) | {"d": b64(b"\1" * 32)}}),
        {},
    ),
    ("jwk-other-key", lambda: make_proof(header={"jwk": proof_jwk(ec_key(ATTACKER))}), {}),
    ("crit", lambda: make_proof(header={"crit": ["exp"]}), {}),
    ("htm-wrong", lambda: make_proof(htm="GET"), {}),
    ("htm-lowercase", lambda: make_proof(htm="post"), {}),
    ("htu-other-path", lambda: make_proof(htu="https://api.example.com/admin"), {}),
    ("htu-other-host", lambda: make_proof(htu="https://evil.example.com/orders"), {}),
    ("htu-http", lambda: make_proof(htu="http://api.example.com/orders"), {}),
    ("htu-missing", lambda: make_proof(htu=None), {}),
    ("iat-stale", lambda: make_proof(iat=int(NOW) - 301), {}),
    ("iat-future", lambda: make_proof(iat=int(NOW) + 60), {}),
    ("iat-string", lambda: make_proof(iat=str(int(NOW))), {}),
    ("jti-missing", lambda: make_proof(jti=None), {}),
    ("jti-huge", lambda: make_proof(jti="j" * 300), {}),
    ("ath-missing", lambda: make_proof(), {"access_token": "a.b.c"}),
    ("ath-of-another-token", lambda: make_proof(token="x.y.z"), {"access_token": "a.b.c"}),
    ("not-a-jws", lambda: "not.a.proof", {}),
    ("signature-other-key", lambda: make_proof()[:-10] + make_proof(jti="x")[-10:], {}),
]


@pytest.mark.parametrize(("make", "options"), [pytest.param(m, o, id=n) for n, m, o in REFUSED])
def test_a_bad_proof_is_invalid_dpop_proof(make: Any, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidProof) as refused:
        check(make(), **options)
    assert refused.value.error == "invalid_dpop_proof"


def test_a_proof_without_the_servers_nonce_is_use_dpop_nonce() -> None:
    with pytest.raises(UseNonce) as refused:
        check(make_proof(), nonce="n-1")
    assert refused.value.error == "use_dpop_nonce"
    with pytest.raises(UseNonce):
        check(make_proof(nonce="n-0"), nonce="n-1")
    assert check(make_proof(nonce="n-1"), nonce="n-1")


def test_proof_memory_accepts_a_jti_once_within_the_window() -> None:
    memory = ProofMemory(window=330)
    proof = check(make_proof())
    assert memory.first_use(proof, NOW)
    assert not memory.first_use(proof, NOW + 10)
    assert memory.first_use(proof, NOW + 331)


# --- bound access tokens at the verifier ---------------------------------------------


def bound_token(jkt: str = JKT) -> str:
    return sign_curve(claims() | {"cnf": {"jkt": jkt}}, ec_key())


@pytest.fixture
def verifier() -> Verifier:
    return Verifier(ISSUER, AUDIENCE, jwks={"keys": [curve_jwk(ec_key())]}, clock=lambda: NOW)


def refusal(verifier: Verifier, token: str, proof: str | None, method: str = "GET") -> str:
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token, dpop=proof, method=method, url=URL)
    return refused.value.reason


def get_proof(token: str, key: Any = None, **changes: Any) -> str:
    return make_proof(key, token=token, **({"htm": "GET"} | changes))


def test_a_bound_token_verifies_with_a_proof_by_its_key(verifier: Verifier) -> None:
    token = bound_token()
    claims_seen = verifier.verify(token, dpop=get_proof(token), method="GET", url=URL)
    assert claims_seen["cnf"] == {"jkt": JKT}


def test_a_bound_token_sent_as_bearer_is_refused(verifier: Verifier) -> None:
    assert refusal(verifier, bound_token(), None) == "dpop_required"


def test_a_replayed_proof_is_refused(verifier: Verifier) -> None:
    token = bound_token()
    proof = get_proof(token)
    verifier.verify(token, dpop=proof, method="GET", url=URL)
    assert refusal(verifier, token, proof) == "invalid_dpop_proof"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"htm": "POST"}, id="wrong-htm"),
        pytest.param({"htu": "https://api.example.com/other"}, id="wrong-htu"),
        pytest.param({"iat": int(NOW) - 3600}, id="stale-iat"),
        pytest.param({"ath": access_token_hash("another.token.here")}, id="wrong-ath"),
    ],
)
def test_a_proof_for_another_request_is_refused(
    verifier: Verifier, changes: dict[str, Any]
) -> None:
    token = bound_token()
    assert refusal(verifier, token, get_proof(token, **changes)) == "invalid_dpop_proof"


def test_a_proof_by_another_key_is_refused(verifier: Verifier) -> None:
    token = bound_token()
    assert refusal(verifier, token, get_proof(token, ed_key(HOLDER))) == "invalid_dpop_proof"


def test_a_proof_with_an_unbound_token_is_refused(verifier: Verifier) -> None:
    token = sign_curve(claims(), ec_key())
    assert verifier.verify(token)["sub"] == "svc"
    assert refusal(verifier, token, get_proof(token)) == "dpop_unbound"


async def test_averify_checks_the_binding_too(verifier: Verifier) -> None:
    token = bound_token()
    with pytest.raises(InvalidToken) as refused:
        await verifier.averify(token)
    assert refused.value.reason == "dpop_required"
    proof = get_proof(token)
    assert (await verifier.averify(token, dpop=proof, method="GET", url=URL))["cnf"]


def test_a_cached_proof_key_still_needs_its_own_signature_and_keeps_its_thumbprint() -> None:
    # The attacker's key is loaded (and kept) by its own good proof first.
    es256 = {"alg": "ES256"}
    attacker = check(make_proof(ec_key(ATTACKER), header=es256, jti="attacker-1"))
    again = check(make_proof(ec_key(ATTACKER), header=es256, jti="attacker-2"))
    assert again.jkt == attacker.jkt != JKT
    with pytest.raises(InvalidProof):  # the holder's signature under the attacker's jwk
        check(make_proof(header={"jwk": proof_jwk(ec_key(ATTACKER))}, jti="holder-1"))
