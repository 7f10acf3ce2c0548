"""``python -m bench [--quick] [--only NAME]``: run the benchmarks, write
``bench/results/<name>.json`` and rewrite ``bench/results/REPORT.md``.

A benchmark is a module ``bench/<name>.py`` with ``run(quick: bool) -> dict`` listed in
BENCHMARKS. The dict has ``title``, ``ours`` and ``baseline`` (each with
``requests_per_s``, ``p50_ms``, ``p99_ms``), ``ratio`` (ours/baseline requests/s),
``target`` (the lowest acceptable ratio), ``meets_target`` and ``setup``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

BENCHMARKS = ["jwks"]
BUSY_WARNING = 0.3  # CPUs in use by others before starting
RESULTS = Path(__file__).resolve().parent / "results"
ROWS = [
    ("requests/s", "requests_per_s", "{:,.0f}"),
    ("latency p50 (ms)", "p50_ms", "{:.2f}"),
    ("latency p99 (ms)", "p99_ms", "{:.2f}"),
    ("server CPU per request (µs)", "cpu_us_per_request", "{:.0f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (3 s instead of 10 s)")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only NAME")
    args = parser.parse_args()
    raise_on_sigterm()
    try:
        wrk_binary()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    RESULTS.mkdir(exist_ok=True)
    host = machine()
    busy = busy_cpus()
    if busy > BUSY_WARNING:
        print(
            f"bench: warning: the machine is busy ({busy:.1f} CPUs in use before starting); "
            "numbers will be noisy",
            file=sys.stderr,
        )
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            result = importlib.import_module(f"bench.{name}").run(args.quick)
        except BenchError as exc:
            print(f"bench: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        result |= {
            "name": name,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": host,
            "busy_cpus_before": round(busy, 2),
            "load": {"threads": WRK_THREADS, "connections": WRK_CONNECTIONS, "workers": WORKERS},
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(summary(result), file=sys.stderr)
    (RESULTS / "REPORT.md").write_text(report(host))
    print(f"bench: wrote {RESULTS / 'REPORT.md'}", file=sys.stderr)
    return 1 if failed else 0


def summary(result: dict[str, Any]) -> str:
    ours, base = result["ours"], result["baseline"]
    return (
        f"bench: {result['name']}: ours {ours['requests_per_s']:,.0f} req/s, baseline "
        f"{base['requests_per_s']:,.0f} req/s, ratio {result['ratio']:.3f} "
        f"(target >= {result['target']}: {'met' if result['meets_target'] else 'NOT met'})"
    )


def report(host: dict[str, Any]) -> str:
    """REPORT.md from every result file present, in BENCHMARKS order."""
    lines = [
        "# Benchmarks",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by `make bench` "
        f"(`python -m bench`). Machine: {host['nproc']} CPUs, {host['cpu']}, "
        f"Python {host['python']}, {host['wrk']}.",
        "",
    ]
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        load = r["load"]
        lines += [
            f"## {r['title']}",
            "",
            f"Measured {r['date']}{' (--quick)' if r['quick'] else ''} on "
            f"{r['machine']['nproc']} CPUs, {r['machine']['cpu']}, Python "
            f"{r['machine']['python']}; wrk {load['threads']} thread, "
            f"{load['connections']} connections, {r['setup']['duration_s']} s per run, "
            f"best of {len(r['ours']['runs'])} runs each; {load['workers']} uvicorn worker(s).",
            "",
            "| | ours | baseline | ours / baseline |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, key, fmt in ROWS:
            ours, base = r["ours"][key], r["baseline"][key]
            lines.append(
                f"| {label} | {fmt.format(ours)} | {fmt.format(base)} | {ours / base:.3f} |"
            )
        verdict = "met" if r["meets_target"] else "**NOT met**"
        lines += ["", f"Target: requests/s ratio >= {r['target']}: {verdict}."]
        if r["busy_cpus_before"] > BUSY_WARNING:
            lines.append(
                f"Warning: {r['busy_cpus_before']} CPUs were busy with other work before this "
                "run; the numbers are noisy."
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
