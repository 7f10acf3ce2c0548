"""Every failure of the ``authority`` command is one line per problem on stderr and exit
status 1, with ``{"error": ...}`` on stdout under ``--json``: usage errors included, and
a missing terminal says what to do instead of "Aborted!"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli.main import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, input=stdin, prog_name="authority")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("keys", "rotate", "--size", "1024"), "'1024' is not one of"),
        (("keys", "rotate", "--bogus"), "No such option '--bogus'"),
        (("nonsense",), "No such command 'nonsense'"),
        (("users", "create"), "Missing argument 'USERNAME'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_status_1(
    env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    code, out, err = run(env, *args)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert says in err
    assert "--help" in err


def test_a_usage_error_under_json_is_a_json_error(env: dict[str, str]) -> None:
    code, out, err = run(env, "keys", "rotate", "--size", "1024", "--json")
    assert code == 1
    assert "'1024' is not one of" in json.loads(out)["error"]
    assert err.startswith("error: ")


def test_without_a_terminal_users_create_says_to_use_password_stdin(env: dict[str, str]) -> None:
    code, out, err = run(env, "users", "create", "bob", "--email", "bob@example.com")
    assert code == 1
    assert err == "error: no terminal to ask for the password: give it with --password-stdin\n"
    assert "Aborted" not in out + err


def test_production_problems_are_one_line_each(env: dict[str, str]) -> None:
    code, out, err = run({**env, "AUTHORITY_ENV": "production"}, "serve", "--json")
    lines = err.splitlines()
    assert code == 1
    assert len(lines) >= 3
    assert all(line.startswith("error: AUTHORITY_") for line in lines)
    assert json.loads(out)["problems"] == [line.removeprefix("error: ") for line in lines]


def test_help_still_exits_0(env: dict[str, str]) -> None:
    code, out, _ = run(env, "keys", "--help")
    assert code == 0
    assert "Usage: " in out
    assert "Signing keys" in out
