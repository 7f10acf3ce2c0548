"""The report step: ``bench/results/REPORT.md`` (tables and plots) and the README's
benchmark table, both written from the result files alone, so that
``python -m bench --report`` regenerates them without running anything.

Every figure stands beside its baseline from the same run and the ratio between them:
ours against a bare app doing the least the endpoint must do, the big table against
the small one, the soak's last third against its second third (after warm-up).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import NOISY_OTHERS_CPUS, ROOT, verdict
from bench.plots import plot_concurrency, plot_refresh_scaling, plot_soak, plot_workers
from bench.report_alg_switch import alg_switch_line, alg_switch_rows, alg_switch_section
from bench.report_instructions import (
    instructions_line,
    instructions_rows,
    instructions_section,
)
from bench.report_workers import workers_rows, workers_section

RESULTS = Path(__file__).resolve().parent / "results"
README = ROOT / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
BUSY_WARNING = 0.3  # CPUs in use by others before starting
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


def load_results(order: list[str]) -> list[dict[str, Any]]:
    """Every result file present, in ``order``."""
    found = []
    for name in order:
        path = RESULTS / f"{name}.json"
        if path.is_file():
            found.append(with_verdict(json.loads(path.read_text())))
    return found


def write(order: list[str], host: dict[str, Any]) -> list[Path]:
    """REPORT.md, its plots and the README table; returns the files written."""
    results = load_results(order)
    plots = {
        "concurrency": plot_concurrency,
        "refresh_scaling": plot_refresh_scaling,
        "soak": plot_soak,
        "workers": plot_workers,
    }
    drawn = {r["name"]: plots[r["name"]](r, RESULTS) for r in results if r["name"] in plots}
    images = {name: path for name, path in drawn.items() if path is not None}
    report = RESULTS / "REPORT.md"
    report.write_text(markdown(results, images, host))
    written = [report, *images.values()]
    if update_readme(results):
        written.append(README)
    return written


# --- one line per benchmark, for the console -----------------------------------------


def summary(result: dict[str, Any]) -> str:
    r = with_verdict(result)
    if r.get("kind") == "workers":
        return "bench: workers: " + "; ".join(
            f"{g['goal']}: {g['ratio']:.2f} ({'met' if g['met'] else 'NOT met'})"
            for g in r["goals"]
            if not g.get("skipped")
        )
    if r.get("kind") == "alg_switch":
        return alg_switch_line(r)
    if r.get("kind") == "instructions":
        return instructions_line(r)
    if r.get("kind") == "soak":
        mem = r["memory"]
        return (
            f"bench: soak: {r['requests']:,} requests, {r['verifications']:,} verifications, "
            f"{r['5xx']} 5xx, {r['false_rejections']} false rejections, "
            f"{len(r['issued_kids'])} kids issued, memory {mem['start_mib']} -> "
            f"{mem['end_mib']} MiB (growth {mem['growth']:.3f}: "
            f"{'flat' if mem['flat'] else 'GROWING'}): {'ok' if r['ok'] else 'NOT ok'}"
        )
    if r.get("kind") == "concurrency":
        parts = [
            f"{series} at {p['connections']}: "
            f"{p['ours']['requests_per_s'] / p['baseline']['requests_per_s']:.2f}"
            for series, points in r["series"].items()
            for p in points
        ]
        return "bench: concurrency: ours/baseline requests/s " + ", ".join(parts)
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


def with_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The result with the fields of ``harness.verdict`` (for benchmarks that give only
    ``ratio`` and ``target``)."""
    if result.get("target") is None or "basis" in result:
        return result
    ours, base = result["ours"], result["baseline"]
    if "cpu_us_per_request" not in ours or "cpu_us_per_request" not in base:
        return result
    return {**result, **verdict(ours, base, result["target"])}


# --- REPORT.md -----------------------------------------------------------------------


def markdown(results: list[dict[str, Any]], images: dict[str, Path], host: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by `make bench` "
        f"(`python -m bench`). Machine: {machine_text(host)}, {host['wrk']}.",
        "",
        "Each table is one run of one benchmark: both columns measured side by side, in "
        "turn, with the same server options and worker count, and their ratio beside "
        "them. Other engineers' test runs may share the machine: the harness records the "
        "server's CPU time per request (which such load disturbs much less than "
        "requests/s) and the CPUs used by others during each run; when others used more "
        f"than {NOISY_OTHERS_CPUS} CPUs, a target is judged on server CPU per request "
        "instead of requests/s.",
        "",
    ]
    for r in results:
        if r.get("kind") == "soak":
            lines += soak_section(r)
        elif r.get("kind") == "alg_switch":
            how = "the soak's load (`bench/soak.py`), closed loop"
            lines += alg_switch_section(r, measured(r, how))
        elif r.get("kind") == "concurrency":
            lines += concurrency_section(r)
        elif r.get("kind") == "workers":
            lines += workers_section(r, measured(r, r["method"]))
        elif r.get("kind") == "instructions":
            lines += instructions_section(r, measured(r, r["method"]))
        else:
            lines += comparison_section(r)
        if r["name"] in images:
            lines += [f"![{r['name']}]({images[r['name']].name})", ""]
        if r["busy_cpus_before"] > BUSY_WARNING:
            lines += [
                f"Warning: {r['busy_cpus_before']} CPUs were busy with other work before "
                "this run; the numbers are noisy.",
                "",
            ]
    return "\n".join(lines)


def machine_text(m: dict[str, Any]) -> str:
    return f"{m['nproc']} CPUs, {m['cpu']}, Python {m['python']}"


def measured(r: dict[str, Any], how: str) -> str:
    return (
        f"Measured {r['date']}{' (--quick)' if r['quick'] else ''} on "
        f"{machine_text(r['machine'])}; {how}; {r['load']['workers']} uvicorn worker(s)."
    )


def comparison_section(r: dict[str, Any]) -> list[str]:
    load = r["load"]
    a, b = r.get("columns", ["ours", "baseline"])
    how = r.get("method") or f"wrk {load['threads']} thread, {load['connections']} connections"
    runs = r["ours"].get("runs")
    how += f"; {r['setup']['duration_s']} s per run, " + (
        f"best of {len(runs)} runs each" if runs else "one run each"
    )
    lines = [
        f"## {r['title']}",
        "",
        measured(r, how),
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
    if r.get("points"):
        lines += ["", *scaling_table(r["points"])]
    if r.get("notes"):
        lines += ["", *(f"- {note}" for note in r["notes"])]
    return [*lines, ""]


def scaling_table(points: list[dict[str, Any]]) -> list[str]:
    base = points[0]
    lines = [
        f"Every size against the smallest ({base['tokens']:,} tokens):",
        "",
        "| stored tokens | requests/s | ratio | server CPU per request (µs) | ratio "
        "| p99 (ms) | ratio |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        lines.append(
            f"| {p['tokens']:,} | {p['requests_per_s']:,.0f} | "
            f"{p['requests_per_s'] / base['requests_per_s']:.3f} | "
            f"{p['cpu_us_per_request']:.0f} | "
            f"{p['cpu_us_per_request'] / base['cpu_us_per_request']:.3f} | "
            f"{p['p99_ms']:.1f} | {p['p99_ms'] / base['p99_ms']:.3f} |"
        )
    return lines


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


def concurrency_section(r: dict[str, Any]) -> list[str]:
    how = f"{r['method']}; {r['setup']['duration_s']} s per point, one run each"
    lines = [f"## {r['title']}", "", measured(r, how), ""]
    for series, points in r["series"].items():
        lines += [
            f"**{series}**",
            "",
            "| connections | ours req/s | baseline req/s | ratio | ours p99 (ms) "
            "| baseline p99 (ms) | ratio | ours CPU µs/req | baseline CPU µs/req | ratio |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in points:
            o, b = p["ours"], p["baseline"]
            lines.append(
                f"| {p['connections']} | {o['requests_per_s']:,.0f} | "
                f"{b['requests_per_s']:,.0f} | {o['requests_per_s'] / b['requests_per_s']:.3f} | "
                f"{o['p99_ms']:.2f} | {b['p99_ms']:.2f} | {o['p99_ms'] / b['p99_ms']:.3f} | "
                f"{o['cpu_us_per_request']:.0f} | {b['cpu_us_per_request']:.0f} | "
                f"{o['cpu_us_per_request'] / b['cpu_us_per_request']:.3f} |"
            )
        errors = sum(p[side]["errors"] for p in points for side in ("ours", "baseline"))
        lines += ["", f"Failed requests at any level: {errors}.", ""]
    return [*lines, "No target: the curves are for the record.", ""]


def _logout_lines(r: dict[str, Any]) -> list[str]:
    """The soak's logouts: how late each revocation reached the verifier."""
    lo = r.get("logouts")
    if not lo:
        return []
    delay = lo["delay"]
    return [
        f"Logouts: {lo['logouts']:,} (log in, verify, revoke the refresh token); "
        f"{lo['refused_revoked']:,} of their access tokens refused as `revoked` by the "
        f"verifier, {delay.get('p50_ms', 0) / 1000:.2f} s after the logout at the median, "
        f"{delay.get('p99_ms', 0) / 1000:.2f} s at p99, {lo['delay_max_s']} s at most "
        f"(bound: ttl {lo['status_list_ttl_s']} s + one poll + slack = {lo['bound_s']:.0f} "
        f"s; {lo.get('over_ttl_plus_poll', '?')} after ttl + poll = "
        f"{lo.get('ttl_plus_poll_s', '?')} s); {lo['late']} late, "
        f"{lo['refused_otherwise']} refused for another reason "
        f"(all must be 0): {'**ok**' if lo['ok'] else '**NOT ok**'}.",
        "",
    ]


def soak_section(r: dict[str, Any]) -> list[str]:
    setup, mem = r["setup"], r["memory"]
    rotations = r["rotations"]
    plain = sum(not x["now"] for x in rotations)
    conns = ", ".join(f"{n} {k}" for k, n in setup["connections"].items())
    settings = ", ".join(
        f"`{k.removeprefix('AUTHORITY_')}={v}`" for k, v in setup["settings"].items()
    )
    how = (
        f"Python load generator, closed loop, connections: {conns}; every issued access "
        f"token verified offline, plus one archived token; {setup['duration_s']} s"
    )
    lines = [
        f"## {r['title']}",
        "",
        measured(r, how),
        f"Server settings: {settings}. A CLI rotation every {setup['rotate_every_s']:.0f} s: "
        f"{plain} plain, {len(rotations) - plain} `--now`.",
        "",
        f"Verdict: {'**ok**' if r['ok'] else '**NOT ok**'}: {r['5xx']} 5xx (must be 0), "
        f"{r['false_rejections']} false rejections (must be 0), memory growth "
        f"{mem['growth']:.3f} (limit {setup['memory_growth_limit']}: "
        f"{'flat' if mem['flat'] else '**growing**'}), {len(r['issued_kids'])} signing keys "
        "seen in issued tokens (at least 3 needed for the soak to prove anything).",
        "",
        *_logout_lines(r),
        "| kind | requests | requests/s | p50 (ms) | p99 (ms) | max (ms) | 5xx | other failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, k in r["kinds"].items():
        lines.append(
            f"| {kind} | {k['requests']:,} | {k['requests_per_s']:,.0f} | {k['p50_ms']:.2f} | "
            f"{k['p99_ms']:.2f} | {k['max_ms']:.1f} | {k['5xx']} | {k['failed'] - k['5xx']} |"
        )
    lines += [
        "",
        "`verify`: each issued token verified offline right away (`Verifier.averify`); "
        "`verify_old`: a random unexpired token from the archive (possibly signed by a "
        "retired key). A rejection of either is a false rejection.",
        "",
        "Drift: the last third of the run against the second third (the first is warm-up).",
        "",
        "| kind | req/s 2nd third | req/s last third | ratio | p99 2nd third (ms) "
        "| p99 last third (ms) | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, k in r["kinds"].items():
        a, b = k["drift"]["second_third"], k["drift"]["last_third"]
        lines.append(
            f"| {kind} | {a['requests_per_s']:,.0f} | {b['requests_per_s']:,.0f} | "
            f"{_ratio(b['requests_per_s'], a['requests_per_s'])} | {a['p99_ms']:.2f} | "
            f"{b['p99_ms']:.2f} | {_ratio(b['p99_ms'], a['p99_ms'])} |"
        )
    lines += [
        "",
        "Rotations: latency in the 2 s after each CLI rotation (plus the command's own run "
        "time) against the rest of the run.",
        "",
        "| kind | p50 otherwise (ms) | p50 after rotation (ms) | ratio | p99 otherwise (ms) "
        "| p99 after rotation (ms) | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, k in r["kinds"].items():
        a, b = k["rotation_windows"]["otherwise"], k["rotation_windows"]["after_rotation"]
        lines.append(
            f"| {kind} | {a['p50_ms']:.2f} | {b['p50_ms']:.2f} | "
            f"{_ratio(b['p50_ms'], a['p50_ms'])} | {a['p99_ms']:.2f} | {b['p99_ms']:.2f} | "
            f"{_ratio(b['p99_ms'], a['p99_ms'])} |"
        )
    lines += [
        "",
        "Server memory (RSS of the process tree, MiB), sampled every second:",
        "",
        "| idle before load | start | end | max | median 2nd third | median last third "
        "| last / 2nd |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {mem['idle_mib']} | {mem['start_mib']} | {mem['end_mib']} | {mem['max_mib']} | "
        f"{mem['second_third_median_mib']} | {mem['last_third_median_mib']} | "
        f"{mem['growth']:.3f} |",
        "",
        f"- Signing keys: {len(r['issued_kids'])} distinct `kid`s in issued tokens, "
        f"{len(r['published_kids'])} seen in the JWKS; after the run the store holds "
        + ", ".join(f"{k['state']} {k['kid'][:8]}…" for k in r["keys_after"])
        + ".",
        f"- Server CPU per request (HTTP only): {r['cpu_us_per_request']:.0f} µs; CPUs used by "
        f"others meanwhile: {r['others_cpus']}.",
    ]
    for rejection in r["rejections"]:
        lines.append(f"- False rejection: {json.dumps(rejection)}")
    return [*lines, ""]


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.3f}" if base else "-"


# --- README --------------------------------------------------------------------------


def readme_table(results: list[dict[str, Any]]) -> list[str]:
    """The latest result of every benchmark: one row each, ours beside its baseline."""
    if not results:
        return ["No benchmark results yet: run `make bench`."]
    dates = sorted({r["date"][:10] for r in results})
    machines = sorted({machine_text(r["machine"]) for r in results})
    quick = sum(r["quick"] for r in results)
    mode = (
        "--quick"
        if quick == len(results)
        else "full"
        if not quick
        else f"{quick} of {len(results)} --quick"
    )
    lines = [
        f"Latest results, {' to '.join([dates[0], dates[-1]][: len(dates)])}, on "
        f"{'; '.join(machines)} ({mode} runs; ratios against baselines measured in the "
        "same run; details and plots in [bench/results/REPORT.md](bench/results/REPORT.md)):",
        "",
        "| benchmark | ours | baseline | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        lines += readme_rows(r)
    return lines


def readme_rows(r: dict[str, Any]) -> list[str]:
    if r.get("kind") == "workers":
        return workers_rows(r)
    if r.get("kind") == "instructions":
        return instructions_rows(r)
    if r.get("kind") == "alg_switch":
        return alg_switch_rows(r)
    if r.get("kind") == "concurrency":
        rows = []
        for series, points in r["series"].items():
            last = points[-1]
            o, b = last["ours"], last["baseline"]
            rows.append(
                f"| {series} at {last['connections']} connections | "
                f"{o['requests_per_s']:,.0f} req/s | "
                f"{b['requests_per_s']:,.0f} req/s (bare RS256) | "
                f"{o['requests_per_s'] / b['requests_per_s']:.2f} | for the record |"
            )
        return rows
    if r.get("kind") == "soak":
        mem, limit = r["memory"], r["setup"]["memory_growth_limit"]
        rows = [
            f"| soak: server RSS, last third vs second | {mem['last_third_median_mib']} MiB | "
            f"{mem['second_third_median_mib']} MiB | {mem['growth']:.3f} | <= {limit}: "
            f"{'flat' if mem['flat'] else '**growing**'} |"
        ]
        for kind in ("client_credentials", "refresh"):
            last, second = (r["kinds"][kind]["drift"][x] for x in ("last_third", "second_third"))
            rows.append(
                f"| soak: {kind} p99, last third vs second | {last['p99_ms']:.1f} ms | "
                f"{second['p99_ms']:.1f} ms | {_ratio(last['p99_ms'], second['p99_ms'])} | "
                "for the record |"
            )
        lo = r.get("logouts")
        if lo:
            rows.append(
                f"| soak: {lo['logouts']:,} logouts, revoked access token refused by the "
                f"verifier after (max) | {lo['delay_max_s']} s | bound {lo['bound_s']:.0f} s "
                f"(ttl {lo['status_list_ttl_s']} s + poll + slack) | | {lo['late']} late: "
                f"{'met' if lo['ok'] else '**NOT met**'} |"
            )
        rows.append(
            f"| soak: {r['requests']:,} requests, {r['verifications']:,} offline "
            f"verifications, {len(r['rotations'])} key rotations ({len(r['issued_kids'])} "
            f"signing keys) in {r['setup']['duration_s']:.0f} s | {r['5xx']} 5xx, "
            f"{r['false_rejections']} false rejections | | | both 0: "
            f"{'met' if r['5xx'] == 0 and r['false_rejections'] == 0 else '**NOT met**'} |"
        )
        return rows
    a, b = r.get("columns", ["ours", "baseline"])
    name = r["name"]
    if r.get("target") is None:
        label = r.get("ratio_label", f"{a} / {b}")
        return [
            f"| {name}: p99 | {r['ours']['p99_ms']:.1f} ms ({a}) | "
            f"{r['baseline']['p99_ms']:.1f} ms ({b}) | {r['ratio']:.2f} ({label}) | "
            "for the record |"
        ]
    rows = [_target_row(name, r, r["ours"], r["baseline"], a, b, r)]
    if "vs_pyjwt" in r:
        rows.append(_target_row(name, r, r["ours"], r["pyjwt"], a, "PyJWT", r["vs_pyjwt"]))
    return rows


def _target_row(
    name: str,
    r: dict[str, Any],
    ours: dict[str, Any],
    base: dict[str, Any],
    a: str,
    b: str,
    judged: dict[str, Any],
) -> str:
    """One README row: the figure the target was judged on, for both, and the ratio."""
    basis = judged.get("basis", "requests_per_s")
    per = "op" if "ops/s" in r.get("method", "") else "req"
    unit = f"µs CPU/{per}" if basis == "cpu_us_per_request" else f"{per}/s"
    op = judged.get("target_op", ">=")
    cost = " (cost)" if op == "<=" else ""
    met = "met" if judged["meets_target"] else "**NOT met**"
    return (
        f"| {name} | {ours[basis]:,.0f} {unit} ({a}) | {base[basis]:,.0f} {unit} ({b}) | "
        f"{judged.get('ratio_used', judged['ratio']):.2f}{cost} | {op} {judged['target']}: "
        f"{met} |"
    )


def update_readme(results: list[dict[str, Any]]) -> bool:
    """Replace the README's text between the bench markers; False without markers."""
    text = README.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    block = "\n".join([README_START, *readme_table(results), README_END])
    README.write_text(pattern.sub(lambda _: block, text, count=1))
    return True
