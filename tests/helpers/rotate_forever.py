"""A process that runs key lifecycle steps until it is killed (for the crash tests).

Started as ``python -m tests.helpers.rotate_forever`` (the repository on
``PYTHONPATH``) with the key store configured by the ``AUTHORITY_*`` environment. It
imports everything once, then obeys one command per line on stdin, so that each crash
cycle costs a ``fork`` instead of a fresh interpreter:

``go``
    fork a child that opens the key store and loops through every lifecycle step,
    forever, with the library functions of ``authority.signing.manager``: ``rotate --now``,
    in two rounds out of five ``revoke`` of the current key (no key pending then: adds a
    key and deletes one in one transaction), ``rotate``, ``revoke`` of a retired key,
    ``prune``. Answers ``forked PID``.
``reap PID``
    wait for that child (the test has killed it). Answers ``status PID CODE``, CODE
    as ``os.waitstatus_to_exitcode`` gives it: -9 after SIGKILL.

Children write progress to the same stdout, each line in one ``write`` (atomic on a
pipe): ``PID started`` once the store is open, ``PID locked`` on entering a store
transaction (the store's lock is held and writes follow: a kill now lands mid-write),
``PID unlocked`` when it is over, ``PID did STEP`` after each step (for the steps
that make a key current, followed by its kid and ``activate_at``). A child that fails
prints its traceback on stderr and exits 3.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator

from authority.settings import Settings
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import prune, revoke, rotate
from authority.signing.records import KeyRecord, KeyStore, KeyTransaction, lifecycle
from authority.storage.database import create_engine

CHOICE = random.Random()  # noqa: S311 (which steps to take, nothing cryptographic)


def say(line: str) -> None:
    """One ``write`` per line: lines of the zygote and its children never mix."""
    os.write(1, f"{line}\n".encode())


def emit(message: str) -> None:
    say(f"{os.getpid()} {message}")


class Observed:
    """The real store, reporting when its lock is taken and released."""

    def __init__(self, store: KeyStore):
        self.store = store
        self.description = store.description

    async def load(self) -> list[KeyRecord]:
        return await self.store.load()

    async def fingerprint(self) -> str:
        return await self.store.fingerprint()

    async def check_writable(self) -> None:
        await self.store.check_writable()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[KeyTransaction]:
        async with self.store.transaction() as tx:
            emit("locked")
            yield tx
        emit("unlocked")


async def forever(settings: Settings) -> None:
    if settings.keystore == "database":
        store: KeyStore = DatabaseKeyStore(create_engine(settings.database_url))
    else:
        store = FileKeyStore(settings.keys_dir)
    observed = Observed(store)
    # Keys this process has opened: each step proves the passphrase only for new ones,
    # as the server's KeyManager does, so the loop's pace is its steps', not a KDF's.
    proven: set[tuple[str, bytes]] = set()
    emit("started")
    while True:
        signing = await rotate(observed, settings, now_=True, proven=proven)
        emit(f"did rotate-now {signing.kid} {signing.activate_at!r}")
        if CHOICE.random() < 0.4:
            current = _kids(await observed.load(), settings, "current")[0]
            replacement = await revoke(observed, settings, current, proven=proven)
            assert replacement is not None
            emit(f"did revoke-current {replacement.kid} {replacement.activate_at!r}")
        await rotate(observed, settings, proven=proven)
        emit("did rotate")
        retired = _kids(await observed.load(), settings, "retired")
        if retired:
            await revoke(observed, settings, CHOICE.choice(retired), proven=proven)
            emit("did revoke-retired")
        await prune(observed, settings, proven=proven)
        emit("did prune")


def _kids(records: list[KeyRecord], settings: Settings, state: str) -> list[str]:
    statuses = lifecycle(records, time.time(), settings.retired_key_lifetime)
    return [s.record.kid for s in statuses if s.state == state]


def child() -> None:
    CHOICE.seed()
    try:
        asyncio.run(forever(Settings.from_env()))
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(3)


def main() -> None:
    children: set[int] = set()
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "go":
                pid = os.fork()
                if pid == 0:
                    child()
                children.add(pid)
                say(f"forked {pid}")
            elif command == "reap":
                pid = int(args[0])
                _, status = os.waitpid(pid, 0)
                children.discard(pid)
                say(f"status {pid} {os.waitstatus_to_exitcode(status)}")
            else:
                raise SystemExit(f"unknown command {line!r}")
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
