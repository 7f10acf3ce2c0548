"""The login page and authority.js in a real headless Chromium (Debian's ``chromium``,
driven by Playwright) against a real ``authority serve``: log in, tokens out of reach of
scripts, a silent refresh after the access token expires, two tabs refreshing at the
same moment without ending the session, log out.

The server runs with ``REFRESH_REUSE_GRACE=0``: if two tabs ever presented the same
refresh token, the authority would revoke the session and the test would see it."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, provision

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ACCESS_TTL = 3
# Without these, Chromium phones home at start and on this machine's closed network
# its connection attempts fail by the dozen.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def need_chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("TEST_REQUIRE_BROWSER") == "1":
        pytest.fail("TEST_REQUIRE_BROWSER=1 but chromium is not installed")
    pytest.skip("chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    need_chromium()
    workdir = tmp_path_factory.mktemp("browser")
    deployed = provision(
        workdir,
        f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
        AUTHORITY_ACCESS_TTL=str(ACCESS_TTL),
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


def wait_for_state(page: Page, state: str) -> None:
    page.wait_for_selector(f"body[data-state='{state}']", timeout=10_000)


def query(deployment: Deployment, sql: str) -> list[Any]:
    """``Deployment.query`` from another thread: Playwright's loop owns this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(deployment.query, sql).result()


def poll(page: Page, expression: str, timeout: float = 10) -> None:
    """Wait until ``expression`` is true in the page (``wait_for_function`` would eval a
    string, which the page's CSP rightly forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout}s: {expression}"
        time.sleep(0.05)


def test_login_silent_refresh_two_tabs_and_logout_in_a_real_browser(
    deployment: Deployment, browser: Browser
) -> None:
    base = deployment.servers[0].url
    context = browser.new_context(base_url=base)
    refreshes: list[str] = []
    context.on(
        "request",
        lambda request: (
            refreshes.append(request.url) if request.url.endswith("/auth/refresh") else None
        ),
    )
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda error: errors.append(str(error)))

    # Log in through the form and see the user.
    tab.goto("/login")
    wait_for_state(tab, "signed-out")
    tab.fill("#login", USERNAME)
    tab.fill("#password", PASSWORD)
    tab.click("#sign-in")
    wait_for_state(tab, "signed-in")
    assert tab.inner_text("#username") == USERNAME

    # Scripts see the CSRF token, never a token that grants access.
    visible = tab.evaluate("document.cookie")
    assert "csrftoken=" in visible
    assert "access_token" not in visible
    assert "refresh_token" not in visible
    jar = {cookie["name"]: cookie for cookie in context.cookies()}
    assert jar["access_token"]["httpOnly"]
    assert jar["refresh_token"]["httpOnly"]
    assert jar["access_token"]["sameSite"] == "Lax"

    # The access token expires; the next call refreshes silently, once. (The page's
    # first look, before login, tried a refresh too, with no session to refresh.)
    refreshes.clear()
    tab.evaluate("window.authority.refreshes = 0")
    time.sleep(ACCESS_TTL + 1)
    tab.click("#whoami")
    poll(tab, "window.authority.refreshes === 1")
    wait_for_state(tab, "signed-in")
    assert len(refreshes) == 1

    # Concurrent calls in one tab share one refresh.
    time.sleep(ACCESS_TTL + 1)
    users = tab.evaluate(
        "Promise.all([authority.me(), authority.me(), authority.me()])"
        ".then(all => all.map(u => u && u.username))"
    )
    assert users == [USERNAME] * 3
    assert len(refreshes) == 2

    # A second tab; both refresh at the same moment and both stay signed in.
    other = context.new_page()
    other.on("pageerror", lambda error: errors.append(str(error)))
    other.goto("/login")
    wait_for_state(other, "signed-in")
    time.sleep(ACCESS_TTL + 1)
    before = len(refreshes)
    for page in (tab, other):
        page.evaluate("window.pending = authority.me()")
    for page in (tab, other):
        assert page.evaluate("window.pending.then(u => u && u.username)") == USERNAME
    assert 1 <= len(refreshes) - before <= 2
    rows = query(deployment, "SELECT revoked_at FROM refresh_families")
    assert [row.revoked_at for row in rows] == [None]
    for page in (tab, other):
        page.click("#whoami")
        wait_for_state(page, "signed-in")

    # Log out in one tab: the other hears of it, and the session is over.
    tab.click("#logout")
    wait_for_state(tab, "signed-out")
    wait_for_state(other, "signed-out")
    assert other.evaluate("authority.me()") is None
    assert query(deployment, "SELECT revoke_reason FROM refresh_families")[0][0] == "logout"
    assert not errors
    context.close()


def test_the_login_page_forbids_inline_scripts_and_framing(deployment: Deployment) -> None:
    page = httpx.get(f"{deployment.servers[0].url}/login", timeout=10)
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert '<script src="/static/authority.js"' in page.text
    # The page is only served with those headers, never as a plain static file.
    assert httpx.get(f"{deployment.servers[0].url}/static/login.html").status_code == 404
    script = httpx.get(f"{deployment.servers[0].url}/static/authority.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_authority_js_sends_the_csrf_token_and_cookies_only_to_the_authority(
    deployment: Deployment, browser: Browser
) -> None:
    """The CSRF token is the key to every cookie request: a URL of another origin given
    to ``authority.js`` gets neither it nor the credentials (README, "In the browser")."""
    base = deployment.servers[0].url
    context = browser.new_context(base_url=base)
    elsewhere: list[dict[str, str]] = []

    def record(route: Route) -> None:
        elsewhere.append(route.request.headers)
        route.fulfill(status=200, body="{}", headers={"Access-Control-Allow-Origin": "*"})

    context.route(re.compile(r"^https?://elsewhere\.example/"), record)
    # A page of the authority's origin without the login page's CSP (whose connect-src
    # would stop the requests before authority.js is put to the test).
    context.route(
        f"{base}/app-page",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body='<!DOCTYPE html><script src="/static/authority.js"></script>',
        ),
    )
    tab = context.new_page()
    tab.goto("/app-page")
    for target in ("https://elsewhere.example/steal", "//elsewhere.example/steal"):
        status = tab.evaluate(
            "target => new Authority().send(target, {method: 'POST'}).then(r => r.status)",
            target,
        )
        assert status == 200
    assert len(elsewhere) == 2
    assert not [h for h in elsewhere if "x-csrftoken" in h or "cookie" in h]
    # Waited for, not collected by an event handler: Playwright may dispatch the
    # request event after evaluate has returned.
    with tab.expect_request(lambda request: request.url.endswith("/auth/logout")) as ours:
        assert (
            tab.evaluate(
                "new Authority().send('/auth/logout', {method: 'POST'}).then(r => r.status)"
            )
            == 200
        )
    assert "x-csrftoken" in ours.value.all_headers()
    context.close()


def test_the_schema_page_renders_from_the_authority_alone(
    deployment: Deployment, browser: Browser
) -> None:
    """``/schema`` needs no other origin (offline, no third-party code) and its CSP
    refuses nothing the page itself uses (README, "HTTP API")."""
    base = deployment.servers[0].url
    context = browser.new_context(base_url=base)
    foreign: list[str] = []

    def refuse(route: Route) -> None:
        foreign.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(base), refuse)
    page = context.new_page()
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/schema")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert "/auth/login" in page.inner_text("#swagger-ui")
    assert foreign == []
    assert errors == []
    context.close()


HELD_401 = """async ([username, password, wait]) => {
  const authority = new Authority();
  await authority.login(username, password);
  await new Promise((done) => setTimeout(done, wait)); // the access token expires
  const send = authority.send.bind(authority);
  let release;
  const gate = new Promise((done) => { release = done; });
  let held = false;
  authority.send = async (path, options) => {
    const response = await send(path, options);
    if (path === "/auth/me" && !held) { held = true; await gate; }
    return response;
  };
  const slow = authority.me(); // sent with the expired token: its 401 is held back
  while (!held) await new Promise((done) => setTimeout(done, 10));
  const standing = await authority.refresh();
  release();
  const user = await slow;
  await authority.logout();
  return [standing, user && user.username, authority.refreshes];
}"""


def test_a_401_that_arrives_after_a_refresh_is_retried_without_another_refresh(
    deployment: Deployment, browser: Browser
) -> None:
    """A slow request sent with the old access token is answered 401 after the tab's
    refresh has ended: it is retried with the new token, not refreshed again (a loaded
    machine showed three refreshes where two were due)."""
    base = deployment.servers[0].url
    context = browser.new_context(base_url=base)
    context.route(
        f"{base}/app-page",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            body='<!DOCTYPE html><script src="/static/authority.js"></script>',
        ),
    )
    tab = context.new_page()
    tab.goto("/app-page")
    result = tab.evaluate(HELD_401, [USERNAME, PASSWORD, (ACCESS_TTL + 1) * 1000])
    assert result == [True, USERNAME, 1]
    context.close()
