"""``authority clients`` in a real process: one JSON document on stdout per command,
one line on stderr per error, nothing else on either (no log line, no secret)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.processes import cli_env, run_cli

ENV = cli_env(AUTHORITY_SECRET_KEY="k" * 40)


def test_the_client_lifecycle_prints_one_document_per_command(tmp_path: Path) -> None:
    def run(*args: str) -> dict[str, object]:
        result = run_cli(tmp_path, "clients", *args, "--json", env=ENV)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        return dict(json.loads(result.stdout))

    assert run_cli(tmp_path, "db", "upgrade", env=ENV).returncode == 0
    created = run("create", "billing", "--audience", "https://billing.example.com")
    taken = run_cli(tmp_path, "clients", "create", "billing", env=ENV)
    assert (taken.returncode, taken.stdout) == (1, "")
    assert taken.stderr == "error: a client named 'billing' already exists\n"

    rotated = run("rotate-secret", "billing", "--overlap", "300")
    assert rotated["previous_secret_valid_until"] is not None
    shown = run("show", str(created["client_id"]))
    assert shown["previous_secret_valid_until"] == rotated["previous_secret_valid_until"]
    assert shown["default_audience"] == "https://billing.example.com"
    assert run("disable", "billing")["active"] is False
    assert run("enable", "billing")["active"] is True
    assert run("delete", "billing")["deleted"] is True
    listed = run_cli(tmp_path, "clients", "list", "--json", env=ENV).stdout
    for secret in (created["client_secret"], rotated["client_secret"]):
        assert str(secret) not in listed + json.dumps(shown)
    assert "billing" not in listed
