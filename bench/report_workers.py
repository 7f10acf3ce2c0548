"""The workers benchmark's part of the report (``bench/workers.py``): its REPORT.md
section and its README rows."""

from __future__ import annotations

from typing import Any

SERIES = [
    ("refresh:sqlite", "refresh_token, SQLite, 32 connections"),
    ("refresh:postgresql", "refresh_token, PostgreSQL, 32 connections"),
    ("refresh:baseline", "bare RS256 endpoint, refresh form, 32 connections"),
    ("cc:sqlite", "client_credentials, 32 connections"),
    ("cc:baseline", "bare RS256 endpoint, client_credentials form, 32 connections"),
    ("wide:sqlite", "refresh_token, SQLite, 64 connections"),
    ("wide:postgresql", "refresh_token, PostgreSQL, 64 connections"),
    ("wide:baseline", "bare RS256 endpoint, refresh form, 64 connections"),
]
BASELINE_OF = {"refresh": "refresh:baseline", "cc": "cc:baseline", "wide": "wide:baseline"}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def workers_section(r: dict[str, Any], measured: str) -> list[str]:
    pg = r["postgres"]
    lines = [f"## {r['title']}", "", measured, ""]
    if pg["skipped"]:
        lines += [f"PostgreSQL rows skipped: {pg['skipped']}", ""]
    else:
        lines += [
            f"PostgreSQL {pg['version']}, local, a throwaway cluster with default "
            f"durability ({pg['durability']}), sharing the two cores.",
            "",
        ]
    lines += [
        "| workers | what | requests/s | ratio | p50 (ms) | p99 (ms) | p99 ratio "
        "| server CPU µs/req | CPU ratio | DB CPU µs/req | others' CPUs |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workers, points in r["points"].items():
        for key, label in SERIES:
            p = points.get(key)
            if p is None:
                continue
            base = points.get(BASELINE_OF[key.split(":")[0]])
            own = not key.endswith(":baseline") and base is not None

            def ratio(field: str, p: dict[str, Any] = p, base: Any = base, own: bool = own) -> str:
                return _fmt(p[field] / base[field] if own else None, ".3f")

            lines.append(
                f"| {workers} | {label} | {p['requests_per_s']:,.0f} | "
                f"{ratio('requests_per_s')} | "
                f"{p['p50_ms']:.2f} | {p['p99_ms']:.2f} | "
                f"{ratio('p99_ms')} | "
                f"{p['cpu_us_per_request']:.0f} | "
                f"{ratio('cpu_us_per_request')} | "
                f"{_fmt(p.get('db_cpu_us_per_request'), '.0f')} | {p['others_cpus']:.2f} |"
            )
    lines += [
        "",
        "Ratios are ours / the bare endpoint under the same worker count, in the same run; "
        "requests/s is each one's best run, CPU per request its lowest.",
        "",
        "Spread over the rounds (requests/s of every run):",
        "",
    ]
    for workers, points in r["points"].items():
        for key, label in SERIES:
            p = points.get(key)
            if p is not None and p.get("runs"):
                runs = ", ".join(f"{run['requests_per_s']:,.0f}" for run in p["runs"])
                errors = sum(run.get("errors", 0) for run in p["runs"])
                failed = f" ({errors} failed requests: {p.get('error_kinds')})" if errors else ""
                lines.append(f"- {workers} worker(s), {label}: {runs}{failed}")
    lines += [
        "",
        "Goals (issue 14), each judged on the median of its ratios within a round (a "
        "round measures every server once, in turn); ours and baseline are the best "
        "runs, whose ratio is given beside:",
        "",
        "| goal | ours | baseline | ratio (median of rounds) | each round | best runs' ratio "
        "| target |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for g in r["goals"]:
        lines.append(_goal_row(g))
    return [*lines, ""]


UNITS = {"requests_per_s": "req/s", "cpu_us_per_request": "µs CPU", "p99_ms": "ms p99"}


def _goal_row(g: dict[str, Any], detail: bool = True) -> str:
    extra = 2 if detail else 0
    if g.get("skipped"):
        return f"| {g['goal']} | - | - | - |{' - |' * extra} {g['op']} {g['target']}: skipped |"
    unit = UNITS[g["key"]]
    spec = ",.0f" if g["key"] != "p99_ms" else ".1f"
    rounds = ", ".join(f"{r:.2f}" for r in g.get("rounds", []))
    best = g.get("best_ratio")
    more = f" {rounds} | {_fmt(best, '.2f')} |" if detail else ""
    # The README has one ratio column: say which (the figures beside it are best runs).
    median = "" if detail or not rounds else " (median of rounds)"
    return (
        f"| {g['goal']} | {format(g['ours'], spec)} {unit} | {format(g['baseline'], spec)} "
        f"{unit} | {g['ratio']:.2f}{median} |{more} {g['op']} {g['target']}: "
        f"{'met' if g['met'] else '**NOT met**'} |"
    )


def workers_rows(r: dict[str, Any]) -> list[str]:
    """README rows: one per goal (the ratio is the median of the rounds')."""
    return [_goal_row({**g, "goal": f"workers: {g['goal']}"}, False) for g in r["goals"]]
