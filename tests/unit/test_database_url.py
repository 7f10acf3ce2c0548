"""An unusable ``DATABASE_URL`` is one line with the URL to use instead, exit status 1,
never a traceback, for every command; and no command leaves an empty database file
behind when it fails (README, "Configuration")."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli.main import main
from authority.settings import Settings, SettingsError
from authority.storage.migrate import upgrade

BAD_URLS = [
    (
        "sqlite:///x.db",
        "AUTHORITY_DATABASE_URL sqlite:///x.db needs the async driver: sqlite+aiosqlite:///x.db",
    ),
    (
        "postgres://app:hunter2@db.internal/auth",
        "AUTHORITY_DATABASE_URL postgres://app:***@db.internal/auth needs the async driver: "
        "postgresql+asyncpg://app:***@db.internal/auth",
    ),
    (
        "postgresql://db.internal/auth",
        "AUTHORITY_DATABASE_URL postgresql://db.internal/auth needs the async driver: "
        "postgresql+asyncpg://db.internal/auth",
    ),
    ("mysql://x", "AUTHORITY_DATABASE_URL: mysql is not supported (use sqlite+aiosqlite:///"),
    ("garbage", "AUTHORITY_DATABASE_URL is not a database URL (use sqlite+aiosqlite:///"),
    ("", "AUTHORITY_DATABASE_URL is empty (use sqlite+aiosqlite:///"),
    ("sqlite+aiosqlite://", "AUTHORITY_DATABASE_URL sqlite+aiosqlite:// is an in-memory database"),
]
COMMANDS = [("serve",), ("setup",), ("db", "upgrade"), ("keys", "rotate"), ("clients", "list")]


@pytest.mark.parametrize(("url", "says"), BAD_URLS)
def test_an_unusable_database_url_is_one_line_with_what_to_use(url: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"AUTHORITY_DATABASE_URL": url}, dotenv=None)
    [problem] = caught.value.problems
    assert problem.startswith(says)
    assert "hunter2" not in problem


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(("url", "says"), BAD_URLS[:3])
def test_every_command_refuses_it_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], url: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"AUTHORITY_ENV": "test", "AUTHORITY_DATABASE_URL": url}
    result = CliRunner().invoke(main, list(args), env=env)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: {says}")
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "no database file, no keys directory"


def test_a_command_on_a_database_not_made_yet_says_how_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["clients", "list"], env={"AUTHORITY_ENV": "test"})
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no database at var/authority.db "
        "(run `authority db upgrade`, or `authority setup`)\n"
    )
    assert not (tmp_path / "var" / "authority.db").exists()


def test_a_migration_that_fails_removes_the_database_file_it_created(tmp_path: Path) -> None:
    path = tmp_path / "authority.db"
    (tmp_path / "authority.db-wal").mkdir()  # SQLite cannot open its write-ahead log
    with pytest.raises(Exception, match="disk I/O error"):
        upgrade(f"sqlite+aiosqlite:///{path}")
    assert not path.exists()


def test_setup_reports_that_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "authority.db-wal").mkdir()
    result = CliRunner().invoke(main, ["setup"], env={"AUTHORITY_ENV": "test"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database unreachable: ")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "var" / "authority.db").exists()
