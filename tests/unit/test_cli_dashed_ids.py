"""Ids typed as command arguments may begin with "-": a kid is an RFC 7638 thumbprint
in base64url, one in 64 of them does. ``keys revoke -MRy…`` and ``clients show -x…``
take it as the id, not as an unknown option; client ids are never made that way, and
no client name begins so."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.accounts.clients import new_client_id
from authority.cli.main import main


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": sqlite_url,
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY": "k" * 40,
    }


def error_of(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, prog_name="authority")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    return result.stderr


def test_a_kid_beginning_with_a_dash_is_the_kid(env: dict[str, str]) -> None:
    setup = CliRunner().invoke(main, ["setup"], env=env, prog_name="authority")
    assert setup.exit_code == 0, setup.stderr
    said = error_of(env, "keys", "revoke", "-MRyUz5ZfVbZeo-eH7QJ1C9maOeDA7r3lXJcNmxu5JM")
    assert said == "error: no key with kid '-MRyUz5ZfVbZeo-eH7QJ1C9maOeDA7r3lXJcNmxu5JM'\n"
    # A mistyped option is still refused, not taken for a kid.
    assert "unexpected extra argument" in error_of(env, "keys", "revoke", "KID", "--jsno")


@pytest.mark.parametrize("command", ["show", "rotate-secret", "disable", "enable", "delete"])
def test_a_client_reference_beginning_with_a_dash_is_the_reference(
    env: dict[str, str], command: str
) -> None:
    assert error_of(env, "clients", command, "-x7Ab") == "error: no client '-x7Ab'\n"


def test_no_client_id_or_name_begins_with_a_dash(env: dict[str, str]) -> None:
    assert not [made for made in (new_client_id() for _ in range(5000)) if made[0] == "-"]
    said = error_of(env, "clients", "create", "--", "-billing")
    assert said == (
        "error: a client name cannot begin with '-' (commands would read it as an option)\n"
    )
