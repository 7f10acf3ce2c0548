"""The verifier on good tokens and on the claim rules of RFC 9068 section 4, with a
fixed key set and a fixed clock."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from authority.verifier import InvalidToken, KeysUnavailable, Verifier
from tests.helpers.verifier import (
    AUDIENCE,
    ISSUER,
    NOW,
    claims,
    header,
    jwks,
    public_jwk,
    rsa_key,
    sign,
)


def make(leeway: float = 30, audience: str | list[str] = AUDIENCE) -> Verifier:
    return Verifier(ISSUER, audience, jwks=jwks(rsa_key()), leeway=leeway, clock=lambda: NOW)


def reason(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_valid_token_gives_its_claims() -> None:
    assert make().verify(sign(claims())) == claims()


async def test_averify_gives_the_same_claims_as_verify() -> None:
    assert await make().averify(sign(claims())) == claims()


def test_token_as_bytes_is_accepted() -> None:
    assert make().verify(sign(claims()).encode()) == claims()


def test_verify_signature_returns_the_payload_without_checking_typ_or_claims() -> None:
    payload = b"not even json"
    token = sign(payload, header(typ="JWT"))
    assert make().verify_signature(token) == payload
    assert reason(make(), token) == "bad_typ"


def test_verify_signature_still_checks_the_algorithm_and_the_signature() -> None:
    verifier = make()
    with pytest.raises(InvalidToken, match="alg_not_allowed"):
        verifier.verify_signature(sign(claims(), header(alg="RS512")))
    with pytest.raises(InvalidToken, match="bad_signature"):
        verifier.verify_signature(sign(claims(), header(rsa_key()), key=rsa_key(1)))


@pytest.mark.parametrize(("exp_offset", "accepted"), [(-29, True), (-30, False), (-31, False)])
def test_expiry_allows_the_leeway_and_no_more(exp_offset: int, accepted: bool) -> None:
    token = sign(claims(exp=int(NOW) + exp_offset, iat=int(NOW) - 900))
    if accepted:
        assert make().verify(token)["exp"] == int(NOW) + exp_offset
    else:
        assert reason(make(), token) == "expired"


@pytest.mark.parametrize(("nbf_offset", "accepted"), [(30, True), (31, False)])
def test_not_before_allows_the_leeway_and_no_more(nbf_offset: int, accepted: bool) -> None:
    token = sign(claims(nbf=int(NOW) + nbf_offset))
    if accepted:
        assert make().verify(token)["nbf"] == int(NOW) + nbf_offset
    else:
        assert reason(make(), token) == "not_yet_valid"


def test_token_issued_in_the_future_beyond_the_leeway_is_rejected() -> None:
    assert reason(make(), sign(claims(iat=int(NOW) + 31))) == "issued_in_future"
    assert make().verify(sign(claims(iat=int(NOW) + 30)))["iat"] == int(NOW) + 30


def test_zero_leeway_rejects_a_token_at_its_expiry_second() -> None:
    assert reason(make(leeway=0), sign(claims(exp=int(NOW)))) == "expired"
    assert make(leeway=0).verify(sign(claims(exp=int(NOW) + 1)))


def test_fractional_times_are_numbers_too() -> None:
    assert make().verify(sign(claims(exp=NOW + 0.5, iat=NOW - 0.5)))["exp"] == NOW + 0.5


def test_audience_array_containing_ours_is_accepted() -> None:
    assert make().verify(sign(claims(aud=["api://other", AUDIENCE])))["sub"] == "svc"


def test_any_of_several_configured_audiences_is_accepted() -> None:
    verifier = make(audience=["api://a", AUDIENCE])
    assert verifier.verify(sign(claims()))["aud"] == AUDIENCE
    assert reason(verifier, sign(claims(aud="api://c"))) == "wrong_audience"


@pytest.mark.parametrize("name", ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"])
def test_each_rfc_9068_claim_is_required(name: str) -> None:
    dropped: dict[str, Any] = {name: None}
    assert reason(make(), sign(claims(**dropped))) == "missing_claim"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sub", 42),
        ("client_id", ["svc"]),
        ("jti", {"id": 1}),
        ("scope", ["orders:read"]),
        ("exp", True),
        ("iat", "1800000000"),
        ("nbf", [NOW]),
        ("aud", [AUDIENCE, 7]),
        ("aud", {"aud": AUDIENCE}),
    ],
)
def test_claims_of_the_wrong_type_are_invalid(name: str, value: Any) -> None:
    changed: dict[str, Any] = {name: value}
    assert reason(make(), sign(claims(**changed))) == "invalid_claim"


def test_empty_audience_array_is_the_wrong_audience() -> None:
    assert reason(make(), sign(claims(aud=[]))) == "wrong_audience"


def test_fixed_key_set_may_be_json_text() -> None:
    verifier = Verifier(ISSUER, AUDIENCE, jwks=json.dumps(jwks(rsa_key())), clock=lambda: NOW)
    assert verifier.verify(sign(claims()))["sub"] == "svc"


def test_unusable_keys_of_a_fixed_key_set_are_left_out() -> None:
    good, small = public_jwk(rsa_key()), public_jwk(rsa_key(9, 1024))
    private = {**public_jwk(rsa_key(2)), "d": "AQAB"}
    encryption = {**public_jwk(rsa_key(3)), "use": "enc"}
    twins = [{**public_jwk(rsa_key(4)), "kid": "twin"}, {**public_jwk(rsa_key(5)), "kid": "twin"}]
    keys = [good, small, private, encryption, *twins, {"kty": "oct", "k": "AAAA", "kid": "h"}]
    verifier = Verifier(ISSUER, AUDIENCE, jwks={"keys": keys})
    assert verifier.kids == {good["kid"]}


@pytest.mark.parametrize(
    "options",
    [
        {"jwks": {"keys": []}, "jwks_url": "https://issuer.example/jwks"},
        {"jwks_url": "file:///etc/passwd"},
        {"leeway": -1},
        {"leeway": float("nan")},
    ],
)
def test_misconfiguration_is_refused_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Verifier(ISSUER, AUDIENCE, **options)


@pytest.mark.parametrize("audience", ["", [], [""]])
def test_an_audience_is_required(audience: str | list[str]) -> None:
    with pytest.raises(ValueError, match="audience"):
        Verifier(ISSUER, audience, jwks=jwks(rsa_key()))


def test_missing_keys_are_invalid_token_too_so_one_except_clause_suffices() -> None:
    error = KeysUnavailable()
    assert isinstance(error, InvalidToken)
    assert error.reason == "keys_unavailable"
    assert str(error).startswith("keys_unavailable: ")


def test_many_threads_verifying_at_once_each_get_their_own_answer() -> None:
    verifier = make()
    good = [sign(claims(sub=f"user-{i}")) for i in range(20)]
    expired = sign(claims(exp=int(NOW) - 100))
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(100):
            token = good[(i + offset) % 20]
            if verifier.verify(token)["sub"] != f"user-{(i + offset) % 20}":
                errors.append("wrong claims")
            try:
                verifier.verify(expired)
                errors.append("expired token accepted")
            except InvalidToken as exc:
                if exc.reason != "expired":
                    errors.append(exc.reason)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
