"""``Verifier.verify`` in one process, on a token exactly as the authority signs it
(RSA 2048), side by side with two loops over the same token:

- the bare loop: base64url-decode the three segments, ``json.loads`` header and payload,
  and ``cryptography``'s RSA PKCS#1 v1.5 SHA-256 verify: the least any verifier does,
  with no checks at all. Target: ours >= 0.7 x its rate;
- PyJWT: ``jwt.decode`` with the public key object already loaded, checking ``aud``,
  ``iss`` and ``exp`` as ours does. Target: ours >= 1.5 x its rate.

No server and no network: ours has its keys from a fixed JWKS (a warm cache costs the
same). Each round runs the three loops in turn, the order reversed every other round;
each keeps its best round. Every call is timed (for the latencies); ops/s counts the
time inside the calls. CPU time per operation and the CPUs used by others meanwhile
are recorded as the other benchmarks do, and a target is judged on CPU per operation
when others made the machine noisy.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authority.signing.records import thumbprint
from authority.signing.signer import AccessTokenSigner, SigningKey
from authority.verifier import InvalidToken, Verifier
from authority.verifier.algorithms import RS256
from bench.harness import BenchError, best_of, verdict

TITLE = "Verifier.verify vs a bare decode+verify loop and PyJWT (in-process, one thread)"
ISSUER = "https://auth.example.com"
AUDIENCE = "api://orders"
TARGET_BARE = 0.7
TARGET_PYJWT = 1.5


def signed_token() -> tuple[str, rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RS256.public_jwk(key.public_key())
    kid = thumbprint(jwk)
    signer = AccessTokenSigner(ISSUER, ttl=3600)
    token = signer.sign(
        SigningKey(kid, RS256, key, 0.0),
        now=time.time(),
        sub="svc-orders",
        client_id="svc-orders",
        scope="orders:read orders:write",
        audience=AUDIENCE,
    ).token
    published = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, **jwk}
    return token, key, {"keys": [published]}


def contestants(
    token: str, key: rsa.RSAPrivateKey, jwks: dict[str, Any]
) -> dict[str, Callable[[str], object]]:
    public = key.public_key()
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    verifier = Verifier(ISSUER, AUDIENCE, jwks=jwks)

    def b64(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    def bare(token: str) -> object:
        head, payload, signature = token.split(".")
        json.loads(b64(head))
        claims = json.loads(b64(payload))
        public.verify(b64(signature), f"{head}.{payload}".encode(), pkcs1, sha256)
        return claims

    def pyjwt(token: str) -> object:
        return jwt.decode(
            token,
            public,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud"]},
        )

    return {"ours": verifier.verify, "bare": bare, "pyjwt": pyjwt}


def check(token: str, functions: dict[str, Callable[[str], object]]) -> None:
    """All three accept the token and ours rejects a forgery: no loop is a no-op."""
    claims = [f(token) for f in functions.values()]
    if any(c != claims[0] for c in claims):
        raise BenchError("the three loops disagree on the claims")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload[:-4]}AAAA.{signature}"
    try:
        functions["ours"](forged)
    except InvalidToken:
        return
    raise BenchError("Verifier.verify accepted a forged token")


def _machine_busy() -> float:
    with open("/proc/stat") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(function: Callable[[str], object], token: str, iterations: int) -> dict[str, Any]:
    samples = [0.0] * iterations
    clock = time.perf_counter
    gc.collect()
    wall0, cpu0, machine0 = time.monotonic(), time.process_time(), _machine_busy()
    for i in range(iterations):
        start = clock()
        function(token)
        samples[i] = clock() - start
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    others = max(0.0, _machine_busy() - machine0 - cpu) / wall
    samples.sort()
    return {
        "requests_per_s": round(iterations / sum(samples)),
        "p50_ms": round(samples[iterations // 2] * 1e3, 4),
        "p99_ms": round(samples[int(iterations * 0.99)] * 1e3, 4),
        "max_ms": round(samples[-1] * 1e3, 3),
        "cpu_us_per_request": round(1e6 * cpu / iterations, 2),
        "others_cpus": round(others, 2),
        "wall_s": round(wall, 2),
    }


def run(quick: bool) -> dict[str, Any]:
    iterations, rounds = (3000, 3) if quick else (20000, 5)
    token, key, jwks = signed_token()
    functions = contestants(token, key, jwks)
    check(token, functions)
    for function in functions.values():  # warm up
        measure(function, token, iterations // 10)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in functions}
    names = list(functions)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            runs[name].append(measure(functions[name], token, iterations))
    ours, bare, pyjwt = (best_of(runs[n]) for n in ("ours", "bare", "pyjwt"))
    vs_bare = verdict(ours, bare, TARGET_BARE)
    vs_pyjwt = verdict(ours, pyjwt, TARGET_PYJWT)
    per_round = {
        name: [
            round(o["requests_per_s"] / b["requests_per_s"], 3)
            for o, b in zip(runs["ours"], runs[name], strict=True)
        ]
        for name in ("bare", "pyjwt")
    }
    return {
        "title": TITLE,
        "columns": ["Verifier.verify", "bare loop"],
        "method": "in-process loop, one thread, no server (ops/s in the requests/s row)",
        "ours": ours,
        "baseline": bare,
        "pyjwt": pyjwt,
        **vs_bare,
        "meets_target": vs_bare["meets_target"] and vs_pyjwt["meets_target"],
        "target_text": f"ours / bare loop >= {TARGET_BARE} and ours / PyJWT >= {TARGET_PYJWT}",
        "vs_pyjwt": vs_pyjwt,
        "round_ratios": per_round,
        "notes": [
            f"PyJWT jwt.decode: {pyjwt['requests_per_s']:,} ops/s, "
            f"{pyjwt['cpu_us_per_request']} µs CPU per op; ours / PyJWT "
            f"{vs_pyjwt['ratio']:.3f} by ops/s, {vs_pyjwt['cpu_ratio']:.3f} by CPU "
            f"(target >= {TARGET_PYJWT}: {'met' if vs_pyjwt['meets_target'] else 'NOT met'}"
            f", judged by {'CPU' if vs_pyjwt['basis'] == 'cpu_us_per_request' else 'ops/s'}).",
            "Median of per-round ratios: ours / bare "
            f"{statistics.median(per_round['bare']):.3f}, ours / PyJWT "
            f"{statistics.median(per_round['pyjwt']):.3f}.",
        ],
        "setup": {
            "duration_s": round(statistics.mean(r["wall_s"] for r in runs["ours"]), 2),
            "iterations": iterations,
            "rounds": rounds,
            "token_bytes": len(token),
            "key_bits": 2048,
        },
    }


if __name__ == "__main__":
    json.dump(run("--quick" in sys.argv), sys.stdout, indent=2)
    print()
