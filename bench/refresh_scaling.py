"""Refresh cost against the size of the token table: the refresh benchmark's load
(``bench/loadgen.py``, rotating chains) on two servers side by side, one whose database
holds 10^3 stored refresh tokens and one with 10^6 (10^5 with --quick).

Both databases are copies of one set-up database (same user, same public client),
filled with direct SQL inserts while no server runs (``oauth_setup.fill``): families
of 10 tokens as rotation leaves them, 9 consumed and the newest valid, nothing due for
pruning. Then both servers start, with the same options, and are measured in turn.

Target: cost with the big table <= 1.2 x the cost with the small one (cost: 1 /
requests/s, or server CPU per request when others load the machine).
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import free_port, verdict, workdir
from bench.loadgen import RefreshChains, compare_chains
from bench.oauth_setup import count_rows, database_url, deployment, fill, ids

TITLE = "Token endpoint: refresh cost with {big:,} stored refresh tokens vs {small:,}"
TARGET = 1.2
CHAINS = 32
TOKENS_PER_FAMILY = 10
SMALL = 1_000


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (3, 1) if quick else (10, 3)
    big = 100_000 if quick else 1_000_000
    with workdir("bench-scaling-") as tmp:
        dep = deployment(tmp)
        username, password, client_id = dep.user_and_public_client()
        user_id, _ = ids(dep.database)
        started = time.monotonic()
        databases = {}
        for label, tokens in (("big", big), ("small", SMALL)):
            path = dep.copy_database(f"{label}.db")
            fill(
                path,
                user_id=user_id,
                client_id=client_id,
                families=tokens // TOKENS_PER_FAMILY,
                tokens_per_family=TOKENS_PER_FAMILY,
                kind="live",
            )
            databases[label] = path
        fill_s = time.monotonic() - started
        rows = {label: count_rows(path) for label, path in databases.items()}
        sizes = {label: path.stat().st_size for label, path in databases.items()}
        with (
            dep.serve(
                free_port(),
                name="authority-big",
                AUTHORITY_DATABASE_URL=database_url(databases["big"]),
            ) as big_server,
            dep.serve(
                free_port(),
                name="authority-small",
                AUTHORITY_DATABASE_URL=database_url(databases["small"]),
            ) as small_server,
        ):
            chains = {
                "big": RefreshChains(big_server, client_id, username, password, CHAINS),
                "small": RefreshChains(small_server, client_id, username, password, CHAINS),
            }
            # three rounds: the two columns differ by little, so noise matters more
            best = compare_chains(chains, duration, warmup, rounds=2 if quick else 3)
    big_label, small_label = f"{big:,} tokens", f"{SMALL:,} tokens"
    result = verdict(best["big"], best["small"], TARGET, higher_is_better=False)
    return {
        "title": TITLE.format(big=big, small=SMALL),
        "columns": [big_label, small_label],
        "ours": best["big"],
        "baseline": best["small"],
        **result,
        "target_text": (
            f"refresh cost with {big_label} / with {small_label} {result['target_op']} {TARGET}"
        ),
        "method": (
            f"Python load generator (bench/loadgen.py), {CHAINS} refresh chains, closed "
            "loop, the same for both servers (both running, measured in turn)"
        ),
        "notes": [
            f"Stored refresh tokens: {rows['big']['refresh_tokens']:,} in "
            f"{rows['big']['refresh_families']:,} families vs "
            f"{rows['small']['refresh_tokens']:,} in {rows['small']['refresh_families']:,} "
            f"(database files {sizes['big'] / 1e6:.0f} MB vs {sizes['small'] / 1e6:.1f} MB), "
            f"filled by SQL in {fill_s:.1f} s.",
        ],
        "setup": {
            "duration_s": duration,
            "warmup_s": warmup,
            "chains": CHAINS,
            "tokens": {"big": big, "small": SMALL},
            "fill_s": round(fill_s, 1),
        },
    }
