"""Settings come from AUTHORITY_* variables into a frozen object (README, "Configuration")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from authority.settings import Settings, SettingsError


def test_defaults_match_the_spec() -> None:
    s = Settings.from_env({}, dotenv=None)
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8000, 1)
    assert s.issuer == "http://127.0.0.1:8000"
    assert s.database_url == "sqlite+aiosqlite:///var/authority.db"
    assert (s.keystore, s.keys_dir, s.key_passphrase) == ("file", Path("keys"), None)
    assert (s.env, s.audience) == ("development", "default")
    assert (s.access_ttl, s.refresh_ttl, s.refresh_family_ttl) == (900, 604800, 2592000)
    assert (s.refresh_reuse_grace, s.key_rotation_interval, s.key_publish_delay) == (
        10,
        2592000,
        600,
    )
    assert (s.jwks_max_age, s.leeway, s.cors_origins) == (300, 30, ())
    assert s.secure_cookies is False


def test_environment_variables_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {
            "AUTHORITY_PORT": "9000",
            "AUTHORITY_ACCESS_TTL": "60",
            "AUTHORITY_CORS_ORIGINS": "https://a.example, https://b.example",
            "AUTHORITY_COOKIE_SECURE": "yes",
            "AUTHORITY_KEYS_DIR": "/srv/keys",
            "AUTHORITY_ISSUER": "https://auth.example/",
        },
        dotenv=None,
    )
    assert s.port == 9000
    assert s.access_ttl == 60
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.secure_cookies is True
    assert s.keys_dir == Path("/srv/keys")
    assert s.issuer == "https://auth.example"


def test_issuer_defaults_to_host_and_port() -> None:
    s = Settings.from_env({"AUTHORITY_HOST": "auth.lan", "AUTHORITY_PORT": "8080"}, dotenv=None)
    assert s.issuer == "http://auth.lan:8080"


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("AUTHORITY_AUDIENCE=from-file\nAUTHORITY_LEEWAY=5\n")
    s = Settings.from_env({"AUTHORITY_LEEWAY": "7"}, dotenv=dotenv)
    assert s.audience == "from-file"
    assert s.leeway == 7


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]


def test_passphrase_is_not_shown_in_repr() -> None:
    assert "hunter2" not in repr(Settings(key_passphrase="hunter2"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTHORITY_PORT": "eighty"}, "AUTHORITY_PORT must be a number"),
        ({"AUTHORITY_PORT": "70000"}, "AUTHORITY_PORT must be between"),
        ({"AUTHORITY_ACCESS_TTL": "0"}, "AUTHORITY_ACCESS_TTL must be positive"),
        ({"AUTHORITY_LEEWAY": "-1"}, "AUTHORITY_LEEWAY must not be negative"),
        ({"AUTHORITY_KEYSTORE": "s3"}, "AUTHORITY_KEYSTORE must be file or database"),
        ({"AUTHORITY_ENV": "prod"}, "AUTHORITY_ENV must be"),
        ({"AUTHORITY_COOKIE_SECURE": "maybe"}, "AUTHORITY_COOKIE_SECURE must be true or false"),
        ({"AUTHORITY_KEY_SIZE": "1024"}, "AUTHORITY_KEY_SIZE must be one of"),
        ({"AUTHORITY_ISSUER": "auth.example"}, "AUTHORITY_ISSUER must be an http(s) URL"),
    ],
)
def test_invalid_values_are_refused_with_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        Settings.from_env(env, dotenv=None)
    assert "\n" not in str(e.value)


def test_production_refuses_insecure_settings_one_line_each() -> None:
    s = Settings.from_env(
        {"AUTHORITY_ENV": "production", "AUTHORITY_COOKIE_SECURE": "false"}, dotenv=None
    )
    problems = s.production_problems()
    assert len(problems) == 4
    assert any("AUTHORITY_KEY_PASSPHRASE" in p for p in problems)
    assert any("AUTHORITY_SECRET_KEY" in p for p in problems)
    assert any("AUTHORITY_COOKIE_SECURE" in p for p in problems)
    assert any("https" in p for p in problems)


def test_production_with_secure_settings_has_no_problems() -> None:
    s = Settings.from_env(
        {
            "AUTHORITY_ENV": "production",
            "AUTHORITY_KEY_PASSPHRASE": "x" * 32,
            "AUTHORITY_SECRET_KEY": "k" * 40,
            "AUTHORITY_ISSUER": "https://auth.example",
        },
        dotenv=None,
    )
    assert s.secure_cookies is True
    assert s.production_problems() == []


def test_secret_key_outside_production_is_made_once_and_kept_private(tmp_path: Path) -> None:
    s = Settings(secret_key_file=tmp_path / "var" / "secret_key")
    first = s.secret_key_bytes()
    assert len(first) >= 32
    assert Settings(secret_key_file=tmp_path / "var" / "secret_key").secret_key_bytes() == first
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


def test_explicit_secret_key_wins_and_short_ones_are_refused(tmp_path: Path) -> None:
    assert Settings(secret_key="s" * 32).secret_key_bytes() == b"s" * 32
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings(secret_key="short")
