"""``python -m bench [NAME ...] [--quick] [--duration S] [--report]``: run the benchmarks
(all of them by default), write ``bench/results/<name>.json``, then rewrite
``bench/results/REPORT.md``, its PNG plots and the README's benchmark table
(``bench/report.py``).

A benchmark is a module ``bench/<name>.py`` with ``run(quick: bool) -> dict`` listed in
BENCHMARKS. A comparison's dict has ``title``, ``ours`` and ``baseline`` (each with
``requests_per_s``, ``p50_ms``, ``p99_ms``, ``cpu_us_per_request``), ``ratio``
(ours/baseline requests/s), ``target`` (the lowest acceptable ratio, or None),
``meets_target`` and ``setup``; optionally ``columns`` (the two columns' names instead
of ours and baseline), the fields of ``harness.verdict`` (``cpu_ratio``, ``basis``,
``ratio_used``, ``target_op``), ``target_text``, ``method`` (how the load was made, when
not by wrk), ``points`` (one measurement per size) and ``notes`` (lines for the report).
The concurrency sweep and the soak have a ``kind`` and their own shape (see their
modules); the soak's ``run`` also takes ``duration`` (default: the short mode).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import UTC, datetime

from bench.harness import (
    WORKERS,
    WRK_CONNECTIONS,
    WRK_THREADS,
    BenchError,
    busy_cpus,
    machine,
    raise_on_sigterm,
    wrk_binary,
)
from bench.report import BUSY_WARNING, RESULTS, summary, write

BENCHMARKS = [
    "jwks",
    "client_credentials",
    "client_credentials_es256",
    "client_credentials_eddsa",
    "client_credentials_dpop",
    "refresh",
    "concurrency",
    "refresh_scaling",
    "workers",
    "instructions",
    "prune_under_load",
    "verify",
    "verify_status",
    "soak",
    "soak_alg_switch",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="same as NAME")
    parser.add_argument("--quick", action="store_true", help="short runs (3 s instead of 10 s)")
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of soak (default: its short mode, 45 s; 30 s with --quick)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: rewrite REPORT.md, the plots and the README table from the results",
    )
    args = parser.parse_args()
    names = [*args.names, *(args.only or [])] or BENCHMARKS
    if unknown := sorted(set(names) - set(BENCHMARKS)):
        parser.error(f"no benchmark named {', '.join(unknown)}")
    if args.duration is not None and not {"soak", "soak_alg_switch"} & set(names):
        parser.error("--duration is the soaks': name soak or soak_alg_switch too")
    raise_on_sigterm()
    RESULTS.mkdir(exist_ok=True)
    host = machine()
    failed = [] if args.report else run_benchmarks(names, args.quick, args.duration, host)
    if failed is None:
        return 1
    for path in write(BENCHMARKS, host):
        print(f"bench: wrote {path}", file=sys.stderr)
    return 1 if failed else 0


def run_benchmarks(
    names: list[str], quick: bool, duration: float | None, host: dict[str, object]
) -> list[str] | None:
    """Run ``names`` in BENCHMARKS order; the names that failed (None: none could run)."""
    try:
        wrk_binary()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return None
    busy = busy_cpus()
    if busy > BUSY_WARNING:
        print(
            f"bench: warning: the machine is busy ({busy:.1f} CPUs in use before starting); "
            "numbers will be noisy",
            file=sys.stderr,
        )
    failed = []
    for name in (n for n in BENCHMARKS if n in names):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        soaks = ("soak", "soak_alg_switch")
        options = {"duration": duration} if name in soaks and duration else {}
        try:
            result = module.run(quick, **options)
        except BenchError as exc:
            print(f"bench: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        result |= {
            "name": name,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": quick,
            "machine": host,
            "busy_cpus_before": round(busy, 2),
            "load": {"threads": WRK_THREADS, "connections": WRK_CONNECTIONS, "workers": WORKERS},
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(summary(result), file=sys.stderr)
        if result.get("kind") in ("soak", "alg_switch") and not result["ok"]:
            failed.append(name)
    return failed


if __name__ == "__main__":
    sys.exit(main())
