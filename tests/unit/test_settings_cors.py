"""``CORS_ORIGINS`` lists exact origins (RFC 6454 section 7), each of which may send
requests with the user's cookies: ``https://host[:port]``, and ``http://`` only for a
loopback host outside production. ``*``, ``null``, patterns, paths and plain ``http://``
are refused at startup with one clear line (README, "Configuration")."""

from __future__ import annotations

import pytest

from authority.settings import Settings, SettingsError

REFUSED = [
    "*",
    "null",
    "https://*.example.com",
    "https://app.example.com/",
    "https://app.example.com/path",
    "https://app.example.com?x=1",
    "HTTPS://APP.example.com",
    "https://user:pw@app.example.com",
    "https://app.example.com:99999",
    "app.example.com",
    "ftp://app.example.com",
    "http://app.example.com",
]


@pytest.mark.parametrize("env", ["development", "test", "production"])
@pytest.mark.parametrize("origin", REFUSED)
def test_unsafe_cors_origins_are_refused_with_one_line(env: str, origin: str) -> None:
    variables = {"AUTHORITY_ENV": env, "AUTHORITY_CORS_ORIGINS": f"https://ok.example,{origin}"}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(variables, dotenv=None)
    message = str(refused.value)
    assert message.startswith(f"AUTHORITY_CORS_ORIGINS: {origin!r} ")
    assert "\n" not in message


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "https://app.example.com:8443", "https://[2001:db8::1]"]
)
def test_exact_https_origins_are_accepted_in_production(origin: str) -> None:
    settings = Settings(env="production", cors_origins=(origin,))
    assert settings.cors_origins == (origin,)


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:5173", "http://[::1]:8080"]
)
def test_http_is_accepted_for_loopback_outside_production_only(origin: str) -> None:
    assert Settings(env="development", cors_origins=(origin,)).cors_origins == (origin,)
    assert Settings(env="test", cors_origins=(origin,)).cors_origins == (origin,)
    with pytest.raises(SettingsError, match="must use https"):
        Settings(env="production", cors_origins=(origin,))
