"""The ``authority`` command as an operator runs it: real subprocesses, --json output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.processes import cli_env, run_cli


def test_setup_migrates_creates_the_first_key_and_is_harmless_to_repeat(tmp_path: Path) -> None:
    first = run_cli(tmp_path, "setup", "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)["created_key"]
    assert (tmp_path / "keys" / f"{created}.json").exists()
    assert (tmp_path / "var" / "authority.db").exists()
    again = run_cli(tmp_path, "setup", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created_key"] is None
    assert len(list((tmp_path / "keys").glob("*.json"))) == 1


def test_setup_without_json_prints_the_issuer_and_a_hint(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "setup")
    assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:8000" in result.stdout
    assert "authority users create" in result.stdout


def test_setup_names_the_command_as_it_can_be_typed_and_the_first_user_hint_goes(
    tmp_path: Path,
) -> None:
    """After `make run` the command is `.venv/bin/authority`, not on PATH: `setup` says
    so, and its hint works as printed. Once a user exists, the hint is not repeated."""
    script = Path(sys.executable).with_name("authority")
    elsewhere = cli_env(PATH="/usr/bin:/bin")
    result = subprocess.run(
        [str(script), "setup"], cwd=tmp_path, env=elsewhere, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert f"the authority command is {script}" in result.stdout
    assert f"create the first user with: {script} users create NAME" in result.stdout
    hint = result.stdout.split("create the first user with: ")[1].split()
    created = subprocess.run(
        [*hint[:3], "alice", "--email", "alice@example.com", "--password-stdin"],
        cwd=tmp_path,
        env=elsewhere,
        input="an unusual and long passphrase\n",
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    on_path = cli_env(PATH=f"{script.parent}:/usr/bin:/bin")
    again = subprocess.run(
        ["authority", "setup"], cwd=tmp_path, env=on_path, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "issuer: http://127.0.0.1:8000" in again.stdout
    assert "the authority command is" not in again.stdout
    assert "create the first user" not in again.stdout
    assert json.loads(run_cli(tmp_path, "setup", "--json").stdout)["users"] == 1


def test_keys_list_rotate_revoke_prune_speak_json(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "setup").returncode == 0
    rotated = json.loads(run_cli(tmp_path, "keys", "rotate", "--json").stdout)
    assert rotated["outcome"] == "created"
    listed = json.loads(run_cli(tmp_path, "keys", "list", "--json").stdout)
    assert sorted(k["state"] for k in listed) == ["current", "next"]
    current = next(k["kid"] for k in listed if k["state"] == "current")
    revoked = json.loads(run_cli(tmp_path, "keys", "revoke", current, "--json").stdout)
    assert revoked == {"revoked": current, "replacement": rotated["kid"]}
    assert json.loads(run_cli(tmp_path, "keys", "prune", "--json").stdout) == {"pruned": []}
    listed = json.loads(run_cli(tmp_path, "keys", "list", "--json").stdout)
    assert [(k["kid"], k["state"]) for k in listed] == [(rotated["kid"], "current")]


def test_rotate_with_a_passphrase_encrypts_and_size_is_honoured(tmp_path: Path) -> None:
    env = cli_env(AUTHORITY_KEY_PASSPHRASE="s3cret passphrase")
    assert run_cli(tmp_path, "db", "upgrade", env=env).returncode == 0
    result = run_cli(tmp_path, "keys", "rotate", "--now", "--size", "3072", "--json", env=env)
    assert result.returncode == 0, result.stderr
    listed = json.loads(run_cli(tmp_path, "keys", "list", "--json", env=env).stdout)
    assert [(k["size"], k["encrypted"], k["state"]) for k in listed] == [(3072, True, "current")]
    assert "s3cret" not in result.stdout + result.stderr


def test_errors_are_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "setup").returncode == 0
    result = run_cli(tmp_path, "keys", "revoke", "A" * 43)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: no key with kid")
    as_json = run_cli(tmp_path, "keys", "revoke", "A" * 43, "--json")
    assert as_json.returncode == 1
    assert "no key with kid" in json.loads(as_json.stdout)["error"]


def test_bad_setting_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "keys", "list", env=cli_env(AUTHORITY_KEYSTORE="s3"))
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: AUTHORITY_KEYSTORE must be file or database, not 's3'")


def test_database_key_store_from_the_command_line(tmp_path: Path) -> None:
    env = cli_env(AUTHORITY_KEYSTORE="database")
    assert run_cli(tmp_path, "db", "upgrade", "--json", env=env).returncode == 0
    created = json.loads(run_cli(tmp_path, "keys", "rotate", "--now", "--json", env=env).stdout)
    listed = json.loads(run_cli(tmp_path, "keys", "list", "--json", env=env).stdout)
    assert [k["kid"] for k in listed] == [created["kid"]]
    assert not (tmp_path / "keys").exists()


def test_database_key_store_needs_a_migrated_database(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "keys", "list", env=cli_env(AUTHORITY_KEYSTORE="database"))
    assert result.returncode == 1
    assert "authority db upgrade" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_db_upgrade_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = cli_env(AUTHORITY_DATABASE_URL="postgresql+asyncpg://u:p@127.0.0.1:9/none")
    result = run_cli(tmp_path, "db", "upgrade", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: database unreachable")
    assert result.stderr.strip().count("\n") == 0
