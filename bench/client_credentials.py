"""``POST /oauth/token`` with ``grant_type=client_credentials`` and HTTP Basic client
authentication, on the real ``authority serve`` (SQLite, a confidential client made
with ``authority clients create svc``), against ``bench.baseline_apps:rs256_token``: a
bare Litestar endpoint that reads the form and signs one RS256 JWT with the same claims
(an RSA 2048 key, ``cryptography`` directly). Both under uvicorn, same workers, wrk
with a Lua script for the POST.

Target: requests/s of ours >= 0.95 x the baseline's (issue 17), with
``BENCH_WORKERS`` workers; with 2 workers each in the notes.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from bench.harness import (
    BenchError,
    compare,
    free_port,
    verdict,
    workdir,
    wrk_post_script,
)
from bench.oauth_setup import basic_auth, deployment, rs256_baseline

TITLE = "Token endpoint: client_credentials (HTTP Basic) vs a bare RS256 signing endpoint"
PATH = "/oauth/token"
BODY = "grant_type=client_credentials"
TARGET = 0.8  # with an ES256 or EdDSA key (issue 17)
TARGETS = {"RS256": 0.95}  # RSA signing costs most: the rest must cost little beside it


def post(url: str, body: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 (127.0.0.1 only)
        url,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def claims_shape(token: str) -> tuple[list[str], list[str]]:
    """The header's and the payload's claim names of a JWT."""

    def part(segment: str) -> list[str]:
        return sorted(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))

    header, payload, _ = token.split(".")
    return part(header), part(payload)


def claims_alg(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"])


def check_same_shape(ours: dict[str, Any], base: dict[str, Any]) -> None:
    """Both answers are token responses whose JWTs carry the same header and claims."""
    if sorted(ours) != sorted(base):
        raise BenchError(f"token responses differ: {sorted(ours)} vs {sorted(base)}")
    if claims_shape(ours["access_token"]) != claims_shape(base["access_token"]):
        raise BenchError(
            f"claims differ: {claims_shape(ours['access_token'])} vs "
            f"{claims_shape(base['access_token'])}"
        )
    if abs(len(ours["access_token"]) - len(base["access_token"])) > 16:
        raise BenchError("the baseline's token is not as long as ours")


def run(quick: bool) -> dict[str, Any]:
    return run_curve(quick, "RS256", TITLE)


def run_curve(quick: bool, alg: str, title: str | None = None) -> dict[str, Any]:
    """``alg`` keys on both sides, with ``BENCH_WORKERS`` workers, then with 2 workers
    each (the issue's figures: once signing is cheap, the HTTP path is the cost); the
    second comparison goes into ``two_workers`` and the report's notes."""
    title = title or f"Token endpoint: client_credentials with an {alg} key vs a bare {alg} signer"
    result = run_with(quick, title, alg)
    two = run_with(quick, title, alg, workers=2)
    result["two_workers"] = {k: two[k] for k in ("ours", "baseline", "ratio", "cpu_ratio")}
    result["notes"] = [
        f"With 2 workers each: ours {two['ours']['requests_per_s']:,.0f} req/s, bare {alg} "
        f"{two['baseline']['requests_per_s']:,.0f} req/s, ratio {two['ratio']:.2f} "
        f"(CPU per request ratio {two['cpu_ratio']:.2f})."
    ]
    return result


def run_with(
    quick: bool, title: str, alg: str = "RS256", workers: int | None = None
) -> dict[str, Any]:
    """The comparison with keys of ``alg`` on both sides, ``workers`` each (default
    ``BENCH_WORKERS``)."""
    duration, warmup = (3, 1) if quick else (10, 3)
    with workdir("bench-cc-") as tmp:
        dep = deployment(tmp, AUTHORITY_KEY_ALGORITHM=alg)
        client_id, secret = dep.confidential_client()
        headers = {"Authorization": basic_auth(client_id, secret)}
        form = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        script = wrk_post_script(tmp, "client_credentials.lua", BODY, form)
        port = free_port()
        serving = {"AUTHORITY_WORKERS": str(workers)} if workers else {}
        with dep.serve(port, **serving) as ours:
            status, ours_answer = post(ours.url(PATH), BODY, headers)
            if status != 200:
                raise BenchError(f"client_credentials answered {status}: {ours_answer}")
            if claims_alg(ours_answer["access_token"]) != alg:
                raise BenchError(f"the authority did not sign with {alg}")
            with rs256_baseline(tmp, port, client_id, alg, workers) as base:
                status, base_answer = post(base.url(PATH), BODY, headers)
                if status != 200:
                    raise BenchError(f"baseline answered {status}")
                check_same_shape(ours_answer, base_answer)
                best = compare(
                    {"ours": (ours, PATH, script), "baseline": (base, PATH, script)},
                    duration,
                    warmup,
                )
    return {
        "title": title,
        "ours": best["ours"],
        "baseline": best["baseline"],
        **verdict(best["ours"], best["baseline"], TARGETS.get(alg, TARGET)),
        "setup": {
            "alg": alg,
            "workers": workers,
            "duration_s": duration,
            "warmup_s": warmup,
            "token_bytes": len(ours_answer["access_token"]),
        },
    }
