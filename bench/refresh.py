"""``POST /oauth/token`` with ``grant_type=refresh_token`` on SQLite, rotating on every
use, against the bare RS256 endpoint (``bench.baseline_apps:rs256_token``), both driven
by the same Python load generator (``bench/loadgen.py``): one chain per connection,
each request presenting the token the previous one returned. A user (``authority users
create bench``) and a public client allowed ``password`` and ``refresh_token`` are made
with the CLI; each chain starts with a password grant, which is not measured.

Target: requests/s of ours >= 0.5 x the baseline's.
"""

from __future__ import annotations

from typing import Any

from bench.harness import free_port, verdict, workdir
from bench.loadgen import RefreshChains, compare_chains
from bench.oauth_setup import deployment, rs256_baseline

TITLE = "Token endpoint: refresh_token with rotation (SQLite) vs a bare RS256 signing endpoint"
TARGET = 0.5
CHAINS = 32


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (3, 1) if quick else (10, 3)
    with workdir("bench-refresh-") as tmp:
        dep = deployment(tmp)
        username, password, client_id = dep.user_and_public_client()
        port = free_port()
        with (
            dep.serve(port) as ours,
            rs256_baseline(tmp, port, client_id) as base,
        ):
            chains = {
                "ours": RefreshChains(ours, client_id, username, password, CHAINS),
                "baseline": RefreshChains(base, client_id, username, password, CHAINS),
            }
            best = compare_chains(chains, duration, warmup)
    return {
        "title": TITLE,
        "ours": best["ours"],
        "baseline": best["baseline"],
        **verdict(best["ours"], best["baseline"], TARGET),
        "method": (
            f"Python load generator (bench/loadgen.py, uvloop + httptools), {CHAINS} refresh "
            "chains (one keep-alive connection each), closed loop, the same client for both"
        ),
        "setup": {"duration_s": duration, "warmup_s": warmup, "chains": CHAINS},
    }
