"""Bad input to the authorization code flow (README, "Log in an app on another
origin"): each a clear error, nothing stored, never a 5xx. An unknown client or
redirect URI is an error page, never a redirect; other errors go back to the verified
redirect URI with ``error``, ``state`` and ``iss``; the token endpoint answers RFC 6749
section 5.2 and leaves the code as it was."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import update

from authority.storage.tables import AuthorizationCode
from tests.helpers.authcode import (
    CALLBACK,
    Pkce,
    authorize_url,
    code_for,
    exchange,
    hidden_fields,
    log_in,
    query,
)
from tests.helpers.postgres import BACKENDS
from tests.helpers.world import ClientSpec, World, WorldConfig, on_backend

pytestmark = pytest.mark.asyncio(loop_scope="module")
SCOPES = ("openid", "read")
CLIENTS = {
    "app": ClientSpec(False, ["password", "refresh_token"]),
    "spa": ClientSpec(
        True,
        ["authorization_code", "refresh_token"],
        scopes=SCOPES,
        audiences=("api://orders",),
        redirect_uris=(CALLBACK, "http://127.0.0.1/cb"),
        first_party=True,
    ),
    "other": ClientSpec(
        True, ["authorization_code"], scopes=SCOPES, redirect_uris=("https://evil.example/cb",)
    ),
    "partner": ClientSpec(False, ["authorization_code"], scopes=SCOPES, redirect_uris=(CALLBACK,)),
}


@pytest.fixture(scope="module", params=BACKENDS)
def world_config(request: pytest.FixtureRequest) -> Iterator[WorldConfig]:
    # No pruning (every 30 s by default) of the codes of earlier tests in the middle of
    # an ``unchanged`` block: a module on PostgreSQL runs for over a minute.
    base = WorldConfig(clients=CLIENTS, settings={"maintenance_interval": 3600})
    with on_backend(base, request.param) as config:
        yield config


def url_for(pkce: Pkce, client_id: str, **params: str) -> str:
    return authorize_url(client_id, pkce, **params)


async def signed_in(world: World) -> httpx.AsyncClient:
    name, _ = await world.new_user()
    browser = world.browser()
    await log_in(browser, name)
    return browser


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"client_id": "nope"}, "unknown client"),
        ({"client_id": "-"}, "unknown client"),
        ({"redirect_uri": CALLBACK + "#frag"}, "not registered"),
        ({"redirect_uri": "https://app.example.com:8443/callback"}, "not registered"),
        ({"redirect_uri": "https://app.example.com/other"}, "not registered"),
        ({"redirect_uri": "http://app.example.com/callback"}, "not registered"),
        ({"redirect_uri": "https://evil.example/cb"}, "not registered"),
        ({"redirect_uri": "http://127.0.0.1:9999/other"}, "not registered"),
        ({"redirect_uri": "-"}, "not registered"),  # two registered: one must be named
    ],
)
async def test_an_unknown_client_or_redirect_uri_is_an_error_page_never_a_redirect(
    world: World, change: dict[str, str], says: str
) -> None:
    browser = await signed_in(world)
    params = {"client_id": world.client_id("spa"), **change}
    async with world.unchanged():
        response = await browser.get(url_for(Pkce.new(), **params))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert says in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_a_loopback_redirect_uri_matches_on_any_port(world: World) -> None:
    browser = await signed_in(world)
    pkce = Pkce.new()
    uri = "http://127.0.0.1:54321/cb"
    response = await browser.get(url_for(pkce, client_id=world.client_id("spa"), redirect_uri=uri))
    assert response.headers["location"].startswith(uri + "?code=")
    code = query(response)["code"]
    assert (await exchange(world, "spa", code, pkce.verifier, redirect_uri=uri)).status_code == 200


@pytest.mark.parametrize(
    ("change", "error", "says"),
    [
        ({"code_challenge": "-"}, "invalid_request", "code_challenge is required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "must be S256"),
        ({"code_challenge_method": "-"}, "invalid_request", "must be S256"),
        ({"code_challenge": "short"}, "invalid_request", "43 base64url"),
        ({"response_type": "token"}, "unsupported_response_type", "must be code"),
        ({"response_type": "-"}, "unsupported_response_type", "must be code"),
        ({"scope": "openid admin"}, "invalid_scope", "admin"),
        ({"scope": "bad\\scope"}, "invalid_scope", "malformed"),
        ({"resource": "https://other.example/"}, "invalid_target", "resource"),
        ({"resource": "api://orders#x"}, "invalid_target", "resource"),
        ({"nonce": "n" * 513}, "invalid_request", "nonce is at most 512"),
        ({"prompt": "none login"}, "invalid_request", "prompt=none"),
        ({"prompt": "select_account"}, "invalid_request", "prompt must be"),
        ({"max_age": "-1"}, "invalid_request", "max_age"),
        ({"login_hint": "x" * 400}, "invalid_request", "login_hint"),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode"),
        ({"request": "eyJ..."}, "request_not_supported", "request objects"),
    ],
)
async def test_other_errors_go_back_to_the_redirect_uri_with_state_and_iss(
    world: World, change: dict[str, str], error: str, says: str
) -> None:
    browser = await signed_in(world)
    params = {"client_id": world.client_id("spa"), "redirect_uri": CALLBACK, "state": "S"}
    async with world.unchanged():
        response = await browser.get(url_for(Pkce.new(), **{**params, **change}))
    assert response.status_code == 302
    assert response.headers["location"].startswith(CALLBACK + "?")
    answer = query(response)
    assert answer["error"] == error
    assert says in answer["error_description"]
    assert (answer["state"], answer["iss"]) == ("S", world.settings.issuer)


async def test_an_over_long_state_is_refused_and_not_echoed(world: World) -> None:
    browser = await signed_in(world)
    async with world.unchanged():
        response = await browser.get(
            url_for(Pkce.new(), client_id=world.client_id("spa"), state="s" * 1025)
        )
    answer = query(response)
    assert answer["error"] == "invalid_request"
    assert "state" not in answer


async def test_a_repeated_parameter_is_refused(world: World) -> None:
    browser = await signed_in(world)
    url = url_for(Pkce.new(), client_id=world.client_id("spa"))
    async with world.unchanged():
        twice = await browser.get(url + "&scope=openid&scope=read")
        client_twice = await browser.get(url + "&client_id=" + world.client_id("other"))
    assert query(twice)["error"] == "invalid_request"
    assert client_twice.status_code == 400
    assert "location" not in client_twice.headers


def tamper(sealed: str, edit: Callable[[dict[str, object]], None]) -> str:
    payload, mac = sealed.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edit(data)
    raw = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{raw}.{mac}"


async def test_a_continuation_pointing_at_another_client_is_an_error_page(
    world: World,
) -> None:
    browser = world.browser()
    response = await browser.get(url_for(Pkce.new(), client_id=world.client_id("spa")))
    sealed = parse_qs(urlsplit(response.headers["location"]).query)["continue"][0]
    await log_in(browser, (await world.new_user())[0])

    def other_client(data: dict[str, object]) -> None:
        params = data["params"]
        assert isinstance(params, dict)
        params.update(client_id=world.client_id("other"), redirect_uri="https://evil.example/cb")

    for bad in (
        tamper(sealed, other_client),
        sealed[:-2] + ("AA" if not sealed.endswith("AA") else "BB"),
        "garbage",
        "a.b.c",
    ):
        async with world.unchanged():
            page = await browser.get("/oauth/authorize", params={"continue": bad})
        assert page.status_code == 400
        assert "location" not in page.headers
        assert "expired or was altered" in page.text
    # Nor may a continuation be mixed with parameters of the request.
    mixed = "/oauth/authorize?" + urlencode(
        {"continue": sealed, "client_id": world.client_id("other")}
    )
    assert (await browser.get(mixed)).status_code == 400


async def test_the_consent_form_needs_its_csrf_token_and_its_own_user(world: World) -> None:
    browser = await signed_in(world)
    url = url_for(Pkce.new(), client_id=world.client_id("partner"), scope="openid")
    page = await browser.get(url)
    fields = hidden_fields(page.text)
    other = await signed_in(world)
    own = hidden_fields((await other.get(url)).text)
    async with world.unchanged():
        for form in (
            {**fields, "csrf_token": "", "decision": "allow"},
            {**fields, "csrf_token": "forged.token", "decision": "allow"},
            {"request": fields["request"], "decision": "allow"},
        ):
            refused = await browser.post("/oauth/consent", data=form)
            assert refused.status_code == 403
            assert "CSRF" in refused.text
        cross_site = await browser.post(
            "/oauth/consent",
            data={**fields, "decision": "allow"},
            headers={"Origin": "https://evil.example"},
        )
        assert cross_site.status_code == 403
        # Another user's browser cannot answer this user's form.
        stolen = await other.post(
            "/oauth/consent", data={**own, "request": fields["request"], "decision": "allow"}
        )
        assert stolen.status_code == 400
        odd = await browser.post("/oauth/consent", data={**fields, "decision": "maybe"})
        assert odd.status_code == 400


async def fresh_code(world: World, client: str = "spa") -> tuple[str, Pkce]:
    browser = await signed_in(world)
    pkce = Pkce.new()
    return await code_for(world, browser, client, pkce), pkce


@pytest.mark.parametrize(
    ("case", "error", "says"),
    [
        ("wrong verifier", "invalid_grant", "code_verifier"),
        ("no verifier", "invalid_grant", "code_verifier"),
        ("short verifier", "invalid_grant", "code_verifier"),
        ("other client", "invalid_grant", "another client"),
        ("other redirect", "invalid_grant", "redirect_uri"),
        ("no redirect", "invalid_grant", "redirect_uri"),
        ("unknown code", "invalid_grant", "invalid"),
        ("malformed code", "invalid_grant", "invalid"),
        ("more scope", "invalid_scope", "exceeds"),
        ("other resource", "invalid_target", "resource"),
    ],
)
async def test_a_bad_exchange_is_refused_and_leaves_the_code_usable(
    world: World, case: str, error: str, says: str
) -> None:
    code, pkce = await fresh_code(world)
    verifier: str | None = pkce.verifier
    client, extra = "spa", {}
    if case == "wrong verifier":
        verifier = Pkce.new().verifier
    elif case == "no verifier":
        verifier = None
    elif case == "short verifier":
        verifier = "abc"
    elif case == "other client":
        client = "other"
    elif case == "other redirect":
        extra = {"redirect_uri": "https://app.example.com/other"}
    elif case == "no redirect":
        extra = {"redirect_uri": "-"}
    elif case == "more scope":
        extra = {"scope": "openid read write"}
    elif case == "other resource":
        extra = {"resource": "https://other.example/"}
    sent = {"unknown code": "A" * 43, "malformed code": "not a code"}.get(case, code)
    async with world.unchanged():
        response = await exchange(world, client, sent, verifier, **extra)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert says in response.json()["error_description"]
    assert (await exchange(world, "spa", code, pkce.verifier)).status_code == 200


async def test_an_expired_code_is_refused(world: World) -> None:
    code, pkce = await fresh_code(world)
    await world.db.write(
        lambda c: c.execute(
            update(AuthorizationCode).values(expires_at=AuthorizationCode.created_at)
        )
    )
    response = await exchange(world, "spa", code, pkce.verifier)
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code has expired",
    }


async def test_a_confidential_client_must_authenticate_to_exchange(world: World) -> None:
    code, pkce = await fresh_code(world, "partner")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": pkce.verifier,
        "client_id": world.client_id("partner"),
    }
    async with world.unchanged():
        response = await world.token(form, client=None)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert (await exchange(world, "partner", code, pkce.verifier)).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        "client_id=%00",
        "client_id=%FF%FE",
        "client_id=" + "x" * 300,
        "redirect_uri=%00&client_id=",
        "continue=%FF",
        "continue=" + "a" * 9000,
        "state=%00&response_type=code",
        "&&&==&",
        "x=" + "y" * 9000,
    ],
)
async def test_malformed_queries_are_an_error_page_never_a_5xx(world: World, raw: str) -> None:
    browser = await signed_in(world)
    async with world.unchanged():
        response = await browser.get("/oauth/authorize?" + raw)
    assert response.status_code == 400
    assert "location" not in response.headers


async def test_nul_and_bad_bytes_in_a_known_clients_request_are_redirected_errors(
    world: World,
) -> None:
    browser = await signed_in(world)
    base = url_for(Pkce.new(), client_id=world.client_id("spa"), state="S")
    async with world.unchanged():
        for extra in ("&nonce=%00", "&scope=%FF", "&login_hint=%00", "&resource=%00"):
            response = await browser.get(base + extra)
            assert response.status_code == 302, extra
            assert "error" in query(response)
