"""Processes sharing one key store (README, "Signing keys"): replicas agree, only one performs a
step, and all see it within seconds.

Two ``authority keys rotate`` started together; two ``authority serve`` sharing one
database (SQLite file or PostgreSQL, ``AUTHORITY_KEYSTORE=database``) or one keys
directory (``AUTHORITY_KEYSTORE=file``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from authority.settings import Settings
from authority.signing.manager import RotateResult, rotate
from authority.signing.records import lifecycle
from authority.storage.database import create_engine
from tests.helpers.processes import Server, run_cli, start_server
from tests.helpers.stores import STORES, key_states, open_store, prepared_env, settings_of

KID = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- two commands at once ------------------------------------------------------------


@contextlib.contextmanager
def store_lock_held(settings: Settings) -> Iterator[None]:
    """Hold the store's lock the way a step in progress holds it."""
    if settings.keystore == "file":
        fd = os.open(settings.keys_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
    with asyncio.Runner() as runner:
        engine = create_engine(settings.database_url)
        try:
            connection = runner.run(engine.connect().start())
            try:
                runner.run(
                    connection.execute(
                        text("UPDATE keystore_state SET version = version WHERE id = 1")
                    )
                )
                yield
            finally:
                runner.run(connection.rollback())
                runner.run(connection.close())
        finally:
            runner.run(engine.dispose())


def cpu_and_state(pid: int) -> tuple[int, str]:
    """CPU ticks used so far and the scheduler state (``S``: sleeping) of a process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12]), fields[0]


def wait_until_blocked(processes: list[subprocess.Popen[str]], timeout: float = 30) -> bool:
    """Wait until every process sleeps without using CPU for 0.2 s: started, key
    generated, waiting for the store's lock. A process that finishes while the lock is
    held did not wait for it. Gives up waiting for the slower one once the other has
    waited 3 s (SQLite's busy timeout is 5 s); returns whether both waited together."""
    quiet = dict.fromkeys((p.pid for p in processes), 0)
    blocked_since: dict[int, float] = {}
    last: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(blocked_since) < len(processes):
        now = time.monotonic()
        assert now < deadline, "the commands never came to wait for the lock"
        if blocked_since and now - min(blocked_since.values()) > 3:
            return False
        for process in processes:
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"finished while the store's lock was held: {out}{err}")
            cpu, state = cpu_and_state(process.pid)
            idle = state == "S" and cpu == last.get(process.pid)
            quiet[process.pid] = quiet[process.pid] + 1 if idle else 0
            last[process.pid] = cpu
            if quiet[process.pid] >= 4:
                blocked_since.setdefault(process.pid, now)
            else:
                blocked_since.pop(process.pid, None)
        time.sleep(0.05)
    return True


def at_once(workdir: Path, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    """Two ``authority ARGS --json`` contending for the store: both are started while we
    hold its lock, and it is released once both wait for it."""
    settings = settings_of(env)
    command = [sys.executable, "-m", "authority", *args, "--json"]
    with store_lock_held(settings):
        processes = [
            subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            wait_until_blocked(processes)
        except BaseException:
            for process in processes:
                process.kill()
                process.communicate()
            raise
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    return results


async def _rotate(settings: Settings, now_: bool) -> RotateResult:
    async with open_store(settings) as store:
        return await rotate(store, settings, now_=now_)


def test_two_rotations_at_once_publish_exactly_one_next_key(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = prepared_env(request, tmp_path, kind)
    settings = settings_of(env)
    for _ in range(2):
        results = at_once(tmp_path, env, "keys", "rotate")
        assert sorted(str(r["outcome"]) for r in results) == ["created", "pending"]
        # The one that found a key pending names the key the other created.
        assert results[0]["kid"] == results[1]["kid"]
        states = asyncio.run(key_states(settings))
        assert [s.record.kid for s in states if s.state == "next"] == [results[0]["kid"]]
        assert [s.state for s in states].count("current") == 1
        # Let it sign, so that the next round starts with no key pending.
        assert asyncio.run(_rotate(settings, now_=True)).outcome == "promoted"


def test_two_emergency_rotations_at_once_never_leave_two_current_keys(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = prepared_env(request, tmp_path, kind)
    settings = settings_of(env)
    # A key is pending: one command promotes it, only one.
    pending = asyncio.run(_rotate(settings, now_=False))
    assert pending.outcome == "created"
    results = at_once(tmp_path, env, "keys", "rotate", "--now")
    outcomes = {str(r["outcome"]): r["kid"] for r in results}
    assert sorted(outcomes) == ["created", "promoted"], results
    assert outcomes["promoted"] == pending.kid
    states = asyncio.run(key_states(settings))
    assert [(s.record.kid, s.state) for s in states if s.state != "retired"] == [
        (outcomes["created"], "current")
    ]
    # None pending: each makes a key current, one after the other.
    results = at_once(tmp_path, env, "keys", "rotate", "--now")
    assert [r["outcome"] for r in results] == ["created", "created"]
    assert results[0]["kid"] != results[1]["kid"]
    states = asyncio.run(key_states(settings))
    latest = max(results, key=lambda r: float(str(r["activate_at"])))
    assert [(s.record.kid, s.state) for s in states if s.state != "retired"] == [
        (latest["kid"], "current")
    ]


# --- two servers ---------------------------------------------------------------------


def start_replicas(workdir: Path, env: dict[str, str], servers: list[Server]) -> list[Server]:
    """Two ``authority serve`` on one store, started side by side."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(start_server, workdir, env) for _ in range(2)]
    started = [f.result() for f in futures if f.exception() is None]
    servers.extend(started)
    for future in futures:
        if future.exception() is not None:
            raise AssertionError("a replica did not start") from future.exception()
    return started


def jwks(client: httpx.Client, server: Server) -> httpx.Response:
    response = client.get(f"{server.url}/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return response


def kids(response: httpx.Response) -> set[str]:
    return {key["kid"] for key in response.json()["keys"]}


def assert_replicas_agree(
    client: httpx.Client, replicas: list[Server], settings: Settings, within: float
) -> None:
    """Both serve the same JWKS body and ETag, holding exactly the store's keys (polled:
    the store may change between two requests)."""
    deadline = time.monotonic() + within
    while True:
        responses = [jwks(client, server) for server in replicas]
        stored = {s.record.kid for s in asyncio.run(key_states(settings))}
        bodies = [r.content for r in responses]
        etags = [r.headers["etag"] for r in responses]
        if bodies[0] == bodies[1] and etags[0] == etags[1] and kids(responses[0]) == stored:
            return
        assert time.monotonic() < deadline, (
            f"replicas disagree: {[sorted(kids(r)) for r in responses]}, {etags}, "
            f"store {sorted(stored)}"
        )
        time.sleep(0.1)


def test_a_key_rotated_by_the_cli_reaches_every_replica_within_seconds(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, servers: list[Server]
) -> None:
    env = prepared_env(request, tmp_path, kind, keystore_poll_interval="1")
    replicas = start_replicas(tmp_path, env, servers)
    rotated = run_cli(tmp_path, "keys", "rotate", "--json", env=env)
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["outcome"] == "created"
    since = time.monotonic()
    seen_after: dict[str, float] = {}
    with httpx.Client(timeout=5) as client:
        while len(seen_after) < 2 and time.monotonic() - since < 10:
            for server in replicas:
                if server.url not in seen_after and new["kid"] in kids(jwks(client, server)):
                    seen_after[server.url] = time.monotonic() - since
            time.sleep(0.05)
        assert len(seen_after) == 2, f"published by {seen_after} only"
        assert max(seen_after.values()) < 6, seen_after

        assert_replicas_agree(client, replicas, settings_of(env), within=0)
        # So the ETag one replica gave validates a cache at the other.
        etag = jwks(client, replicas[0]).headers["etag"]
        for server in replicas:
            again = client.get(
                f"{server.url}/.well-known/jwks.json", headers={"If-None-Match": etag}
            )
            assert again.status_code == 304


@dataclass
class History:
    """What a fast poller of the store saw: every key, and when."""

    times: list[float] = field(default_factory=list)  # wall clock of each sample
    present: dict[str, list[int]] = field(default_factory=dict)  # kid: samples holding it
    states: dict[str, dict[str, int]] = field(default_factory=dict)  # kid: state: first
    activate_at: dict[str, float] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    retired_at: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


async def watch_store(settings: Settings, seconds: float) -> History:
    history = History()
    deadline = time.monotonic() + seconds
    async with open_store(settings) as store:
        while time.monotonic() < deadline:
            try:
                records = await store.load()
            except FileNotFoundError:
                continue  # a file store race of its own, see tests/chaos/test_crash_safety.py
            now = time.time()
            index = len(history.times)
            history.times.append(now)
            statuses = lifecycle(records, now, settings.retired_key_lifetime)
            states = [s.state for s in statuses]
            if states.count("current") != 1 or states.count("next") > 1:
                history.violations.append(
                    f"at {now:.2f}: {[(s.record.kid[:8], s.state) for s in statuses]}"
                )
            for s in statuses:
                kid = s.record.kid
                history.present.setdefault(kid, []).append(index)
                history.states.setdefault(kid, {}).setdefault(s.state, index)
                history.activate_at[kid] = s.record.activate_at
                history.created_at[kid] = s.record.created_at
                if s.retired_at is not None:
                    history.retired_at[kid] = s.retired_at
            await asyncio.sleep(0.1)
    return history


def test_two_replicas_perform_each_rotation_and_pruning_exactly_once(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, servers: list[Server]
) -> None:
    interval, delay, maintenance = 2.0, 1.0, 0.5
    env = prepared_env(
        request,
        tmp_path,
        kind,
        key_rotation_interval=str(int(interval)),
        key_publish_delay=str(int(delay)),
        maintenance_interval=str(maintenance),
        keystore_poll_interval="0.5",
        # A retired key may go 1 s after it stopped signing.
        access_ttl="1",
        jwks_max_age="0",
        leeway="0",
    )
    settings = settings_of(env)
    (first,) = asyncio.run(key_states(settings))
    replicas = start_replicas(tmp_path, env, servers)
    ready_at = time.time()
    history = asyncio.run(watch_store(settings, seconds=6))
    end = history.times[-1]
    # Slack for a loaded machine: a maintenance tick, then scheduling delays.
    late = maintenance + 2.0

    # Every moment: exactly one key signs and at most one waits.
    assert not history.violations, history.violations[:5]

    # Each rotation happened once: keys follow each other at least an interval apart
    # (two replicas rotating for the same slot would make two keys a moment apart),
    # each published KEY_PUBLISH_DELAY before it signs, and none was overdue.
    # (On a slow start the first key may be gone before we look.)
    history.activate_at.setdefault(first.record.kid, first.record.activate_at)
    keys = sorted(history.activate_at, key=history.activate_at.__getitem__)
    assert keys[0] == first.record.kid
    created = keys[1:]
    assert len(created) >= 2, f"only {len(created)} rotations in {end - ready_at:.1f}s"
    assert len(created) <= (end - first.record.activate_at + delay) // interval
    for previous, kid in zip(keys[:-1], created, strict=True):
        gap = history.activate_at[kid] - history.activate_at[previous]
        assert gap >= interval - 1e-6, f"{kid} signs {gap:.3f}s after {previous}"
        assert history.activate_at[kid] - history.created_at[kid] >= delay - 1e-6
        if history.activate_at[kid] > history.times[0]:  # not signing before we looked
            assert "next" in history.states[kid], f"{kid} was never published before signing"
        due = max(history.activate_at[previous] + interval - delay, ready_at)
        assert history.created_at[kid] <= due + late, f"{kid} created late"
    last_due = max(history.activate_at[keys[-1]] + interval - delay, ready_at)
    assert end < last_due + late, "a rotation was overdue when watching stopped"

    # Each retired key was pruned once it could be, not before, and never came back.
    pruned = 0
    for kid, seen in history.present.items():
        assert seen == list(range(seen[0], seen[-1] + 1)), f"{kid} came back"
        if kid not in history.retired_at:
            continue
        removable = history.retired_at[kid] + settings.retired_key_lifetime
        if seen[-1] < len(history.times) - 1:
            pruned += 1
            assert history.times[seen[-1] + 1] >= removable, f"{kid} pruned too early"
        else:
            assert end < removable + late, f"{kid} was not pruned in time"
    assert pruned >= 1

    # The replicas' own accounts, in their log and in their audit events' lines: no key
    # published or pruned twice.
    logged = [line for server in replicas for line in server.log.read_text().splitlines()]
    for says in ("published", "pruned", '"type":"key.created"', '"type":"key.pruned"'):
        lines = [line for line in logged if says in line and ('"audit"' in line) == ('"' in says)]
        counts = Counter(kid for line in lines for kid in KID.findall(line))
        assert counts, says
        assert all(n == 1 for n in counts.values()), counts

    # And both still serve, and serve the same keys.
    with httpx.Client(timeout=5) as client:
        for server in replicas:
            assert server.process.poll() is None
            assert client.get(f"{server.url}/health/ready").status_code == 200
        assert_replicas_agree(client, replicas, settings, within=3)
