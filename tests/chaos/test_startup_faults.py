"""``authority serve`` refuses to serve, with one clear line, when it could not sign."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import Server, cli_env, free_port, run_cli, start_server

PASSPHRASE = "right passphrase"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    result = run_cli(tmp_path, "setup", env=cli_env(AUTHORITY_KEY_PASSPHRASE=PASSPHRASE))
    assert result.returncode == 0, result.stderr
    return tmp_path


def refused_lines(workdir: Path, **env: str) -> list[str]:
    """Run ``serve`` and return its error lines, one per problem; fail if it served."""
    env.setdefault("AUTHORITY_KEY_PASSPHRASE", PASSPHRASE)
    result = run_cli(workdir, "serve", "--port", str(free_port()), env=cli_env(**env), timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), result.stderr
    return lines


def refused(workdir: Path, **env: str) -> str:
    """Run ``serve`` and return its one error line; fail if it served or said more."""
    lines = refused_lines(workdir, **env)
    assert len(lines) == 1, lines
    return lines[0]


def test_serve_starts_with_a_sound_setup(workdir: Path, servers: list[Server]) -> None:
    servers.append(start_server(workdir, cli_env(AUTHORITY_KEY_PASSPHRASE=PASSPHRASE)))
    assert httpx.get(f"{servers[0].url}/health/ready").json()["status"] == "ready"


def test_missing_keys_directory(workdir: Path) -> None:
    shutil.rmtree(workdir / "keys")
    assert "keys directory keys does not exist" in refused(workdir)


def test_empty_keys_directory(workdir: Path) -> None:
    for path in (workdir / "keys").glob("*.json"):
        path.unlink()
    assert "no current signing key" in refused(workdir)


def test_corrupted_key_file(workdir: Path) -> None:
    key_file = next((workdir / "keys").glob("*.json"))
    key_file.write_bytes(key_file.read_bytes()[:100])
    assert f"key file keys/{key_file.name} is corrupted" in refused(workdir)


def test_wrong_passphrase(workdir: Path) -> None:
    assert "wrong AUTHORITY_KEY_PASSPHRASE" in refused(workdir, AUTHORITY_KEY_PASSPHRASE="wrong")


def test_missing_passphrase(workdir: Path) -> None:
    env = cli_env()
    result = run_cli(workdir, "serve", "--port", str(free_port()), env=env)
    assert result.returncode == 1
    assert "AUTHORITY_KEY_PASSPHRASE is not set" in result.stderr


def test_unwritable_keys_directory(workdir: Path) -> None:
    command = [sys.executable, "-m", "authority", "serve", "--port", str(free_port())]
    if os.geteuid() == 0:
        # root writes through permission bits, so make keys/ a read-only mount in a
        # private mount namespace of the server process.
        script = 'mount --bind keys keys && mount -o remount,bind,ro keys && exec "$@"'
        command = ["unshare", "--mount", "--", "sh", "-c", script, "sh", *command]
    else:
        (workdir / "keys").chmod(0o500)
    result = subprocess.run(
        command,
        cwd=workdir,
        env=cli_env(AUTHORITY_KEY_PASSPHRASE=PASSPHRASE),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    (workdir / "keys").chmod(0o700)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == "error: keys directory keys is not writable"


def test_unreachable_database(workdir: Path) -> None:
    line = refused(workdir, AUTHORITY_DATABASE_URL="postgresql+asyncpg://u:p@127.0.0.1:9/x")
    assert line.startswith("error: database unreachable")
    assert ":p@" not in line


def test_unmigrated_database(workdir: Path) -> None:
    line = refused(workdir, AUTHORITY_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/other.db")
    assert "run `authority db upgrade`" in line


def test_insecure_production_settings_are_refused_one_line_each(workdir: Path) -> None:
    lines = refused_lines(workdir, AUTHORITY_ENV="production")
    assert "error: AUTHORITY_ISSUER must be https in production, not http://127.0.0.1" in "\n".join(
        lines
    )
    assert any("AUTHORITY_SECRET_KEY is required in production" in line for line in lines)
    assert len(lines) == len(set(lines)) >= 2
