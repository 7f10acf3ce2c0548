"""A browser's part of the authorization code flow against a real server, driven by
httpx with the cookie session (README, "Log in an app on another origin"): log in
with ``POST /auth/login`` in cookie mode with its CSRF token, then follow
``/oauth/authorize`` to the redirect URI, consenting when asked."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx

_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def signed_in_browser(base_url: str, username: str, password: str) -> httpx.Client:
    browser = httpx.Client(base_url=base_url, timeout=10)
    token = browser.get("/auth/csrf").json()["csrf_token"]
    login = browser.post(
        "/auth/login",
        json={"username": username, "password": password},
        headers={"X-CSRFToken": token},
    )
    assert login.status_code == 200, login.text
    return browser


def follow_authorization(browser: httpx.Client, url: str) -> str:
    """The URL the authorization request ends at (the client's redirect URI, with its
    code or error), consenting if the consent page is shown."""
    response = browser.get(url)
    if response.status_code == 200 and 'id="consent-form"' in response.text:
        fields = {k: html.unescape(v) for k, v in _HIDDEN.findall(response.text)}
        response = browser.post("/oauth/consent", data={**fields, "decision": "allow"})
    assert response.status_code in (302, 303), response.text
    return response.headers["location"]


def code_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]
