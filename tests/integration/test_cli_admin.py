"""``authority users|clients|tokens`` as an operator runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers.processes import cli_env, run_cli

ENV = cli_env(AUTHORITY_SECRET_KEY="k" * 40)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    assert run_cli(tmp_path, "setup", env=ENV).returncode == 0
    return tmp_path


def cli_json(workdir: Path, *args: str, input_: str | None = None) -> dict[str, object]:
    result = run_cli(workdir, *args, "--json", env=ENV, input_=input_)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_client_secret_is_shown_once_and_stored_only_as_a_keyed_hash(workdir: Path) -> None:
    created = cli_json(workdir, "clients", "create", "svc", "--scope", "read")
    secret = str(created["client_secret"])
    assert len(secret) >= 43  # 256 bits, base64url
    listed = run_cli(workdir, "clients", "list", "--json", env=ENV)
    assert secret not in listed.stdout
    stored = (
        sqlite3.connect(workdir / "var" / "authority.db")
        .execute("SELECT secret_hash FROM clients WHERE client_id = ?", (created["client_id"],))
        .fetchone()[0]
    )
    assert len(stored) == 32
    assert secret.encode() not in stored


def test_public_client_has_no_secret_and_cannot_use_client_credentials(workdir: Path) -> None:
    created = cli_json(workdir, "clients", "create", "spa", "--public")
    assert created["client_secret"] is None
    assert created["grant_types"] == ["refresh_token"]
    refused = run_cli(
        workdir, "clients", "create", "x", "--public", "--grant", "client_credentials", env=ENV
    )
    assert refused.returncode == 1
    assert "public client cannot use client_credentials" in refused.stderr


def test_users_create_reads_the_password_from_stdin_and_refuses_duplicates(workdir: Path) -> None:
    created = cli_json(
        workdir,
        "users",
        "create",
        "alice",
        "--email",
        "a@example.com",
        "--password-stdin",
        input_="correct horse\n",
    )
    assert created["username"] == "alice"
    again = run_cli(
        workdir,
        "users",
        "create",
        "ALICE",
        "--email",
        "b@example.com",
        "--password-stdin",
        env=ENV,
        input_="correct horse\n",
    )
    assert again.returncode == 1
    assert again.stderr.strip() == "error: a user with this username already exists"
    short = run_cli(
        workdir,
        "users",
        "create",
        "bob",
        "--email",
        "b@example.com",
        "--password-stdin",
        env=ENV,
        input_="short\n",
    )
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr
    stored = (
        sqlite3.connect(workdir / "var" / "authority.db")
        .execute("SELECT password_hash FROM users")
        .fetchone()[0]
    )
    assert stored.startswith("$argon2id$")


def test_disabling_a_user_revokes_their_sessions(workdir: Path) -> None:
    cli_json(
        workdir,
        "users",
        "create",
        "alice",
        "--email",
        "a@example.com",
        "--password-stdin",
        input_="correct horse\n",
    )
    db = sqlite3.connect(workdir / "var" / "authority.db")
    client = cli_json(workdir, "clients", "create", "spa", "--public")
    with db:
        db.execute(
            "INSERT INTO refresh_families (id, user_id, client_id, scope, audience,"
            " created_at, expires_at) VALUES ('f1', 1, ?, '', 'default', 0, 9e12)",
            (client["client_id"],),
        )
    assert cli_json(workdir, "users", "disable", "alice") == {
        "username": "alice",
        "disabled": True,
        "sessions_revoked": 1,
    }
    assert db.execute(
        "SELECT revoked_at IS NOT NULL, is_active FROM refresh_families, users"
    ).fetchone() == (1, 0)


def test_tokens_revoke_and_prune(workdir: Path) -> None:
    cli_json(
        workdir,
        "users",
        "create",
        "alice",
        "--email",
        "a@example.com",
        "--password-stdin",
        input_="correct horse\n",
    )
    assert cli_json(workdir, "tokens", "revoke", "--user", "alice") == {
        "username": "alice",
        "sessions_revoked": 0,
    }
    assert cli_json(workdir, "tokens", "prune") == {"deleted": 0, "audit_events_deleted": 0}
    missing = run_cli(workdir, "tokens", "revoke", "--user", "nobody", env=ENV)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no user 'nobody'"
