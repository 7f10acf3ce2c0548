"""``authority keys list`` shows whole kids, which ``keys revoke KID`` needs, however
narrow the terminal, and times as ISO 8601 in UTC, in the table and under --json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from authority.cli import common
from authority.cli.main import main

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def keys(env: dict[str, str]) -> list[dict[str, Any]]:
    cli(env, "setup")
    cli(env, "keys", "rotate")
    rows: list[dict[str, Any]] = json.loads(cli(env, "keys", "list", "--json"))
    return rows


def test_json_times_are_iso_8601_in_utc(env: dict[str, str]) -> None:
    current, pending = keys(env)
    assert (current["state"], pending["state"]) == ("current", "next")
    for row in (current, pending):
        assert ISO.match(row["created_at"]), row
        assert ISO.match(row["activate_at"]), row
        assert (row["retired_at"], row["remove_after"]) == (None, None)
        assert row["algorithm"] == "RS256"


def test_the_table_shows_whole_kids_in_an_80_column_terminal(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = keys(env)
    monkeypatch.setattr(common.console, "width", 80)
    table = cli(env, "keys", "list")
    for row in rows:
        line = next(line for line in table.splitlines() if row["state"] in line.split())
        assert line.split()[:2] == [row["kid"], row["state"]]
        assert row["activate_at"] in line.split()
    assert "…" not in table
