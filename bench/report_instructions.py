"""The instructions benchmark's part of the report (``bench/instructions.py``)."""

from __future__ import annotations

from typing import Any

KINDS = ("refresh_token", "client_credentials")
MEASURES = (("instructions", "instructions"), ("cycles", "estimated cycles"))


def instructions_line(r: dict[str, Any]) -> str:
    parts = ", ".join(
        f"{kind} {label} {r['ratios'][f'{kind}:{what}']:.2f}"
        for kind in KINDS
        for what, label in MEASURES
    )
    return f"bench: instructions: ours/baseline per request: {parts}"


def instructions_section(r: dict[str, Any], measured: str) -> list[str]:
    ours, base = r["results"]["ours"], r["results"]["baseline"]
    lines = [
        f"## {r['title']}",
        "",
        measured,
        "",
        "| request | measure | ours | baseline | ours - baseline | ours / baseline |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind in KINDS:
        for what, label in MEASURES:
            o, b = ours[kind][f"{what}_per_request"], base[kind][f"{what}_per_request"]
            lines.append(
                f"| {kind} | {label} | {o:,} | {b:,} | {o - b:,} | "
                f"{r['ratios'][f'{kind}:{what}']:.3f} |"
            )
    lines += [
        "",
        f"Subtracted, what each process did on its own: ours "
        f"{ours['idle_instructions_per_s']:,} instructions/s, the baseline "
        f"{base['idle_instructions_per_s']:,}. Estimated cycles are KCachegrind's "
        "Ir + 10 Bm + 10 L1m + 100 LLm over callgrind's simulated caches and branch "
        "predictor. For the record: the goals are judged on time (workers).",
        "",
    ]
    return lines


def instructions_rows(r: dict[str, Any]) -> list[str]:
    ours, base = r["results"]["ours"], r["results"]["baseline"]
    rows = []
    for kind in KINDS:
        o, b = ours[kind]["cycles_per_request"], base[kind]["cycles_per_request"]
        rows.append(
            f"| instructions: {kind}, estimated cycles | {o / 1e6:.2f} M per request | "
            f"{b / 1e6:.2f} M (bare RS256) | {r['ratios'][f'{kind}:cycles']:.2f} "
            "| for the record |"
        )
    return rows
