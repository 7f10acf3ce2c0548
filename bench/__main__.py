"""``python -m bench [--quick] [--only NAME]``: run the benchmarks, write
``bench/results/<name>.json`` and rewrite ``bench/results/REPORT.md``.

A benchmark is a module ``bench/<name>.py`` with ``run(quick: bool) -> dict`` listed in
BENCHMARKS. The dict has ``title``, ``ours`` and ``baseline`` (each with
``requests_per_s``, ``p50_ms``, ``p99_ms``, ``cpu_us_per_request``), ``ratio``
(ours/baseline requests/s), ``target`` (the lowest acceptable ratio, or None),
``meets_target`` and ``setup``; optionally ``columns`` (the two columns' names instead
of ours and baseline), the fields of ``harness.verdict`` (``cpu_ratio``, ``basis``,
``ratio_used``, ``target_op``), ``target_text``, ``method`` (how the load was made, when
not by wrk) and ``notes`` (lines for the report).
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
    NOISY_OTHERS_CPUS,
    WORKERS,
    WRK_CONNECTIONS,
    WRK_THREADS,
    BenchError,
    busy_cpus,
    machine,
    raise_on_sigterm,
    verdict,
    wrk_binary,
)

BENCHMARKS = [
    "jwks", "client_credentials", "refresh", "refresh_scaling", "prune_under_load", "verify",
]
BUSY_WARNING = 0.3  # CPUs in use by others before starting
RESULTS = Path(__file__).resolve().parent / "results"
ROWS = [
    ("requests/s (best run)", "requests_per_s", "{:,.0f}"),
    ("latency p50 (ms)", "p50_ms", "{:.2f}"),
    ("latency p99 (ms)", "p99_ms", "{:.2f}"),
    ("latency max (ms)", "max_ms", "{:.1f}"),
    ("server CPU per request (µs, lowest run)", "cpu_us_per_request", "{:.0f}"),
    ("load generator CPU per request (µs)", "load_cpu_us_per_request", "{:.0f}"),
    ("CPUs used by others meanwhile (most)", "others_cpus", "{:.2f}"),
]
BASIS = {"requests_per_s": "requests/s", "cpu_us_per_request": "server CPU per request"}


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


def with_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The result with the fields of ``harness.verdict`` (for benchmarks that give only
    ``ratio`` and ``target``)."""
    if result.get("target") is None or "basis" in result:
        return result
    ours, base = result["ours"], result["baseline"]
    if "cpu_us_per_request" not in ours or "cpu_us_per_request" not in base:
        return result
    return {**result, **verdict(ours, base, result["target"])}


def target_line(r: dict[str, Any]) -> str:
    if r.get("target") is None:
        return "No target: measured for the record."
    op = r.get("target_op", ">=")
    text = r.get("target_text") or f"ours / baseline {op} {r['target']}"
    verdict_text = "met" if r["meets_target"] else "**NOT met**"
    if "basis" not in r:
        return f"Target: requests/s {text}: {verdict_text} ({r['ratio']:.3f})."
    used = BASIS[r["basis"]]
    why = (
        f"others used over {NOISY_OTHERS_CPUS} CPUs during a run, so requests/s was noisy"
        if r["basis"] == "cpu_us_per_request"
        else "the machine was quiet enough"
    )
    return (
        f"Target: {text}: {verdict_text}, judged on {used} ({why}): "
        f"{r['ratio_used']:.3f}. By requests/s: {r['ratio']:.3f}; "
        f"by server CPU per request: {r['cpu_ratio']:.3f}."
    )


def summary(result: dict[str, Any]) -> str:
    r = with_verdict(result)
    a, b = r.get("columns", ["ours", "baseline"])
    ours, base = r["ours"], r["baseline"]
    line = (
        f"bench: {r['name']}: {a} {ours['requests_per_s']:,.0f} req/s "
        f"p99 {ours['p99_ms']:.1f} ms, {b} {base['requests_per_s']:,.0f} req/s "
        f"p99 {base['p99_ms']:.1f} ms"
    )
    if r.get("target") is None:
        return f"{line}; " + " ".join(r.get("notes", []))
    basis = BASIS.get(r.get("basis", "requests_per_s"))
    return (
        f"{line}, ratio {r.get('ratio_used', r['ratio']):.3f} by {basis} "
        f"(target {r.get('target_op', '>=')} {r['target']}: "
        f"{'met' if r['meets_target'] else 'NOT met'})"
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
        "Each table is one run of one benchmark: both columns measured side by side, in "
        "turn, with the same server options and worker count. Other engineers' test runs "
        "may share the machine: the harness records the server's CPU time per request "
        "(which such load disturbs much less than requests/s) and the CPUs used by others "
        f"during each run; when others used more than {NOISY_OTHERS_CPUS} CPUs, a target "
        "is judged on server CPU per request instead of requests/s.",
        "",
    ]
    for name in BENCHMARKS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        r = with_verdict(json.loads(path.read_text()))
        load = r["load"]
        a, b = r.get("columns", ["ours", "baseline"])
        how = r.get("method") or (
            f"wrk {load['threads']} thread, {load['connections']} connections"
        )
        lines += [
            f"## {r['title']}",
            "",
            f"Measured {r['date']}{' (--quick)' if r['quick'] else ''} on "
            f"{r['machine']['nproc']} CPUs, {r['machine']['cpu']}, Python "
            f"{r['machine']['python']}; {how}; {r['setup']['duration_s']} s per run, "
            f"{_runs(r)}; {load['workers']} uvicorn worker(s).",
            "",
            f"| | {a} | {b} | {a} / {b} |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, key, fmt in ROWS:
            ours, base = r["ours"].get(key), r["baseline"].get(key)
            if ours is None or base is None:
                continue
            ratio = f"{ours / base:.3f}" if base else "-"
            lines.append(f"| {label} | {fmt.format(ours)} | {fmt.format(base)} | {ratio} |")
        lines += ["", target_line(r)]
        if r.get("notes"):
            lines += ["", *(f"- {note}" for note in r["notes"])]
        if r["busy_cpus_before"] > BUSY_WARNING:
            lines.append(
                f"\nWarning: {r['busy_cpus_before']} CPUs were busy with other work before this "
                "run; the numbers are noisy."
            )
        lines.append("")
    return "\n".join(lines)


def _runs(r: dict[str, Any]) -> str:
    runs = r["ours"].get("runs")
    return f"best of {len(runs)} runs each" if runs else "one run each"


if __name__ == "__main__":
    sys.exit(main())
