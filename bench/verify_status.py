"""``Verifier.verify`` with the token status list check (the default) against the same
verifier with ``check_status=False``, warm, in one process (README, "Revocation that
reaches resource servers"). Target: with >= 0.9 x without.

The token is one the authority signs (RSA 2048) with its ``status`` claim; the list is
the one it would publish at 1,000 tokens/s with the default ``ACCESS_TTL`` (990,000
indexes in use) and 1% of them revoked, signed as ``authority.status.publisher`` signs
it, and served to the verifier by an in-memory ``fetch`` with a ttl longer than the run:
fetched once, then every check is the warm path (a dictionary read and a bit test). The
size of that list is reported too. The loops and their timing are ``bench.verify``'s.
"""

from __future__ import annotations

import base64
import json
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping
from typing import Any, cast

import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa

from authority.signing.records import thumbprint
from authority.signing.signer import AccessTokenSigner, SigningKey, b64url
from authority.status.publisher import MEDIA_TYPE, status_uri
from authority.verifier import InvalidToken, Verifier
from authority.verifier.algorithms import RS256
from authority.verifier.cache import HttpResponse
from authority.verifier.status_bits import encode, pack
from bench.harness import BenchError, best_of, verdict
from bench.verify import AUDIENCE, ISSUER, measure

TITLE = "Verifier.verify with the status list check vs without (in-process, one thread, warm)"
TARGET = 0.9
SIZE = 2_097_152  # AUTHORITY_STATUS_LIST_SIZE's default
IN_USE = 990_000  # 1,000 tokens/s for ACCESS_TTL 900 s + BLOCK_USE 60 s + LEEWAY 30 s
REVOKED_SHARE = 0.01
TTL = 86_400  # longer than the run: the list is fetched once


def status_list_jwt(key: SigningKey, revoked: list[int]) -> bytes:
    """The list as the publisher signs it."""
    encoder = msgspec.json.Encoder()
    now = int(time.time())
    header = b64url(encoder.encode({"alg": "RS256", "typ": "statuslist+jwt", "kid": key.kid}))
    claims = {
        "sub": status_uri(ISSUER),
        "iat": now,
        "exp": now + 4 * TTL,
        "ttl": TTL,
        "status_list": {"bits": 1, "lst": encode(pack(SIZE, revoked))},
    }
    signing_input = header + b"." + b64url(encoder.encode(claims))
    return signing_input + b"." + b64url(key.algorithm.sign(key.private_key, signing_input))


def setup() -> tuple[str, str, dict[str, Callable[[str], object]], dict[str, Any]]:
    """A token with a clear bit, one with a set bit, the two verifiers, the list's size."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RS256.public_jwk(private.public_key())
    key = SigningKey(thumbprint(jwk), RS256, private, 0.0)
    jwks = {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": key.kid, **jwk}]}
    rng = random.Random(16)
    revoked = sorted(rng.sample(range(IN_USE), int(IN_USE * REVOKED_SHARE)))
    body = status_list_jwt(key, revoked)
    fetches: list[str] = []

    def fetch(url: str, headers: Mapping[str, str], timeout: float) -> HttpResponse:
        fetches.append(url)
        if url != status_uri(ISSUER):
            raise OSError(f"unexpected fetch of {url}")
        return HttpResponse(200, {"content-type": MEDIA_TYPE}, body)

    signer = AccessTokenSigner(ISSUER, ttl=3600, status_uri=status_uri(ISSUER))
    revoked_set = set(revoked)
    clear_idx = next(i for i in range(IN_USE // 2, IN_USE) if i not in revoked_set)

    def token(idx: int) -> str:
        return signer.sign(
            key,
            now=time.time(),
            sub="svc-orders",
            client_id="svc-orders",
            scope="orders:read orders:write",
            audience=AUDIENCE,
            status_idx=idx,
        ).token

    functions: dict[str, Callable[[str], object]] = {
        "with": Verifier(ISSUER, AUDIENCE, jwks=jwks, fetch=fetch).verify,
        "without": Verifier(ISSUER, AUDIENCE, jwks=jwks, fetch=fetch, check_status=False).verify,
    }
    listed = {
        "list_bytes": len(body),
        "lst_chars": len(json.loads(_payload(body))["status_list"]["lst"]),
        "revoked": len(revoked),
        "in_use": IN_USE,
        "size": SIZE,
        "fetches": fetches,
    }
    return token(clear_idx), token(revoked[len(revoked) // 2]), functions, listed


def _payload(token: bytes) -> bytes:
    segment = token.split(b".")[1]
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def check(good: str, revoked: str, functions: dict[str, Callable[[str], object]]) -> None:
    """Both accept the good token; only the checking one refuses the revoked one."""
    if functions["with"](good) != functions["without"](good):
        raise BenchError("the two verifiers disagree on the claims")
    functions["without"](revoked)
    try:
        functions["with"](revoked)
    except InvalidToken as exc:
        if exc.reason == "revoked":
            return
        raise
    raise BenchError("the status check accepted a revoked token")


def isolated(good: str, functions: dict[str, Callable[[str], object]]) -> tuple[float, float]:
    """Microseconds of the warm status check alone and of a verification without it,
    each the best of 5 timeit repeats."""
    checking = cast(Any, functions["with"]).__self__  # the bound method's Verifier
    claims = checking.verify(good)
    now = time.time()
    check = min(timeit.repeat(lambda: checking._status.check(claims, now), number=50_000, repeat=5))
    without = min(timeit.repeat(lambda: functions["without"](good), number=2_000, repeat=5))
    return check / 50_000 * 1e6, without / 2_000 * 1e6


def run(quick: bool) -> dict[str, Any]:
    iterations, rounds = (3000, 3) if quick else (20000, 5)
    good, revoked, functions, listed = setup()
    check(good, revoked, functions)
    for function in functions.values():  # warm up
        measure(function, good, iterations // 10)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in functions}
    names = list(functions)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            runs[name].append(measure(functions[name], good, iterations))
    check_us, verify_us = isolated(good, functions)
    if len(listed["fetches"]) != 1:
        raise BenchError(f"the list was fetched {len(listed['fetches'])} times, not once")
    ours, base = best_of(runs["with"]), best_of(runs["without"])
    judged = verdict(ours, base, TARGET)
    per_round = [
        round(o["requests_per_s"] / b["requests_per_s"], 3)
        for o, b in zip(runs["with"], runs["without"], strict=True)
    ]
    kib = listed["list_bytes"] / 1024
    return {
        "title": TITLE,
        "columns": ["status check", "no status check"],
        "method": "in-process loop, one thread, no server (ops/s in the requests/s row)",
        "ours": ours,
        "baseline": base,
        **judged,
        "target_text": f"with / without >= {TARGET}",
        "round_ratios": per_round,
        "status_list": {k: v for k, v in listed.items() if k != "fetches"},
        "isolated": {
            "check_us": round(check_us, 3),
            "verify_without_us": round(verify_us, 2),
            "ratio": round(verify_us / (verify_us + check_us), 3),
        },
        "notes": [
            f"Median of per-round ratios: {statistics.median(per_round):.3f}.",
            f"The status check alone (the warm lookup, timed apart, best of 5): "
            f"{check_us:.2f} µs per token, against {verify_us:.1f} µs for a verification "
            f"without it: with / without = {verify_us / (verify_us + check_us):.3f} by that "
            "cost, the figure least disturbed by other load.",
            f"The list: {listed['size']:,} indexes, {listed['in_use']:,} in use (1,000 "
            f"tokens/s), {listed['revoked']:,} revoked (1%) at random: the signed "
            f"statuslist+jwt is {listed['list_bytes']:,} bytes ({kib:.1f} KiB; lst "
            f"{listed['lst_chars']:,} characters), fetched once for the whole run.",
        ],
        "setup": {
            "duration_s": round(statistics.mean(r["wall_s"] for r in runs["with"]), 2),
            "iterations": iterations,
            "rounds": rounds,
            "token_bytes": len(good),
            "key_bits": 2048,
        },
    }


if __name__ == "__main__":
    json.dump(run("--quick" in sys.argv), sys.stdout, indent=2)
    print()
