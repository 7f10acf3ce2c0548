"""The report's PNG plots, drawn from result dicts with matplotlib's Agg backend (no
display needed): throughput and p99 against concurrency, refresh cost against stored
tokens, server memory over the soak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

OURS, BASE = "tab:blue", "tab:gray"


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_concurrency(r: dict[str, Any], directory: Path) -> Path:
    """Requests/s and p99 against connections: a row per endpoint, ours vs baseline."""
    series = r["series"]
    fig, axes = plt.subplots(len(series), 2, figsize=(10, 3.6 * len(series)), squeeze=False)
    for row, (name, points) in enumerate(series.items()):
        levels = [p["connections"] for p in points]
        for col, (key, label) in enumerate(
            (("requests_per_s", "requests/s"), ("p99_ms", "p99 latency (ms)"))
        ):
            ax = axes[row][col]
            for side, color in (("ours", OURS), ("baseline", BASE)):
                ax.plot(
                    levels,
                    [p[side][key] for p in points],
                    marker="o",
                    color=color,
                    label="ours" if side == "ours" else "bare RS256 baseline",
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(levels, [str(n) for n in levels])
            ax.set_xlabel("connections")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.set_title(f"{name}: {label}")
            ax.grid(alpha=0.3)
            ax.legend()
    return _save(fig, directory / "concurrency.png")


def plot_refresh_scaling(r: dict[str, Any], directory: Path) -> Path | None:
    """Refresh throughput and server CPU per refresh against stored refresh tokens
    (None for results from before the benchmark measured every size)."""
    points = r.get("points")
    if not points:
        return None
    tokens = [p["tokens"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in (
        (axes[0], "requests_per_s", "refreshes/s (32 chains)"),
        (axes[1], "cpu_us_per_request", "server CPU per refresh (µs)"),
    ):
        ax.plot(tokens, [p[key] for p in points], marker="o", color=OURS)
        ax.set_xscale("log")
        ax.set_xlabel("stored refresh tokens")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.set_title(f"refresh: {label}")
        ax.grid(alpha=0.3)
    return _save(fig, directory / "refresh_scaling.png")


def plot_soak(r: dict[str, Any], directory: Path) -> Path:
    """Server RSS and requests/s over the soak, with every key rotation marked."""
    fig, (mem_ax, rate_ax) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    samples = r["memory"]["samples"]
    duration = r["setup"]["duration_s"]
    mem_ax.plot([t for t, _ in samples], [m for _, m in samples], color=OURS, label="server RSS")
    third = duration / 3
    mem = r["memory"]
    mem_ax.axvspan(0, third, color="0.9", label="warm-up (not judged)")
    mem_ax.hlines(
        [mem["second_third_median_mib"], mem["last_third_median_mib"]],
        [third, 2 * third],
        [2 * third, duration],
        colors="tab:orange",
        linestyles="dashed",
        label="median of each third",
    )
    low = min(m for _, m in samples)
    mem_ax.set_ylim(low * 0.9, max(m for _, m in samples) * 1.05)
    mem_ax.set_ylabel("server RSS (MiB)")
    mem_ax.set_title(
        f"soak: server memory (growth {mem['growth']:.3f}, limit "
        f"{r['setup']['memory_growth_limit']})"
    )
    for kind, counts in r["timeline"].items():
        rate_ax.plot(range(len(counts)), counts, label=kind, linewidth=1)
    rate_ax.set_ylabel("requests/s")
    rate_ax.set_xlabel("seconds into the soak")
    rate_ax.set_ylim(bottom=0)
    rate_ax.set_title("requests/s by kind (verify: offline, in the load generator)")
    for ax in (mem_ax, rate_ax):
        for rotation in r["rotations"]:
            ax.axvline(
                rotation["t"],
                color="tab:red" if rotation["now"] else "tab:green",
                linestyle="-" if rotation["now"] else ":",
                linewidth=1,
            )
        ax.grid(alpha=0.3)
    # one legend entry per rotation kind, not per line
    mem_ax.plot([], [], color="tab:green", linestyle=":", label="keys rotate")
    mem_ax.plot([], [], color="tab:red", label="keys rotate --now")
    mem_ax.legend(loc="lower right", fontsize="small")
    rate_ax.legend(loc="lower right", fontsize="small", ncol=3)
    return _save(fig, directory / "soak.png")


def plot_workers(r: dict[str, Any], directory: Path) -> Path:
    """Requests/s against uvicorn workers: ours on SQLite and PostgreSQL and the bare
    RS256 endpoint, for refresh and client_credentials (32 connections)."""
    workers = [int(w) for w in r["points"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (
        (axes[0], "refresh_token (32 chains)", "refresh", ("sqlite", "postgresql", "baseline")),
        (axes[1], "client_credentials (wrk, 32 connections)", "cc", ("sqlite", "baseline")),
    )
    styles = {
        "sqlite": (OURS, "ours, SQLite"),
        "postgresql": ("tab:orange", "ours, PostgreSQL"),
        "baseline": (BASE, "bare RS256 baseline"),
    }
    for ax, title, kind, names in panels:
        for name in names:
            values = [r["points"][str(w)].get(f"{kind}:{name}") for w in workers]
            if any(v is None for v in values):
                continue
            color, label = styles[name]
            ax.plot(
                workers,
                [v["requests_per_s"] for v in values if v is not None],
                marker="o",
                color=color,
                label=label,
            )
        ax.set_xticks(workers, [str(w) for w in workers])
        ax.set_xlabel("uvicorn workers")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, directory / "workers.png")
