"""Redirect URIs (README, "Log in an app on another origin"): what may be registered
(RFC 6749 section 3.1.2, RFC 8252) and how a presented one matches: exact strings,
except the port of a loopback IP literal."""

from __future__ import annotations

import pytest

from authority.accounts.redirects import find_redirect, redirect_matches, redirect_uri_problem


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/callback",
        "https://app.example.com:8443/cb?x=1",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8080/callback",
        "http://[::1]:5000/cb",
        "http://localhost:3000/callback",
        "com.example.app:/oauth2redirect",
    ],
)
def test_these_redirect_uris_can_be_registered(uri: str) -> None:
    assert redirect_uri_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://app.example.com/cb#frag", "fragment"),
        ("https://app.example.com/cb#", "fragment"),
        ("http://app.example.com/cb", "loopback"),
        ("http://10.0.0.1/cb", "loopback"),
        ("myapp:/cb", "reverse domain"),
        ("javascript:alert(1)", "reverse domain"),
        ("data:text/html,x", "reverse domain"),
        ("https:///nohost", "host"),
        ("https://user:pw@app.example.com/cb", "user information"),
        ("https://app.example.com/a b", "printable"),
        ("/relative/cb", "absolute"),
        ("HTTPS://app.example.com/cb", "lower-case"),
        ("https://app.example.com:99999999/cb", "malformed"),
        ("", "printable"),
        ("https://app.example.com/" + "a" * 2000, "printable"),
    ],
)
def test_these_redirect_uris_are_refused_with_a_reason(uri: str, reason: str) -> None:
    problem = redirect_uri_problem(uri)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize(
    ("registered", "presented", "matches"),
    [
        ("https://app.example.com/cb", "https://app.example.com/cb", True),
        ("https://app.example.com/cb", "https://app.example.com/cb/", False),
        ("https://app.example.com/cb", "https://app.example.com/CB", False),
        ("https://app.example.com/cb", "https://app.example.com:443/cb", False),
        ("https://app.example.com/cb", "https://app.example.com/cb?x=1", False),
        ("https://app.example.com/cb", "https://app.example.com/cb#x", False),
        ("https://app.example.com/cb", "https://evil.example/cb", False),
        ("http://localhost:3000/cb", "http://localhost:3001/cb", False),
        # RFC 8252 section 7.3: a loopback IP literal matches on any port...
        ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb", True),
        ("http://127.0.0.1:8000/cb", "http://127.0.0.1:9000/cb", True),
        ("http://[::1]/cb", "http://[::1]:4000/cb", True),
        # ... and nothing else may differ.
        ("http://127.0.0.1/cb", "http://127.0.0.1:51234/other", False),
        ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb?x", False),
        ("http://127.0.0.1/cb", "http://[::1]:51234/cb", False),
        ("http://127.0.0.1/cb", "http://127.0.0.1:99999/cb", False),
        ("http://127.0.0.1/cb", "http://127.0.0.1.evil.example:80/cb", False),
        ("http://127.0.0.1/cb", "http://127.0.0.1:80@evil.example/cb", False),
    ],
)
def test_a_presented_redirect_uri_matches_exactly_or_on_a_loopback_port(
    registered: str, presented: str, matches: bool
) -> None:
    assert redirect_matches(registered, presented) is matches


def test_the_redirect_uri_may_be_left_out_only_when_the_client_has_one() -> None:
    one = ("https://a.example/cb",)
    two = ("https://a.example/cb", "https://a.example/other")
    assert find_redirect(one, None) == "https://a.example/cb"
    assert find_redirect(two, None) is None
    assert find_redirect(two, "https://a.example/other") == "https://a.example/other"
    assert find_redirect(two, "https://a.example/nope") is None
