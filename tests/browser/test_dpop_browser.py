"""authority.js in DPoP mode in a real headless Chromium against a real
``authority serve`` (with ``DPOP_NONCE=true``, so the script's nonce retry is put to
work): log in, call ``/auth/me``, reload and refresh with the key kept in IndexedDB,
the private key not extractable, and the access token refused when replayed as
``Bearer`` from outside the browser (README, "DPoP: sender-constrained tokens")."""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from joserfc.jwk import JWKRegistry
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.browser.test_browser_login import CHROMIUM_ARGS, need_chromium
from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, provision

# A page of the authority's origin that loads authority.js, without the login page's
# CSP (which would refuse the test's own evaluated code nothing, but keeps it plain).
PAGE = '<!DOCTYPE html><script src="/static/authority.js"></script>'
STORED = """name => new Promise((resolve, reject) => {
  const opening = indexedDB.open("authority", 1);
  opening.onerror = () => reject(opening.error);
  opening.onsuccess = () => {
    const request = opening.result.transaction("dpop").objectStore("dpop").get(name);
    request.onsuccess = () => { opening.result.close(); resolve(request.result); };
  };
})"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    need_chromium()
    workdir = tmp_path_factory.mktemp("dpop-browser")
    deployed = provision(
        workdir,
        f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
        AUTHORITY_DPOP_NONCE="true",
        AUTHORITY_REFRESH_REUSE_GRACE="0",
    )
    deployed.start()
    yield deployed
    deployed.stop()


@pytest.fixture(scope="module")
def browser(deployment: Deployment) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=need_chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def query(deployment: Deployment, sql: str) -> list[Any]:
    """``Deployment.query`` from another thread: Playwright's loop owns this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(deployment.query, sql).result()


API = "https://api.example.test"  # a resource server the page names in resourceOrigins


def open_page(page: Page) -> None:
    page.goto("/app-page")
    page.evaluate(f"window.auth = new Authority({{dpop: true, resourceOrigins: [{API!r}]}})")


def thumbprint_of_stored_key(page: Page) -> str:
    public = page.evaluate(
        f"({STORED})('key').then(pair => crypto.subtle.exportKey('jwk', pair.publicKey))"
    )
    members = {k: public[k] for k in ("kty", "crv", "x", "y")}
    return str(JWKRegistry.import_key(members).thumbprint())


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_authority_js_in_dpop_mode_binds_the_session_to_a_key_the_page_cannot_export(
    deployment: Deployment, browser: Browser
) -> None:
    base = deployment.servers[0].url
    context = browser.new_context(base_url=base)
    context.route(
        f"{base}/app-page",
        lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE),
    )
    sent: list[tuple[str, dict[str, str]]] = []
    context.on("request", lambda request: sent.append((request.url, request.headers)))
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_page(page)

    # Login: the first proof lacks the server's nonce, the script retries once with it.
    user = page.evaluate(f"auth.login({USERNAME!r}, {PASSWORD!r}).then(u => u.username)")
    assert user == USERNAME
    # Playwright may dispatch a request event after evaluate returned: let them arrive.
    for _ in range(100):
        if sum(url.endswith("/auth/login") for url, _h in sent) >= 2:
            break
        page.wait_for_timeout(50)
    logins = [headers for url, headers in sent if url.endswith("/auth/login")]
    assert len(logins) == 2
    assert all("dpop" in headers for headers in logins)
    assert not [h for _url, h in sent if "x-csrftoken" in h or "cookie" in h]
    assert page.evaluate("auth.me().then(u => u && u.username)") == USERNAME
    for _ in range(100):
        if any(url.endswith("/auth/me") for url, _h in sent):
            break
        page.wait_for_timeout(50)
    me_request = [h for url, h in sent if url.endswith("/auth/me")][-1]
    assert me_request["authorization"].startswith("DPoP ")

    # The tokens are bound to the key kept in IndexedDB, and so is the session.
    jkt = thumbprint_of_stored_key(page)
    session = page.evaluate("auth.session()")
    assert claims(session["access"])["cnf"] == {"jkt": jkt}
    assert [row.dpop_jkt for row in query(deployment, "SELECT dpop_jkt FROM refresh_families")] == [
        jkt
    ]

    # The private key cannot be read out, not even by a script of the page.
    exported = page.evaluate(
        f"({STORED})('key').then(pair => crypto.subtle.exportKey('jwk', pair.privateKey))"
        ".then(() => 'exported', error => error.name)"
    )
    assert exported == "InvalidAccessError"
    assert page.evaluate(f"({STORED})('key').then(pair => pair.privateKey.extractable)") is False

    # A resource server named in resourceOrigins gets the token with a proof for its
    # URL; any other origin gets neither.
    elsewhere: dict[str, dict[str, str]] = {}

    def record(route: Route) -> None:
        elsewhere[route.request.url] = route.request.headers
        route.fulfill(status=200, body="{}", headers={"Access-Control-Allow-Origin": "*"})

    context.route(re.compile(r"^https://(api\.example\.test|elsewhere\.example)/"), record)
    for url in (f"{API}/orders?page=2", "https://elsewhere.example/steal"):
        assert page.evaluate("url => auth.fetch(url).then(r => r.status)", url) == 200
    api = elsewhere[f"{API}/orders?page=2"]
    assert api["authorization"] == f"DPoP {session['access']}"
    api_proof = claims(api["dpop"])
    assert (api_proof["htm"], api_proof["htu"]) == ("GET", f"{API}/orders")
    assert "ath" in api_proof
    stranger = elsewhere["https://elsewhere.example/steal"]
    assert "authorization" not in stranger
    assert "dpop" not in stranger

    # Stolen from the page, the access token is refused outside it.
    stolen = httpx.get(
        f"{base}/auth/me", headers={"Authorization": f"Bearer {session['access']}"}, timeout=10
    )
    assert stolen.status_code == 401
    assert stolen.headers["www-authenticate"].startswith("DPoP ")
    without_proof = httpx.get(
        f"{base}/auth/me", headers={"Authorization": f"DPoP {session['access']}"}, timeout=10
    )
    assert without_proof.status_code == 401
    stolen_refresh = httpx.post(
        f"{base}/auth/refresh", json={"refresh": session["refresh"]}, timeout=10
    )
    assert stolen_refresh.status_code == 400
    assert stolen_refresh.json()["error"] == "invalid_dpop_proof"

    # After a reload the same key refreshes the session (a new key would be refused).
    page.reload()
    open_page(page)
    assert page.evaluate("auth.refresh()") is True
    assert page.evaluate("auth.refreshes") == 1
    renewed = page.evaluate("auth.session()")
    assert renewed["refresh"] != session["refresh"]
    assert claims(renewed["access"])["cnf"] == {"jkt": jkt}
    assert page.evaluate("auth.me().then(u => u && u.username)") == USERNAME
    families = query(deployment, "SELECT revoked_at FROM refresh_families")
    assert [row.revoked_at for row in families] == [None]

    # Logging out ends the session and forgets its tokens.
    page.evaluate("auth.logout()")
    assert page.evaluate("auth.session()") is None
    assert page.evaluate("auth.me()") is None
    reason = query(deployment, "SELECT revoke_reason FROM refresh_families")[0][0]
    assert reason == "logout"
    assert not errors
    context.close()
