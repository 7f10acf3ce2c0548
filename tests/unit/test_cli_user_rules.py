"""``authority users create`` applies the sign-up rules of ``/auth/register``: one set
of rules for a user, whoever creates it; each problem on the one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli.main import main
from authority.storage.migrate import upgrade


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    upgrade(url)
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": url,
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


def create(env: dict[str, str], username: str, email: str, password: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["users", "create", username, "--email", email, "--password-stdin"],
        input=password + "\n",
        env=env,
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("username", "email", "password", "problem"),
    [
        ("bob", "bob@example.com", "password123", "this password is too common"),
        ("bob", "bob@example.com", "bob@example.com", "must not be your username or email"),
        ("bob smith", "bob@example.com", "correct horse", "only letters, digits and . + - _"),
        ("bob", "bob-at-example.com", "correct horse", "not a valid email address"),
        ("bob", "bob@example.com", "short", "at least 8 characters"),
    ],
)
def test_users_create_refuses_what_sign_up_refuses(
    env: dict[str, str], username: str, email: str, password: str, problem: str
) -> None:
    code, output = create(env, username, email, password)
    assert code == 1
    assert problem in output
    assert len([line for line in output.splitlines() if line.startswith("error:")]) == 1


def test_users_create_accepts_what_sign_up_accepts(env: dict[str, str]) -> None:
    code, output = create(env, "bob", "bob@example.com", "correct horse battery")
    assert code == 0, output
    assert "created user bob" in output
