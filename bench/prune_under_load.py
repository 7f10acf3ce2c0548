"""The token endpoint's latency while ``authority tokens prune`` deletes 10^6 expired rows
(10^5 with --quick) from the server's SQLite database, against its latency just before.

The database is filled by SQL with the server stopped (``oauth_setup.fill``): half of
the rows are expired families with their 10 tokens each (pruned family by family), half
are consumed and expired tokens of long sessions that are still valid (100 per family,
pruned token by token: the usual case, since a session outlives its refresh tokens).
The server runs with AUTHORITY_MAINTENANCE_INTERVAL=86400 so that only the command
prunes.

The load is the refresh benchmark's chains (``bench/loadgen.py``), paced at a fixed
rate (a share of the throughput measured during warm-up) so that latency measures the
endpoint rather than the queue of a saturated server; latency counts from each
request's scheduled time, so a stall shows in full. Phase 1: that load alone. Phase 2:
the same load while the prune command runs, until it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

from bench.harness import BenchError, free_port, stop, workdir
from bench.loadgen import RefreshChains
from bench.oauth_setup import count_due, count_rows, deployment, fill, ids

TITLE = "Token endpoint latency (refresh) before and during `authority tokens prune`"
CHAINS = 32
LOAD_SHARE = 0.4  # paced rate: this share of the closed-loop throughput of the warm-up
FAMILY_TOKENS = 10  # tokens of an expired family
SESSION_TOKENS = 100  # consumed, expired tokens of one valid session


def run(quick: bool) -> dict[str, Any]:
    duration, warmup = (3, 2) if quick else (10, 3)
    expired = 100_000 if quick else 1_000_000
    prune_limit = 60.0 if quick else 240.0
    with workdir("bench-prune-") as tmp:
        dep = deployment(tmp, AUTHORITY_MAINTENANCE_INTERVAL="86400")
        username, password, client_id = dep.user_and_public_client()
        user_id, _ = ids(dep.database)
        # The command's fixed cost (start-up, migration check), on a database with
        # nothing to prune.
        started = time.monotonic()
        if dep.cli("tokens", "prune")["deleted"] != 0:
            raise BenchError("the fresh database had rows to prune")
        overhead = time.monotonic() - started

        started = time.monotonic()
        families = expired // 2 // (FAMILY_TOKENS + 1)
        sessions = (expired - families * (FAMILY_TOKENS + 1)) // SESSION_TOKENS
        common = {"user_id": user_id, "client_id": client_id}
        fill(
            dep.database,
            families=families,
            tokens_per_family=FAMILY_TOKENS,
            kind="expired_families",
            **common,
        )
        # + 1: the newest token of each session is valid and stays
        fill(
            dep.database,
            families=sessions,
            tokens_per_family=SESSION_TOKENS + 1,
            kind="expired_tokens",
            **common,
        )
        prunable = count_due(dep.database)
        if prunable != families * (FAMILY_TOKENS + 1) + sessions * SESSION_TOKENS:
            raise BenchError(f"the filled database has {prunable} rows due, not {expired}")
        fill_s = time.monotonic() - started
        rows_before = count_rows(dep.database)

        with dep.serve(free_port()) as srv:
            chains = RefreshChains(srv, client_id, username, password, CHAINS)
            capacity = chains.run(warmup)["requests_per_s"]
            rate = max(20.0, round(LOAD_SHARE * capacity, -1))
            before = chains.run(duration, rate)

            children = os.times()
            prune = subprocess.Popen(
                [sys.executable, "-m", "authority", "tokens", "prune", "--json"],
                cwd=dep.workdir,
                env=dep.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            prune_started, prune_started_at = time.monotonic(), time.time()
            ended: list[float] = []
            output: list[str] = []

            def wait() -> None:
                out, err = prune.communicate()
                ended.append(time.monotonic())
                output.extend([out, err])

            waiter = threading.Thread(target=wait, daemon=True)
            waiter.start()
            try:
                during = chains.run_while(lambda: not ended, prune_limit, rate)
            finally:
                finished = bool(ended)
                stop(prune, grace=5)
                waiter.join(10)
            prune_s = (ended[0] if ended else time.monotonic()) - prune_started
            after = os.times()
            # The load generator's CPU counts its finished children: take the prune out.
            prune_cpu = (after.children_user - children.children_user) + (
                after.children_system - children.children_system
            )
            prune_us = 1e6 * prune_cpu / max(1, during["requests"])
            load_us = during["load_cpu_us_per_request"] - prune_us
            during["load_cpu_us_per_request"] = round(max(0.0, load_us), 1)
        deleted = prunable - count_due(dep.database, now=prune_started_at)
    if finished and prune.returncode != 0:
        raise BenchError(f"authority tokens prune failed: {output[1].strip()[-300:]}")
    during_p99, before_p99 = during["p99_ms"], before["p99_ms"]
    notes = [
        f"Load: {rate:.0f} requests/s in all ({LOAD_SHARE:.0%} of the {capacity:,.0f}/s "
        f"measured closed loop at warm-up), {CHAINS} chains.",
        f"p99 latency: {before_p99:.1f} ms before, {during_p99:.1f} ms during the prune "
        f"({during_p99 / before_p99:.1f}x); max {before['max_ms']:.0f} ms before, "
        f"{during['max_ms']:.0f} ms during; {during['errors']} failed requests during "
        f"({during['error_kinds'] or 'none'}).",
        (
            f"Prune: {deleted:,} rows deleted (of {prunable:,} due) in {prune_s:.1f} s, "
            f"{deleted / prune_s:,.0f} rows/s, using {prune_cpu:.1f} s of CPU; the "
            f"command's fixed cost (start-up, on an empty database) is {overhead:.1f} s."
            if finished
            else f"Prune: NOT finished after {prune_s:.0f} s (stopped): {deleted:,} of "
            f"{prunable:,} rows deleted, {deleted / prune_s:,.0f} rows/s."
        ),
        f"Database before: {rows_before['refresh_tokens']:,} refresh tokens, "
        f"{rows_before['refresh_families']:,} families (filled by SQL in {fill_s:.1f} s).",
    ]
    return {
        "title": TITLE,
        "columns": ["during prune", "before prune"],
        "ours": during,
        "baseline": before,
        "ratio": during_p99 / before_p99,
        "ratio_label": "p99 during / before",
        "target": None,
        "meets_target": None,
        "method": (
            f"Python load generator (bench/loadgen.py), {CHAINS} refresh chains paced at "
            f"{rate:.0f} requests/s in all, latency from the scheduled send time"
        ),
        "notes": notes,
        "prune": {
            "finished": finished,
            "seconds": round(prune_s, 2),
            "deleted": deleted,
            "due": prunable,
            "rows_per_s": round(deleted / prune_s),
            "cpu_s": round(prune_cpu, 2),
            "command_overhead_s": round(overhead, 2),
        },
        "setup": {
            "duration_s": duration,
            "warmup_s": warmup,
            "chains": CHAINS,
            "rate": rate,
            "expired_rows": prunable,
            "fill_s": round(fill_s, 1),
        },
    }
