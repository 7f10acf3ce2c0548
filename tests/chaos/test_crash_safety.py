"""Crash safety of the key stores (README, "Signing keys"): a crash at any moment leaves a key
store that loads, with exactly one ``current`` key.

A helper process (``tests/helpers/rotate_forever.py``) runs every lifecycle step in a loop
with the library functions and a passphrase; we SIGKILL it at random moments, two
thirds of them timed to land while it holds the store's lock, and after every kill
check the store as a restarting server would find it. The same helper also keeps a
file store changing while we read it without its lock, as a replica polls it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import select
import signal
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwt.algorithms import RSAAlgorithm

from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.keys import KeyRing
from authority.signing.manager import KeyManager, rotate
from authority.signing.records import KID_PATTERN, KeyRecord, lifecycle
from tests.helpers.processes import ROOT, run_cli
from tests.helpers.stores import PASSPHRASE, STORES, open_store, prepared_env, settings_of

HELPER = [sys.executable, "-m", "tests.helpers.rotate_forever"]
KILLS = 25
JITTER = random.Random()  # noqa: S311 (kill timing, nothing cryptographic)
MESSAGE = b"signed by a key that survived a crash"
# A plain rotation stays pending; a retired key may be pruned 1 s after it retired.
SETTINGS = {"key_publish_delay": "600", "access_ttl": "1", "jwks_max_age": "0", "leeway": "0"}


# --- the store under test ------------------------------------------------------------


@pytest.fixture(params=STORES)
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A set-up store of each kind (``authority setup``: one current key)."""
    return prepared_env(request, tmp_path, request.param, **SETTINGS)


@pytest.fixture
def file_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A file store with many retired keys, kept an hour unless revoked."""
    env = prepared_env(request, tmp_path, "file", **{**SETTINGS, "access_ttl": "3600"})
    settings = settings_of(env)

    async def retire_many() -> None:
        async with open_store(settings) as store:
            for _ in range(15):
                await rotate(store, settings, now_=True)

    asyncio.run(retire_many())
    return env


def rfc7638(jwk: dict[str, str]) -> str:
    """RFC 7638 section 3.1, written out here rather than taken from the code under test."""
    members = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


# Decrypting takes tens of milliseconds; bytes already decrypted once need not be again.
_decrypted: dict[bytes, rsa.RSAPrivateKey] = {}


def load_private(pem: bytes) -> rsa.RSAPrivateKey:
    if pem not in _decrypted:
        key = serialization.load_pem_private_key(pem, PASSPHRASE.encode())
        assert isinstance(key, rsa.RSAPrivateKey)
        _decrypted[pem] = key
    return _decrypted[pem]


async def assert_sound(settings: Settings, signed_since: float) -> KeyRecord:
    """What a server starting now would need: the store loads, exactly one key is
    current (at most one next), and every key decrypts with the passphrase and signs
    for the public key published under its kid, the kid being its thumbprint. And no
    key signs again once retired: the current key became current at ``signed_since``
    (when a completed step made a key current) or later. Returns the current key."""
    async with open_store(settings) as store:
        records = await store.load()
        await store.fingerprint()
    # (A key made current may be dated a millisecond ahead, to follow its predecessor.)
    now = max(time.time(), signed_since)
    statuses = lifecycle(records, now, settings.retired_key_lifetime)
    states = [s.state for s in statuses]
    assert states.count("current") == 1, states
    assert states.count("next") <= 1, states
    private: dict[str, rsa.RSAPrivateKey] = {}
    for record in records:
        assert record.encrypted, record.kid
        private[record.kid] = load_private(record.private_pem)
    ring = KeyRing(records, private)
    published = {jwk["kid"]: jwk for jwk in json.loads(ring.jwks)["keys"]}
    assert sorted(published) == sorted(r.kid for r in records)
    for kid, key in private.items():
        assert rfc7638(published[kid]) == kid
        public = RSAAlgorithm.from_jwk(published[kid])
        assert isinstance(public, rsa.RSAPublicKey)
        signature = key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        public.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    current = next(s.record for s in statuses if s.state == "current")
    signing = ring.current(now)
    assert signing is not None
    assert signing.kid == current.kid
    assert current.activate_at >= signed_since, f"a retired key signs again: {current.kid}"
    return current


def inspect_keys_dir(directory: Path) -> int:
    """Every entry of the file store is a key file (mode 0600), the lock file, or a
    temp file of an interrupted write (ignored by ``load``); returns how many of those."""
    temps = 0
    for path in directory.iterdir():
        if path.name == ".lock":
            continue
        if path.name.startswith(".") and ".json.tmp-" in path.name:
            temps += 1
            continue
        assert path.suffix == ".json", f"unexpected file {path.name} in the key store"
        assert KID_PATTERN.match(path.stem), f"unexpected file {path.name} in the key store"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    return temps


# --- the process we kill -------------------------------------------------------------


class Lines:
    """Lines from a pipe, with a timeout (``None`` when nothing came in time)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""
        self.ready: deque[str] = deque()

    def next(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while not self.ready:
            remaining = max(0.0, deadline - time.monotonic())
            if not select.select([self.fd], [], [], remaining)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the rotating process closed its output")
            *lines, self.buffer = (self.buffer + chunk).split(b"\n")
            self.ready.extend(line.decode() for line in lines)
        return self.ready.popleft()


@dataclass
class Kill:
    steps: int = 0  # lifecycle steps the child completed
    deletions: int = 0  # of which revocations (each deletes a key file or row)
    locked: bool = False  # killed while holding the store's lock
    signed_since: float = 0.0  # when the latest key a completed step made current did


class Rotator:
    """``tests/helpers/rotate_forever.py``: forks a child rotating keys on each ``go``."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.log = workdir / "rotator.log"
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                HELPER,
                cwd=workdir,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin = self.process.stdin
        self.lines = Lines(self.process.stdout.fileno())
        self.started: set[int] = set()

    def send(self, command: str) -> None:
        self.stdin.write(command.encode() + b"\n")
        self.stdin.flush()

    def expect(self, prefix: str, kill: Kill, timeout: float = 20) -> str:
        """Read up to the line starting with ``prefix``, noting the child's progress."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.next(deadline - time.monotonic())
            if line is None:
                raise AssertionError(f"no {prefix!r} in {timeout}s; {self.log_text()}")
            self.note(line, kill)
            if line.startswith(prefix):
                return line

    def note(self, line: str, kill: Kill) -> None:
        pid, _, event = line.partition(" ")
        if event == "started":
            self.started.add(int(pid))
        elif event.startswith("did "):
            kill.steps += 1
            kill.deletions += event.startswith("did revoke")
            if event.startswith(("did rotate-now ", "did revoke-current ")):
                kill.signed_since = max(kill.signed_since, float(event.split()[-1]))
        elif event in ("locked", "unlocked"):
            kill.locked = event == "locked"

    def start(self, kill: Kill) -> int:
        self.send("go")
        pid = int(self.expect("forked ", kill).split()[1])
        # The child may report before the zygote does.
        if pid not in self.started:
            self.expect(f"{pid} started", kill)
        return pid

    def kill(self, pid: int, kill: Kill) -> None:
        os.kill(pid, signal.SIGKILL)
        self.send(f"reap {pid}")
        status = int(self.expect(f"status {pid} ", kill).split()[2])
        assert status == -signal.SIGKILL, f"child exited {status}; {self.log_text()}"

    def crash_cycle(self, targeted: bool) -> Kill:
        """Start a child and SIGKILL it: at a random moment after it started, or a
        random instant (0-2 ms: a transaction takes a few) after it took the store's
        lock for the n-th time."""
        kill = Kill()
        pid = self.start(kill)
        if targeted:
            for _ in range(JITTER.randint(1, 5)):
                self.expect(f"{pid} locked", kill)
            time.sleep(JITTER.uniform(0, 0.002))
        else:
            deadline = time.monotonic() + JITTER.uniform(0, 0.3)
            while (line := self.lines.next(deadline - time.monotonic())) is not None:
                self.note(line, kill)
        self.kill(pid, kill)
        return kill

    def log_text(self) -> str:
        return f"rotator stderr:\n{self.log.read_text(errors='replace')}"

    def close(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def rotator(workdir: Path, env: dict[str, str]) -> Iterator[Rotator]:
    process = Rotator(workdir, env)
    try:
        yield process
    finally:
        process.close()


# --- tests ---------------------------------------------------------------------------


def test_sigkill_at_any_moment_of_a_lifecycle_step_leaves_exactly_one_current_key(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_of(store_env)
    kills: list[Kill] = []
    temp_files_seen = 0
    signed_since = 0.0
    with rotator(tmp_path, store_env) as process:
        for n in range(KILLS):
            kill = process.crash_cycle(targeted=n % 3 != 0)
            kills.append(kill)
            if settings.keystore == "file":
                temp_files_seen += inspect_keys_dir(settings.keys_dir)
            signed_since = max(signed_since, kill.signed_since)
            try:
                current = asyncio.run(assert_sound(settings, signed_since))
            except Exception as exc:
                raise AssertionError(f"after kill {n + 1} ({kill}): {exc!r}") from exc
            signed_since = current.activate_at

    # A server starts on what the last kill left, and the command line lists it.
    async def restart() -> str:
        async with open_store(settings) as store:
            manager = KeyManager(store, settings)
            await manager.load()
            return manager.signing_key().kid

    signing = asyncio.run(restart())
    listed = run_cli(tmp_path, "keys", "list", "--json", env=store_env)
    assert listed.returncode == 0, listed.stderr
    assert [k["kid"] for k in json.loads(listed.stdout) if k["state"] == "current"] == [signing]

    # The kills proved something: the children got work done between starts, and
    # many kills landed while a step held the lock, mid-write.
    # (A targeted kill waits for the n-th lock, 1 <= n <= 5, so it follows n - 1 steps
    # at least when each step takes the lock once; half that leaves room for a slow
    # machine's untargeted kills landing before any step.)
    assert sum(k.steps for k in kills) >= KILLS // 2, kills
    assert max(k.steps for k in kills) >= 3, kills
    locked = sum(k.locked for k in kills)
    assert locked >= KILLS // 4, (
        f"only {locked} of {KILLS} kills landed inside a transaction "
        f"({temp_files_seen} left a temp file)"
    )


def test_the_file_store_loads_while_another_process_revokes_and_prunes_keys(
    file_env: dict[str, str], tmp_path: Path
) -> None:
    """A replica polls the shared keys directory without its lock: a key file deleted
    between listing the directory and reading it must not break the load, nor hand a
    retired key back as current."""
    settings = settings_of(file_env)
    store = FileKeyStore(settings.keys_dir)
    progress = Kill()
    failures: list[str] = []
    loads = 0

    def running(soft: float, hard: float) -> bool:
        """At least ``soft`` seconds, and on until 5 deletions were seen (a loaded
        machine's rotator is slow: progress counts, not the clock), at most ``hard``."""
        now = time.monotonic()
        if failures or progress.deletions >= 15 or now > hard:
            return False
        return now < soft or progress.deletions < 5

    async def reader(soft: float, hard: float) -> None:
        nonlocal loads
        retired: set[str] = set()  # this reader's snapshots follow one another
        while running(soft, hard):
            try:
                records = await store.load()
            except Exception as exc:
                failures.append(f"load failed: {exc!r}")
                return
            loads += 1
            states = lifecycle(records, time.time(), settings.retired_key_lifetime)
            current = [s.record.kid for s in states if s.state == "current"]
            if len(current) != 1 or current[0] in retired:
                seen = [(s.record.kid, s.state) for s in states]
                failures.append(f"inconsistent snapshot: {seen}")
            retired |= {s.record.kid for s in states if s.state == "retired"}

    async def watch(process: Rotator, soft: float, hard: float) -> None:
        while running(soft, hard):
            while (line := process.lines.next(0)) is not None:
                process.note(line, progress)
            await asyncio.sleep(0.01)

    async def hammer(process: Rotator) -> None:
        start = time.monotonic()
        soft, hard = start + 6, start + 120
        await asyncio.gather(*(reader(soft, hard) for _ in range(3)), watch(process, soft, hard))

    with rotator(tmp_path, file_env) as process:
        pid = process.start(progress)
        asyncio.run(hammer(process))
        process.kill(pid, progress)
    assert not failures, f"{failures[0]} (after {loads} loads, {progress.deletions} deletions)"
    assert progress.deletions >= 5, progress
