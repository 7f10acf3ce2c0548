"""Refresh cost against the size of the token table: the refresh benchmark's load
(``bench/loadgen.py``, rotating chains) on servers side by side whose databases hold
10^3, 10^4, 10^5 and 10^6 stored refresh tokens (up to 10^5 with --quick).

The databases are copies of one set-up database (same user, same public client),
filled with direct SQL inserts while no server runs (``oauth_setup.fill``): families
of 10 tokens as rotation leaves them, 9 consumed and the newest valid, nothing due for
pruning. Then all servers start, with the same options, and are measured in turn; the
table compares the biggest with the smallest, and every size is kept for the plot.

Target: cost with the big table <= 1.2 x the cost with the small one (cost: 1 /
requests/s, or server CPU per request when others load the machine).
"""

from __future__ import annotations

import contextlib
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
SIZES = (SMALL, 10_000, 100_000, 1_000_000)


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (3, 1) if quick else (10, 3)
    sizes = SIZES[:-1] if quick else SIZES
    big = sizes[-1]
    with workdir("bench-scaling-") as tmp:
        dep = deployment(tmp)
        username, password, client_id = dep.user_and_public_client()
        user_id, _ = ids(dep.database)
        started = time.monotonic()
        databases = {}
        for tokens in sizes:
            path = dep.copy_database(f"{tokens}.db")
            fill(
                path,
                user_id=user_id,
                client_id=client_id,
                families=tokens // TOKENS_PER_FAMILY,
                tokens_per_family=TOKENS_PER_FAMILY,
                kind="live",
            )
            databases[tokens] = path
        fill_s = time.monotonic() - started
        rows = {tokens: count_rows(path) for tokens, path in databases.items()}
        megabytes = {tokens: path.stat().st_size / 1e6 for tokens, path in databases.items()}
        with contextlib.ExitStack() as servers:
            chains = {}
            for tokens, path in databases.items():
                srv = servers.enter_context(
                    dep.serve(
                        free_port(),
                        name=f"authority-{tokens}",
                        AUTHORITY_DATABASE_URL=database_url(path),
                    )
                )
                chains[str(tokens)] = RefreshChains(srv, client_id, username, password, CHAINS)
            # three rounds: the columns differ by little, so noise matters more
            best = compare_chains(chains, duration, warmup, rounds=2 if quick else 3)
    big_label, small_label = f"{big:,} tokens", f"{SMALL:,} tokens"
    result = verdict(best[str(big)], best[str(SMALL)], TARGET, higher_is_better=False)
    return {
        "title": TITLE.format(big=big, small=SMALL),
        "columns": [big_label, small_label],
        "ours": best[str(big)],
        "baseline": best[str(SMALL)],
        "points": [
            {
                "tokens": rows[tokens]["refresh_tokens"],
                **{k: v for k, v in best[str(tokens)].items() if k != "runs"},
            }
            for tokens in sizes
        ],
        **result,
        "target_text": (
            f"refresh cost with {big_label} / with {small_label} {result['target_op']} {TARGET}"
        ),
        "method": (
            f"Python load generator (bench/loadgen.py), {CHAINS} refresh chains, closed "
            "loop, the same for both servers (both running, measured in turn)"
        ),
        "notes": [
            f"Stored refresh tokens: {rows[big]['refresh_tokens']:,} in "
            f"{rows[big]['refresh_families']:,} families vs "
            f"{rows[SMALL]['refresh_tokens']:,} in {rows[SMALL]['refresh_families']:,} "
            f"(database files {megabytes[big]:.0f} MB vs {megabytes[SMALL]:.1f} MB), "
            f"filled by SQL in {fill_s:.1f} s.",
            "Every size, measured the same way in the same run: "
            + ", ".join(
                f"{tokens:,} tokens {best[str(tokens)]['requests_per_s']:,.0f} req/s, "
                f"{best[str(tokens)]['cpu_us_per_request']:.0f} µs CPU"
                for tokens in sizes
            )
            + ".",
        ],
        "setup": {
            "duration_s": duration,
            "warmup_s": warmup,
            "chains": CHAINS,
            "tokens": list(sizes),
            "fill_s": round(fill_s, 1),
        },
    }
