"""How ``bench/soak_alg_switch.py``'s result reads: one console line, a REPORT.md
section and README rows."""

from __future__ import annotations

from typing import Any


def alg_switch_line(r: dict[str, Any]) -> str:
    s = r["switch"]
    return (
        f"bench: soak_alg_switch: {s['from']} -> {s['to']}: {r['requests']:,} requests, "
        f"{r['verifications']:,} verifications, {r['5xx']} 5xx, "
        f"{r['false_rejections']} false rejections, tokens by alg {s['issued_by_alg']}, "
        f"new key signing from {s['new_key_first_signed_at_s']} s: "
        f"{'ok' if r['ok'] else 'NOT ok'}"
    )


def alg_switch_section(r: dict[str, Any], how: str) -> list[str]:
    s, setup = r["switch"], r["setup"]
    issued = ", ".join(f"{alg} {n:,}" for alg, n in sorted(s["issued_by_alg"].items()))
    lines = [
        f"## {r['title']}",
        "",
        how,
        f"`authority keys rotate --alg {s['to']}` at {s['rotated_at_s']} s of "
        f"{setup['duration_s']} s; the new key ({s['new_kid']}) was in the JWKS the load "
        f"fetched at {s['new_key_seen_in_jwks_at_s']} s and first signed a token at "
        f"{s['new_key_first_signed_at_s']} s; the {s['from']} key stayed published.",
        "",
        f"Verdict: {'**ok**' if r['ok'] else '**NOT ok**'}: {r['false_rejections']} false "
        f"rejections (must be 0) in {r['verifications']:,} offline verifications, "
        f"{r['5xx']} 5xx (must be 0); tokens issued by algorithm: {issued}.",
        "",
        f"`client_credentials` requests/s (all kinds of load running): "
        f"{s['cc_requests_per_s_before']:,.0f} before the switch ({s['from']} signing), "
        f"{s['cc_requests_per_s_after']:,.0f} once {s['to']} signs.",
        "",
        "| kind | requests | requests/s | p50 (ms) | p99 (ms) | max (ms) | 5xx | other failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, k in r["kinds"].items():
        lines.append(
            f"| {kind} | {k['requests']:,} | {k['requests_per_s']:,.0f} | {k['p50_ms']:.2f} | "
            f"{k['p99_ms']:.2f} | {k['max_ms']:.1f} | {k['5xx']} | {k['failed'] - k['5xx']} |"
        )
    lines.append("")
    if r["rejections"]:
        lines += ["First rejections:", ""]
        lines += [f"- {x}" for x in r["rejections"][:5]]
        lines.append("")
    return lines


def alg_switch_rows(r: dict[str, Any]) -> list[str]:
    s = r["switch"]
    met = r["false_rejections"] == 0 and r["5xx"] == 0 and s["switched"]
    return [
        f"| soak_alg_switch: {s['from']} -> {s['to']} under load, {r['verifications']:,} "
        f"offline verifications | {r['false_rejections']} false rejections, {r['5xx']} 5xx | "
        f"| | both 0, {s['to']} signing: {'met' if met else '**NOT met**'} |",
        f"| soak_alg_switch: client_credentials req/s, {s['to']} vs {s['from']} signing "
        f"(mixed load) | {s['cc_requests_per_s_after']:,.0f} | "
        f"{s['cc_requests_per_s_before']:,.0f} | "
        f"{s['cc_requests_per_s_after'] / max(1.0, s['cc_requests_per_s_before']):.2f} "
        "| for the record |",
    ]
