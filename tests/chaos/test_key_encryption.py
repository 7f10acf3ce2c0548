"""``authority keys encrypt`` as an operator runs it, and killed mid-way (README,
"Signing keys"): production refuses keys made in development until they are
encrypted; a kill between (or during) keys leaves every key under the old or the new
passphrase, never neither, and a second run finishes the job."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from authority.settings import Settings
from authority.signing.keys import decrypt
from authority.signing.manager import KeyManager, rotate
from authority.signing.records import KeyStoreError
from tests.helpers.processes import Server, cli_env, free_port, run_cli, start_server
from tests.helpers.stores import PASSPHRASE, STORES, open_store, prepared_env, settings_of

NEW = "a new passphrase of 32 characters"
PRODUCTION = {
    "AUTHORITY_ENV": "production",
    "AUTHORITY_ISSUER": "https://auth.example",
    "AUTHORITY_SECRET_KEY": "s" * 40,
}


def refused(workdir: Path, **env: str) -> str:
    """Run ``serve`` and return its one error line; fail if it served or said more."""
    result = run_cli(workdir, "serve", "--port", str(free_port()), env=cli_env(**env), timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_production_refuses_keys_made_in_development_until_they_are_encrypted(
    tmp_path: Path, servers: list[Server]
) -> None:
    made = run_cli(tmp_path, "setup", env=cli_env())  # no passphrase: a development store
    assert made.returncode == 0, made.stderr
    line = refused(tmp_path, **PRODUCTION, AUTHORITY_KEY_PASSPHRASE=NEW)
    assert "is not encrypted, which production refuses" in line
    assert "authority keys encrypt" in line

    encrypted = run_cli(
        tmp_path, "keys", "encrypt", "--json", env=cli_env(AUTHORITY_KEY_PASSPHRASE=NEW)
    )
    assert encrypted.returncode == 0, encrypted.stderr
    assert encrypted.stderr.startswith("encrypted ")
    assert NEW not in encrypted.stdout + encrypted.stderr

    servers.append(start_server(tmp_path, cli_env(**PRODUCTION, AUTHORITY_KEY_PASSPHRASE=NEW)))
    assert httpx.get(f"{servers[0].url}/health/ready").json()["status"] == "ready"


@pytest.mark.parametrize("passphrase", ["x", "fifteen chars!!"])
def test_production_refuses_a_short_passphrase_with_one_line(
    tmp_path: Path, passphrase: str
) -> None:
    assert run_cli(tmp_path, "setup", env=cli_env(AUTHORITY_KEY_PASSPHRASE=NEW)).returncode == 0
    line = refused(tmp_path, **PRODUCTION, AUTHORITY_KEY_PASSPHRASE=passphrase)
    assert line == ("error: AUTHORITY_KEY_PASSPHRASE must be at least 16 characters in production")


async def _passphrases(settings: Settings) -> list[str]:
    """For each key of the store, which of the two passphrases opens it."""
    found = []
    async with open_store(settings) as store:
        for record in await store.load():
            for candidate in (PASSPHRASE, NEW):
                with contextlib.suppress(KeyStoreError):
                    decrypt(record, candidate)
                    found.append(candidate)
                    break
            else:
                raise AssertionError(f"key {record.kid} opens with neither passphrase")
    return found


async def _loads(settings: Settings) -> str | None:
    async with open_store(settings) as store:
        try:
            await KeyManager(store, settings).load()
        except KeyStoreError as exc:
            return str(exc)
    return None


async def _more_keys(settings: Settings, count: int) -> None:
    async with open_store(settings) as store:
        for _ in range(count):
            await rotate(store, settings, now_=True)


@pytest.mark.parametrize("kind", STORES)
def test_a_killed_encrypt_leaves_every_key_under_one_passphrase_and_a_rerun_finishes(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    env = prepared_env(request, tmp_path, kind)
    old_settings = settings_of(env)
    asyncio.run(_more_keys(old_settings, 5))
    new_env = {**env, "AUTHORITY_KEY_PASSPHRASE": NEW}
    new_settings = settings_of(new_env)

    process = subprocess.Popen(
        [sys.executable, "-m", "authority", "keys", "encrypt", "--old-passphrase-stdin"],
        cwd=tmp_path,
        env=new_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stderr is not None
    process.stdin.write(PASSPHRASE + "\n")
    process.stdin.close()
    first = process.stderr.readline()  # one key done, the next one under way
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stderr.close()
    assert first.startswith("re-encrypted "), first

    under = asyncio.run(_passphrases(new_settings))
    assert len(under) == 6
    assert NEW in under
    assert PASSPHRASE in under, "the kill came after the last key (five KDF runs later)"
    # Neither passphrase alone opens the store now: the server refuses with one line.
    assert "wrong AUTHORITY_KEY_PASSPHRASE" in (asyncio.run(_loads(new_settings)) or "")
    assert "wrong AUTHORITY_KEY_PASSPHRASE" in (asyncio.run(_loads(old_settings)) or "")

    again = run_cli(
        tmp_path,
        "keys",
        "encrypt",
        "--old-passphrase-stdin",
        "--json",
        env=new_env,
        input_=PASSPHRASE + "\n",
    )
    assert again.returncode == 0, again.stderr
    assert asyncio.run(_passphrases(new_settings)) == [NEW] * 6
    assert asyncio.run(_loads(new_settings)) is None
