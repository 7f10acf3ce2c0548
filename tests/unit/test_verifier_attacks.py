"""An attack corpus: every token is rejected with its own reason, and none of them makes
the verifier send a request (the JWKS server counts every one)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from authority.verifier import MAX_TOKEN_BYTES, InvalidToken, Verifier
from tests.helpers.verifier import (
    AUDIENCE,
    ISSUER,
    NOW,
    JwksServer,
    b64,
    claims,
    curve_jwk,
    ec_key,
    ed_key,
    header,
    jwks_server,
    kid_of,
    public_jwk,
    rsa_key,
    sign,
    sign_curve,
)

ATTACKER = 7
JWE = (
    "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYU"
    "mKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDb"
    "Sv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqN"
    "zo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2L"
    "awVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu"
    "6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ"
)


@pytest.fixture(scope="module")
def server() -> Iterator[JwksServer]:
    with jwks_server(rsa_key()) as srv:
        srv.extra_keys = [curve_jwk(ec_key()), curve_jwk(ed_key())]
        yield srv


EC_KID, ED_KID = curve_jwk(ec_key())["kid"], curve_jwk(ed_key())["kid"]


@pytest.fixture(scope="module")
def verifier(server: JwksServer) -> Verifier:
    verifier = Verifier(server.issuer, AUDIENCE, clock=lambda: NOW)
    verifier.load_keys()
    assert verifier.kids == {kid_of(rsa_key()), EC_KID, ED_KID}
    return verifier


def _at(issuer: str) -> dict[str, Any]:
    return claims(iss=issuer)


# --- token makers --------------------------------------------------------------------


def unsigned(head: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, sig: str = "") -> str:
    def enc(v: dict[str, Any] | bytes) -> str:
        return b64(v if isinstance(v, bytes) else json.dumps(v).encode())

    return f"{enc(head)}.{enc(payload)}.{sig}"


def hs256(secret: bytes, iss: str, alg: str = "HS256") -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = unsigned(header(alg=alg), _at(iss))[:-1]
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), digest).digest())


def public_key_encodings() -> dict[str, bytes]:
    """Our public key in every form a confused library might use as an HMAC secret."""
    public = rsa_key().public_key()
    spki, pkcs1 = serialization.PublicFormat.SubjectPublicKeyInfo, serialization.PublicFormat.PKCS1
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    n = public.public_numbers().n
    return {
        "pem-spki": public.public_bytes(pem, spki),
        "pem-pkcs1": public.public_bytes(pem, pkcs1),
        "der-spki": public.public_bytes(der, spki),
        "der-pkcs1": public.public_bytes(der, pkcs1),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(public_jwk(rsa_key())).encode(),
        "raw-modulus": n.to_bytes(256, "big"),
        "modulus-b64url": public_jwk(rsa_key())["n"].encode(),
    }


def self_signed_cert() -> str:
    key = rsa_key(ATTACKER)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def resign(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + b64(signature)


def raw_signature(token: str) -> bytes:
    return base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")


def flip_bit(token: str) -> str:
    sig = bytearray(raw_signature(token))
    sig[100] ^= 0x01
    return resign(token, bytes(sig))


def non_canonical_last_char(segment: str) -> str:
    """The same bytes spelled with non-zero unused bits in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]


def signed_over(head: str, payload: str) -> str:
    """A valid RS256 signature over exactly these (possibly odd) segments."""
    signing_input = f"{head}.{payload}".encode()
    return f"{head}.{payload}." + b64(
        rsa_key().sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    )


def non_canonical_payload(iss: str) -> str:
    payload = json.dumps(_at(iss)).encode()
    while len(b64(payload)) % 4 == 0:
        payload += b" "
    return signed_over(b64(json.dumps(header()).encode()), non_canonical_last_char(b64(payload)))


def std_base64(iss: str) -> str:
    """Our token with '-' and '_' spelled '+' and '/' (standard base64)."""
    token = sign(_at(iss) | {"pad": ">>>???" * 5})
    converted = token.translate(str.maketrans("-_", "+/"))
    assert converted != token
    return converted


def with_big_claim(iss: str, total: int) -> str:
    """A valid token of ``total`` characters, or one more (base64 grows in steps)."""
    size = max(0, (total - len(sign(_at(iss)))) * 3 // 4 - 32)
    while len(token := sign(_at(iss) | {"pad": "x" * size})) < total:
        size += 1
    return token


def duplicate(iss: str, where: str) -> str:
    head = json.dumps(header())[:-1]
    body = json.dumps(_at(iss))[:-1]
    if where == "alg-header":
        head = '{"alg":"none",' + head[1:]
    elif where == "alg-header-last":
        head += ', "alg": "none"'
    elif where == "sub-payload":
        body += ', "sub": "admin"'
    elif where == "nested":
        body += ', "cnf": {"jkt": "a", "jkt": "b"}'
    return signed_over(b64((head + "}").encode()), b64((body + "}").encode()))


def raw_claim(iss: str, name: str, literal: str) -> str:
    body = json.dumps(_at(iss) | {name: 0}).replace(f'"{name}": 0', f'"{name}": {literal}')
    return signed_over(b64(json.dumps(header()).encode()), b64(body.encode()))


# (id, maker(issuer) -> token, reason)
Maker = Callable[[str], Any]


def at_header(alg: str, kid: str) -> dict[str, Any]:
    return {"alg": alg, "typ": "at+jwt", "kid": kid}


# RFC 8725 section 2.1 and 3.1: a key verifies under its own algorithm only, so a
# token cannot pick how its signature is read by naming another alg for a known kid.
ALGORITHM_CONFUSION: list[tuple[str, Maker, str]] = [
    (
        "es256-header-rsa-kid",
        lambda i: sign_curve(_at(i), ec_key(ATTACKER), at_header("ES256", kid_of(rsa_key()))),
        "alg_not_allowed",
    ),
    (
        "rs256-header-p256-kid",
        lambda i: sign(_at(i), at_header("RS256", EC_KID), rsa_key(ATTACKER)),
        "alg_not_allowed",
    ),
    (
        "eddsa-header-p256-kid",
        lambda i: sign_curve(_at(i), ed_key(ATTACKER), at_header("EdDSA", EC_KID)),
        "alg_not_allowed",
    ),
    (
        "ed25519-header-p256-kid",
        lambda i: sign_curve(_at(i), ed_key(ATTACKER), at_header("Ed25519", EC_KID)),
        "alg_not_allowed",
    ),
    (
        "ed25519-header-ed25519-kid",
        lambda i: sign_curve(_at(i), ed_key(), at_header("Ed25519", ED_KID)),
        "alg_not_allowed",
    ),
    (
        "es256-header-ed25519-kid",
        lambda i: sign_curve(_at(i), ec_key(ATTACKER), at_header("ES256", ED_KID)),
        "alg_not_allowed",
    ),
    (
        "eddsa-header-rsa-kid",
        lambda i: sign_curve(_at(i), ed_key(ATTACKER), at_header("EdDSA", kid_of(rsa_key()))),
        "alg_not_allowed",
    ),
    (
        "es384-header-p256-kid",
        lambda i: sign_curve(_at(i), ec_key(0, "P-384"), at_header("ES384", EC_KID)),
        "alg_not_allowed",
    ),
    ("es256-der-signature", lambda i: sign_curve(_at(i), ec_key(), der=True), "bad_signature"),
    (
        "es256-signed-on-the-wrong-curve",
        lambda i: sign_curve(_at(i), ec_key(0, "P-384"), at_header("ES256", EC_KID)),
        "bad_signature",
    ),
    (
        "es256-signature-other-key",
        lambda i: sign_curve(_at(i), ec_key(ATTACKER), at_header("ES256", EC_KID)),
        "bad_signature",
    ),
    (
        "es256-signature-zero",
        lambda i: resign(sign_curve(_at(i), ec_key()), bytes(64)),
        "bad_signature",
    ),
    (
        "eddsa-signature-other-key",
        lambda i: sign_curve(_at(i), ed_key(ATTACKER), at_header("EdDSA", ED_KID)),
        "bad_signature",
    ),
    (
        "eddsa-signature-truncated",
        lambda i: (lambda t: resign(t, raw_signature(t)[:-1]))(sign_curve(_at(i), ed_key())),
        "bad_signature",
    ),
]

CORPUS: list[tuple[str, Maker, str]] = [
    *ALGORITHM_CONFUSION,
    *[
        (f"alg-{alg}", lambda i, a=alg: unsigned(header(alg=a), _at(i)), "alg_not_allowed")
        for alg in ("none", "None", "NONE", "nOnE")
    ],
    (
        "alg-none-with-signature",
        lambda i: unsigned(header(alg="none"), _at(i), "c2ln"),
        "alg_not_allowed",
    ),
    ("alg-missing", lambda i: sign(_at(i), header(alg=None)), "alg_not_allowed"),
    ("alg-lowercase", lambda i: sign(_at(i), header(alg="rs256")), "alg_not_allowed"),
    ("alg-array", lambda i: sign(_at(i), header(alg=["RS256"])), "alg_not_allowed"),
    ("alg-PS256", lambda i: sign(_at(i), header(alg="PS256")), "alg_not_allowed"),
    *[
        (f"hs256-public-key-{name}", lambda i, s=secret: hs256(s, i), "alg_not_allowed")
        for name, secret in public_key_encodings().items()
    ],
    (
        "hs384-public-key",
        lambda i: hs256(public_key_encodings()["pem-spki"], i, "HS384"),
        "alg_not_allowed",
    ),
    (
        "hs512-public-key",
        lambda i: hs256(public_key_encodings()["pem-spki"], i, "HS512"),
        "alg_not_allowed",
    ),
    (
        "embedded-jwk",
        lambda i: sign(
            _at(i), header(rsa_key(ATTACKER), jwk=public_jwk(rsa_key(ATTACKER))), rsa_key(ATTACKER)
        ),
        "forbidden_header",
    ),
    (
        "embedded-jwk-our-kid",
        lambda i: sign(_at(i), header(jwk=public_jwk(rsa_key(ATTACKER))), rsa_key(ATTACKER)),
        "forbidden_header",
    ),
    ("jku", lambda i: sign(_at(i), header(jku=i + "/attacker/jwks.json")), "forbidden_header"),
    ("x5u", lambda i: sign(_at(i), header(x5u=i + "/attacker/cert.pem")), "forbidden_header"),
    (
        "x5c",
        lambda i: sign(
            _at(i), header(rsa_key(ATTACKER), x5c=[self_signed_cert()]), rsa_key(ATTACKER)
        ),
        "forbidden_header",
    ),
    ("crit-exp", lambda i: sign(_at(i), header(crit=["exp"], exp=0)), "unsupported_crit"),
    ("crit-empty", lambda i: sign(_at(i), header(crit=[])), "unsupported_crit"),
    ("crit-b64", lambda i: sign(_at(i), header(crit=["b64"], b64=False)), "unsupported_crit"),
    ("kid-path-traversal", lambda i: sign(_at(i), header(kid="../../../../etc/passwd")), "bad_kid"),
    ("kid-sql", lambda i: sign(_at(i), header(kid="x' OR '1'='1")), "bad_kid"),
    ("kid-sql-drop", lambda i: sign(_at(i), header(kid="x;DROP TABLE keys;--")), "bad_kid"),
    ("kid-10kb", lambda i: sign(_at(i), header(kid="k" * 10_000)), "too_large"),
    ("kid-1000-chars", lambda i: sign(_at(i), header(kid="k" * 1000)), "bad_kid"),
    ("kid-number", lambda i: sign(_at(i), header(kid=12345)), "bad_kid"),
    ("kid-null", lambda i: sign(_at(i), json.dumps(header() | {"kid": None}).encode()), "bad_kid"),
    ("kid-missing", lambda i: sign(_at(i), header(kid=None)), "bad_kid"),
    ("kid-empty", lambda i: sign(_at(i), header(kid="")), "bad_kid"),
    ("kid-array", lambda i: sign(_at(i), header(kid=[kid_of(rsa_key())])), "bad_kid"),
    ("kid-nul", lambda i: sign(_at(i), header(kid=kid_of(rsa_key()) + "\x00")), "bad_kid"),
    ("duplicate-alg", lambda i: duplicate(i, "alg-header"), "duplicate_member"),
    ("duplicate-alg-last", lambda i: duplicate(i, "alg-header-last"), "duplicate_member"),
    ("duplicate-sub", lambda i: duplicate(i, "sub-payload"), "duplicate_member"),
    ("duplicate-nested", lambda i: duplicate(i, "nested"), "duplicate_member"),
    ("padded-header", lambda i: (lambda t: t.replace(".", "==.", 1))(sign(_at(i))), "bad_base64"),
    ("padded-signature", lambda i: sign(_at(i)) + "==", "bad_base64"),
    ("standard-base64", std_base64, "bad_base64"),
    ("space-in-payload", lambda i: sign(_at(i)).replace(".ey", ".ey ", 1), "bad_base64"),
    ("trailing-newline", lambda i: sign(_at(i)) + "\n", "bad_base64"),
    ("leading-space", lambda i: " " + sign(_at(i)), "bad_base64"),
    (
        "non-canonical-signature",
        lambda i: (lambda t: t[:-1] + non_canonical_last_char(t.rsplit(".", 1)[1])[-1])(
            sign(_at(i))
        ),
        "bad_base64",
    ),
    ("non-canonical-payload-validly-signed", non_canonical_payload, "bad_base64"),
    ("non-ascii", lambda i: sign(_at(i)).replace("e", "é", 1), "malformed"),
    ("empty", lambda i: "", "malformed"),
    ("not-a-string", lambda i: 12345, "malformed"),
    ("none", lambda i: None, "malformed"),
    ("two-segments", lambda i: sign(_at(i)).rsplit(".", 1)[0], "malformed"),
    ("four-segments", lambda i: sign(_at(i)) + ".e30", "malformed"),
    ("jwe-five-segments", lambda i: JWE, "malformed"),
    ("header-not-json", lambda i: signed_over(b64(b"alg=RS256"), b64(b"{}")), "bad_json"),
    ("header-array", lambda i: sign(_at(i), b'["RS256"]'), "bad_json"),
    (
        "header-bom",
        lambda i: sign(_at(i), b"\xef\xbb\xbf" + json.dumps(header()).encode()),
        "bad_json",
    ),
    (
        "header-invalid-utf8",
        lambda i: sign(_at(i), json.dumps(header()).encode()[:-1] + b', "\xff": 1}'),
        "bad_json",
    ),
    ("payload-not-object", lambda i: sign(b'"admin"'), "bad_json"),
    (
        "payload-deep-nesting",
        lambda i: sign(
            json.dumps(_at(i)).encode()[:-1] + b', "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
        ),
        "bad_json",
    ),
    ("payload-huge-integer", lambda i: raw_claim(i, "exp", "9" * 5000), "bad_json"),
    ("signature-stripped", lambda i: sign(_at(i)).rsplit(".", 1)[0] + ".", "bad_signature"),
    (
        "signature-truncated",
        lambda i: (lambda t: resign(t, raw_signature(t)[:-1]))(sign(_at(i))),
        "bad_signature",
    ),
    ("signature-bit-flipped", lambda i: flip_bit(sign(_at(i))), "bad_signature"),
    ("signature-zero", lambda i: resign(sign(_at(i)), bytes(256)), "bad_signature"),
    ("signature-too-long", lambda i: resign(sign(_at(i)), bytes(512)), "bad_signature"),
    (
        "signature-is-modulus",
        lambda i: resign(sign(_at(i)), base64.urlsafe_b64decode(public_jwk(rsa_key())["n"] + "==")),
        "bad_signature",
    ),
    ("signature-other-key", lambda i: sign(_at(i), header(), rsa_key(ATTACKER)), "bad_signature"),
    (
        "signature-sha512-digest",
        lambda i: (
            lambda t: resign(
                t, rsa_key().sign(t.rsplit(".", 1)[0].encode(), padding.PKCS1v15(), hashes.SHA512())
            )
        )(sign(_at(i))),
        "bad_signature",
    ),
    (
        "payload-edited",
        lambda i: (lambda t, e: f"{t.split('.')[0]}.{e}.{t.split('.')[2]}")(
            sign(_at(i)), b64(json.dumps(_at(i) | {"sub": "admin"}).encode())
        ),
        "bad_signature",
    ),
    ("exp-nan", lambda i: raw_claim(i, "exp", "NaN"), "invalid_number"),
    ("exp-infinity", lambda i: raw_claim(i, "exp", "Infinity"), "invalid_number"),
    ("exp-minus-infinity", lambda i: raw_claim(i, "exp", "-Infinity"), "invalid_number"),
    ("exp-string", lambda i: sign(_at(i) | {"exp": str(int(NOW) + 900)}), "invalid_claim"),
    ("exp-overflows-to-infinity", lambda i: raw_claim(i, "exp", "1e999"), "invalid_claim"),
    ("exp-boolean", lambda i: sign(_at(i) | {"exp": True}), "invalid_claim"),
    ("iss-array", lambda i: sign(_at(i) | {"iss": [i]}), "wrong_issuer"),
    ("iss-prefix", lambda i: sign(_at(i[:-1])), "wrong_issuer"),
    ("iss-extended", lambda i: sign(_at(i + ".evil.example")), "wrong_issuer"),
    ("iss-trailing-slash", lambda i: sign(_at(i + "/")), "wrong_issuer"),
    ("iss-upper-case", lambda i: sign(_at(i.upper())), "wrong_issuer"),
    ("iss-other", lambda i: sign(_at(ISSUER)), "wrong_issuer"),
    ("aud-wrong", lambda i: sign(_at(i) | {"aud": "api://billing"}), "wrong_audience"),
    ("aud-prefix", lambda i: sign(_at(i) | {"aud": AUDIENCE[:-1]}), "wrong_audience"),
    (
        "aud-array-without-ours",
        lambda i: sign(_at(i) | {"aud": ["api://a", "api://b"]}),
        "wrong_audience",
    ),
    ("typ-missing", lambda i: sign(_at(i), header(typ=None)), "bad_typ"),
    ("typ-JWT", lambda i: sign(_at(i), header(typ="JWT")), "bad_typ"),
    ("typ-plain-jwt-media-type", lambda i: sign(_at(i), header(typ="application/jwt")), "bad_typ"),
    ("typ-other-top-level-type", lambda i: sign(_at(i), header(typ="text/at+jwt")), "bad_typ"),
    ("typ-with-parameters", lambda i: sign(_at(i), header(typ="at+jwt; x=1")), "bad_typ"),
    ("typ-not-a-string", lambda i: sign(_at(i), header(typ=["at+jwt"])), "bad_typ"),
    ("expired", lambda i: sign(_at(i) | {"exp": int(NOW) - 3600}), "expired"),
    ("size-just-over-limit", lambda i: with_big_claim(i, MAX_TOKEN_BYTES + 1), "too_large"),
    ("size-100kb", lambda i: sign(_at(i) | {"pad": "x" * 100_000}), "too_large"),
    ("size-10mb", lambda i: "a" * 10_000_000 + ".b.c", "too_large"),
]


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, r, id=n) for n, m, r in CORPUS])
def test_attack_is_rejected_with_its_reason_and_without_a_request(
    verifier: Verifier, server: JwksServer, make: Maker, expected: str
) -> None:
    token = make(server.issuer)
    before = server.total()
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert caught.value.reason == expected
    assert server.total() == before


async def test_averify_rejects_the_whole_corpus_for_the_same_reasons(
    verifier: Verifier, server: JwksServer
) -> None:
    before = server.total()
    for name, make, expected in CORPUS:
        with pytest.raises(InvalidToken) as caught:
            await verifier.averify(make(server.issuer))
        assert caught.value.reason == expected, name
    assert server.total() == before


def test_verify_signature_rejects_every_forged_or_malformed_token(
    verifier: Verifier, server: JwksServer
) -> None:
    claim_level = {
        "invalid_claim",
        "wrong_issuer",
        "wrong_audience",
        "bad_typ",
        "expired",
        "invalid_number",
        "duplicate_member",
        "bad_json",
    }
    for name, make, expected in CORPUS:
        if expected in claim_level:
            continue
        with pytest.raises(InvalidToken) as caught:
            verifier.verify_signature(make(server.issuer))
        assert caught.value.reason == expected, name


def test_jku_and_x5u_urls_are_never_fetched(verifier: Verifier, server: JwksServer) -> None:
    for head in (header(jku=server.url + "/attacker"), header(x5u=server.url + "/attacker")):
        with pytest.raises(InvalidToken):
            verifier.verify(sign(_at(server.issuer), head))
    assert server.count("/attacker") == 0


def test_token_of_exactly_the_size_limit_is_still_verified(
    verifier: Verifier, server: JwksServer
) -> None:
    token = with_big_claim(server.issuer, MAX_TOKEN_BYTES)
    if len(token) > MAX_TOKEN_BYTES:  # base64 grows in steps of 1 or 2 characters
        token = with_big_claim(server.issuer, MAX_TOKEN_BYTES - 1)
    assert MAX_TOKEN_BYTES - 1 <= len(token) <= MAX_TOKEN_BYTES
    assert verifier.verify(token)["sub"] == "svc"


def test_the_untouched_token_of_the_corpus_is_accepted(
    verifier: Verifier, server: JwksServer
) -> None:
    """Each attack above is a change to this token; without the change it verifies."""
    assert verifier.verify(sign(_at(server.issuer)))["iss"] == server.issuer
    for key in (ec_key(), ed_key()):
        assert verifier.verify(sign_curve(_at(server.issuer), key))["iss"] == server.issuer
