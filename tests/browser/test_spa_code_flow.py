"""The example SPA (``examples/spa``) on another origin, in a real headless Chromium
against a real ``authority serve`` (README, "Log in an app on another origin"): the
app starts the flow, the user logs in on ``/login`` and consents, the app lands back
with a code, exchanges it, refreshes, and logs out everywhere; no token is ever in
``localStorage``."""

from __future__ import annotations

import concurrent.futures
import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.browser.test_browser_login import CHROMIUM_ARGS, need_chromium, wait_for_state
from tests.helpers.deployment import PASSWORD, USERNAME, Deployment, provision

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "spa"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[tuple[ThreadingHTTPServer, Path]]:
    """A tiny static server of a copy of the example, on a port of its own."""
    need_chromium()
    site = tmp_path / "spa"
    shutil.copytree(EXAMPLE, site)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, site
    server.shutdown()
    server.server_close()


def query(deployment: Deployment, sql: str) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(deployment.query, sql).result()


def test_an_app_on_another_origin_logs_in_refreshes_and_logs_out_in_a_real_browser(
    tmp_path: Path, app_server: tuple[ThreadingHTTPServer, Path]
) -> None:
    server, site = app_server
    app = f"http://127.0.0.1:{server.server_address[1]}/"
    workdir = tmp_path / "authority"
    workdir.mkdir()
    deployment = provision(
        workdir,
        f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
        AUTHORITY_CORS_ORIGINS=app.rstrip("/"),
        AUTHORITY_REFRESH_REUSE_GRACE="0",
    )
    client = deployment.create_client(
        "example-spa",
        "--public",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        app,
        "--post-logout-redirect-uri",
        app,
        "--scope",
        "openid",
        "--scope",
        "profile",
    )
    (authority,) = deployment.start()
    (site / "config.js").write_text(
        "window.SPA_CONFIG = "
        f'{{issuer: "{authority.url}", clientId: "{client.client_id}", '
        'scope: "openid profile", storeTokens: false};\n'
    )
    errors: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=need_chromium(), args=CHROMIUM_ARGS
            )
            page: Page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(app)
            wait_for_state(page, "signed-out")
            page.click("#login")
            # The authority's login page, then back to the request, then consent.
            page.wait_for_url(f"{authority.url}/login?*")
            wait_for_state(page, "signed-out")
            page.fill("#login", USERNAME)
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            page.wait_for_selector("#consent-form", timeout=10_000)
            assert "example-spa" in page.inner_text("h1")
            page.click("#allow")
            page.wait_for_url(app + "*")
            wait_for_state(page, "signed-in")
            assert page.inner_text("#user") == USERNAME
            assert "code=" not in page.url
            assert page.evaluate("Object.keys(localStorage)") == []
            page.click("#refresh")
            page.wait_for_selector("#refreshes:text('1')", timeout=10_000)
            live = query(
                deployment,
                "SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL",
            )
            assert live[0][0] == 2  # the browser's session at the authority, and the app's
            page.click("#logout")
            page.wait_for_url(app + "?state=signed-out")
            wait_for_state(page, "signed-out")
            browser.close()
        left = query(deployment, "SELECT COUNT(*) FROM refresh_families WHERE revoked_at IS NULL")
        assert left[0][0] == 0  # logged out everywhere
        assert errors == []
    finally:
        deployment.stop()
