"""``authority clients create --grant authorization_code --redirect-uri ...`` (README,
"Log in an app on another origin"): redirect URIs are checked before anything is
stored, and ``clients show`` lists them, in text and JSON."""

from __future__ import annotations

import pytest

from authority.storage.tables import Client
from tests.unit.test_client_commands import env, ok, one_line_error, rows, run

__all__ = ["env"]  # the fixture, used by name


def test_an_authorization_code_client_keeps_its_redirect_uris_and_shows_them(
    env: dict[str, str],
) -> None:
    created = ok(
        env,
        "clients",
        "create",
        "my-spa",
        "--public",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--post-logout-redirect-uri",
        "https://app.example.com/",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--first-party",
    )
    assert created["client_secret"] is None
    shown = ok(env, "clients", "show", "my-spa")
    assert shown["grant_types"] == ["authorization_code", "refresh_token"]
    assert shown["redirect_uris"] == [
        "https://app.example.com/callback",
        "http://127.0.0.1/callback",
    ]
    assert shown["post_logout_redirect_uris"] == ["https://app.example.com/"]
    assert shown["first_party"] is True
    code, text, _ = run(env, "clients", "show", "my-spa")
    assert code == 0
    assert "https://app.example.com/callback http://127.0.0.1/callback" in text
    assert "first_party:" in text
    confidential = ok(
        env,
        "clients",
        "create",
        "partner",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "com.example.partner:/cb",
    )
    assert confidential["client_secret"]
    assert ok(env, "clients", "show", "partner")["first_party"] is False


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("--redirect-uri", "https://app.example.com/cb#x"),
            "redirect URI 'https://app.example.com/cb#x' has a fragment (RFC 6749 section 3.1.2)",
        ),
        (
            ("--redirect-uri", "http://app.example.com/cb"),
            "redirect URI 'http://app.example.com/cb': http:// only on a loopback host (RFC 8252)",
        ),
        (
            ("--redirect-uri", "https://app.example.com/cb", "--post-logout-redirect-uri", "x"),
            "redirect URI 'x' is not an absolute URI with a lower-case scheme",
        ),
        ((), "authorization_code needs at least one --redirect-uri"),
    ],
)
def test_a_bad_redirect_uri_is_one_line_and_stores_nothing(
    env: dict[str, str], sqlite_url: str, args: tuple[str, ...], says: str
) -> None:
    before = rows(sqlite_url, Client.__table__)
    grant = ("--grant", "authorization_code")
    assert one_line_error(env, "clients", "create", "app", *grant, *args) == says
    assert rows(sqlite_url, Client.__table__) == before


def test_redirect_uris_need_the_authorization_code_grant(
    env: dict[str, str], sqlite_url: str
) -> None:
    before = rows(sqlite_url, Client.__table__)
    assert one_line_error(
        env, "clients", "create", "svc", "--redirect-uri", "https://a.example/cb"
    ) == ("redirect URIs are for clients with --grant authorization_code")
    assert rows(sqlite_url, Client.__table__) == before
