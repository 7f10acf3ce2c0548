"""``GET /.well-known/jwks.json`` of the real ``authority serve`` against a bare Litestar
app returning the same bytes, both under uvicorn (uvloop, httptools), same workers.

Target: requests/s of ours >= 0.9 x the baseline's.
"""

from __future__ import annotations

from typing import Any

from bench.harness import BenchError, authority, baseline, compare, free_port, get, workdir

TITLE = "JWKS: GET /.well-known/jwks.json vs a bare app returning the same bytes"
PATH = "/.well-known/jwks.json"
TARGET = 0.9


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (3, 1) if quick else (10, 3)
    with workdir("bench-jwks-") as tmp, authority(tmp, free_port()) as ours:
        status, headers, body = get(ours.url(PATH))
        if status != 200 or not headers.get("ETag") or not body.startswith(b'{"keys":'):
            raise BenchError(f"{PATH} answered {status} (ETag {headers.get('ETag')!r})")
        body_file = tmp / "jwks.json"
        body_file.write_bytes(body)
        factory = "bench.baseline_apps:constant_bytes"
        with baseline(tmp, free_port(), factory, BENCH_BODY_FILE=str(body_file)) as base:
            status, _, same = get(base.url("/"))
            if status != 200 or same != body:
                raise BenchError(f"baseline answered {status} with {len(same)} bytes")
            best = compare({"ours": (ours, PATH), "baseline": (base, "/")}, duration, warmup)
    ratio = best["ours"]["requests_per_s"] / best["baseline"]["requests_per_s"]
    return {
        "title": TITLE,
        "ours": best["ours"],
        "baseline": best["baseline"],
        "ratio": ratio,
        "target": TARGET,
        "meets_target": ratio >= TARGET,
        "setup": {"duration_s": duration, "warmup_s": warmup, "body_bytes": len(body)},
    }
