"""Signing keys of every algorithm (README, "Signing algorithms"): ``KEY_ALGORITHM``
picks the algorithm of new keys, ``keys rotate --alg`` brings a key of another in
through the same next -> current lifecycle, and the JWKS carries both while tokens of
the old one live, each JWK with its own ``kty``, ``alg``, ``use``, ``kid`` (and ``crv``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from authority.cli.main import main
from authority.settings import KEY_ALGORITHMS, Settings, SettingsError
from authority.signing.encryption import reencrypt
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import decrypt, generate, key_algorithm, private_pem
from authority.signing.manager import KeyManager, ensure_key, rotate, statuses
from authority.signing.records import KeyRecord, KeyStoreError
from authority.signing.signer import AccessTokenSigner
from authority.verifier import Verifier
from authority.verifier.algorithms import ALGORITHMS, ES256, RS256, EdDSA
from tests.helpers.clock import Clock

ISSUER = "https://auth.example.com"
MEMBERS = {"RS256": {"n", "e"}, "ES256": {"crv", "x", "y"}, "EdDSA": {"crv", "x"}}
KTY = {"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}


def settings_with(algorithm: str = "RS256", **changes: Any) -> Settings:
    return Settings(
        env="test", key_algorithm=algorithm, key_publish_delay=600, key_passphrase="p" * 16
    ).replace(**changes)


def token(manager: KeyManager, clock: Clock) -> str:
    signer = AccessTokenSigner(ISSUER, 900)
    return signer.sign(
        manager.signing_key(), now=clock(), sub="svc", client_id="svc", scope="", audience="api"
    ).token


def test_key_algorithm_is_one_of_the_table() -> None:
    assert set(ALGORITHMS) == set(KEY_ALGORITHMS)  # the order may differ: a test may patch
    assert key_algorithm(settings_with("EdDSA")) is EdDSA
    assert key_algorithm(Settings.from_env({"AUTHORITY_KEY_ALGORITHM": "ES256"})) is ES256
    for bad in ("HS256", "none", "es256", "Ed25519", "PS256", ""):
        with pytest.raises(SettingsError) as refused:
            Settings(key_algorithm=bad)
        assert refused.value.problems == [
            f"AUTHORITY_KEY_ALGORITHM must be RS256, ES256 or EdDSA, not {bad!r}"
        ]


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
async def test_the_first_key_is_of_key_algorithm_and_signs_with_it(
    algorithm: str, tmp_path: Path
) -> None:
    clock = Clock(time.time())  # PyJWT checks iat against the real time
    settings = settings_with(algorithm)
    store = FileKeyStore(tmp_path)
    await ensure_key(store, settings, clock)
    (record,) = await store.load()
    assert record.algorithm.name == algorithm
    assert record.encrypted
    manager = KeyManager(store, settings, clock)
    await manager.load()
    issued = token(manager, clock)
    assert jwt.get_unverified_header(issued)["alg"] == algorithm
    (jwk,) = json.loads(manager.current_ring().jwks)["keys"]
    assert set(jwk) == {"kty", "use", "alg", "kid"} | MEMBERS[algorithm]
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        KTY[algorithm],
        algorithm,
        "sig",
        record.kid,
    )
    independent = jwt.PyJWKSet.from_json(manager.current_ring().jwks.decode())[record.kid]
    assert jwt.decode(issued, independent.key, [algorithm], audience="api")["sub"] == "svc"


@pytest.mark.parametrize(
    ("old", "new"), [("RS256", "ES256"), ("RS256", "EdDSA"), ("ES256", "RS256")]
)
async def test_a_switch_of_algorithm_publishes_both_keys_while_old_tokens_live(
    old: str, new: str, tmp_path: Path, clock: Clock
) -> None:
    settings = settings_with(old)
    store = FileKeyStore(tmp_path)
    await ensure_key(store, settings, clock)
    manager = KeyManager(store, settings, clock)
    await manager.load()
    old_token = token(manager, clock)

    pending = await rotate(store, settings, algorithm=ALGORITHMS[new], clock=clock)
    await manager.reload()
    published = {k["kid"]: k["alg"] for k in json.loads(manager.current_ring().jwks)["keys"]}
    assert published[pending.kid] == new
    assert len(published) == 2
    assert jwt.get_unverified_header(token(manager, clock))["alg"] == old

    clock.advance(settings.key_publish_delay)
    await manager.reload()
    new_token = token(manager, clock)
    assert jwt.get_unverified_header(new_token)["alg"] == new
    states = {
        s.record.kid: (s.state, s.record.algorithm.name)
        for s in statuses(await store.load(), settings, clock())
    }
    assert sorted(states.values()) == sorted([("retired", old), ("current", new)])
    verifier = Verifier(ISSUER, "api", jwks=manager.current_ring().jwks, clock=clock)
    for issued in (old_token, new_token):
        assert verifier.verify(issued)["sub"] == "svc"


async def test_rotating_to_another_algorithm_over_a_pending_key_changes_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    settings = settings_with("RS256")
    store = FileKeyStore(tmp_path)
    await ensure_key(store, settings, clock)
    pending = await rotate(store, settings, clock=clock)
    before = await store.load()
    with pytest.raises(KeyStoreError, match=f"a next RS256 key {pending.kid} is pending"):
        await rotate(store, settings, algorithm=ES256, clock=clock, now_=True)
    assert await store.load() == before
    same = await rotate(store, settings, algorithm=RS256, clock=clock)
    assert (same.outcome, same.kid) == ("pending", pending.kid)


async def test_a_private_key_of_another_curve_under_an_es256_record_is_refused(
    tmp_path: Path,
) -> None:
    record = generate(0, None, 0.0, 0.0, algorithm=ES256)
    p384 = private_pem(ec.generate_private_key(ec.SECP384R1()), None)
    forged = KeyRecord(record.kid, 256, 0.0, 0.0, p384, record.public_jwk)
    with pytest.raises(KeyStoreError, match="is not a key of ES256"):
        decrypt(forged, None)


@pytest.mark.parametrize("algorithm", [ES256, EdDSA])
def test_curve_keys_are_encrypted_at_rest_and_re_encrypt_under_a_new_passphrase(
    algorithm: Any,
) -> None:
    record = generate(0, "old passphrase!!", 0.0, 0.0, algorithm=algorithm)
    assert record.encrypted
    assert record.size == 256
    with pytest.raises(KeyStoreError, match="wrong AUTHORITY_KEY_PASSPHRASE"):
        decrypt(record, "another passphrase")
    outcome, pem = reencrypt(record, "new passphrase!!", ["old passphrase!!"])
    assert outcome == "re-encrypted"
    assert pem is not None
    moved = KeyRecord(record.kid, 256, 0.0, 0.0, pem, record.public_jwk)
    assert algorithm.owns(decrypt(moved, "new passphrase!!"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


def cli(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout


def test_keys_rotate_alg_publishes_a_key_of_that_algorithm(env: dict[str, str]) -> None:
    assert cli(env, "setup")[0] == 0
    code, out = cli(env, "keys", "rotate", "--alg", "EdDSA", "--json")
    assert code == 0, out
    rows = json.loads(cli(env, "keys", "list", "--json")[1])
    assert [(r["state"], r["algorithm"], r["size"]) for r in rows] == [
        ("current", "RS256", 2048),
        ("next", "EdDSA", 256),
    ]
    assert rows[1]["kid"] == json.loads(out)["kid"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--alg", "ES256", "--size", "3072"), "--size is for RSA keys; ES256 keys have one size"),
        (("--alg", "HS256"), "Invalid value for '--alg'"),
    ],
)
def test_keys_rotate_refuses_what_cannot_be_made(
    env: dict[str, str], args: tuple[str, ...], problem: str
) -> None:
    assert cli(env, "setup")[0] == 0
    code, out = cli(env, "keys", "rotate", *args, "--json")
    assert code == 1
    assert problem in json.loads(out)["error"]
    assert len(json.loads(cli(env, "keys", "list", "--json")[1])) == 1
