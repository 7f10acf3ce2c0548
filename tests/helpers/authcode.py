"""The authorization code flow as a browser and an app drive it (README, "Log in an app
on another origin"): PKCE pairs, following ``/oauth/authorize`` with a browser's cookie
session, answering the consent form, and the app's token requests."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.helpers.world import PASSWORD, World

CALLBACK = "https://app.example.com/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_url(client_id: str, pkce: Pkce, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": "st-" + secrets.token_urlsafe(8),
        **params,
    }
    return "/oauth/authorize?" + urlencode({k: v for k, v in query.items() if v != "-"})


def query(response: httpx.Response) -> dict[str, str]:
    """The single-valued query of a redirect's ``Location``."""
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


async def consent(
    browser: httpx.AsyncClient, page: httpx.Response, decision: str
) -> httpx.Response:
    fields = hidden_fields(page.text)
    return await browser.post("/oauth/consent", data={**fields, "decision": decision})


async def log_in(browser: httpx.AsyncClient, username: str) -> None:
    """A cookie login, as the /login page does it."""
    token = (await browser.get("/auth/csrf")).json()["csrf_token"]
    response = await browser.post(
        "/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 200, response.text


async def code_for(
    world: World, browser: httpx.AsyncClient, client: str, pkce: Pkce, **params: str
) -> str:
    """The code the signed-in ``browser`` gets for ``client`` (consenting if asked)."""
    response = await browser.get(authorize_url(world.client_id(client), pkce, **params))
    if response.status_code == 200:
        response = await consent(browser, response, "allow")
    assert response.status_code in (302, 303), response.text
    found = query(response)
    assert "code" in found, found
    return found["code"]


async def exchange(
    world: World, client: str, code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    form: dict[str, Any] = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": CALLBACK,
        **extra,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    form = {k: v for k, v in form.items() if v != "-"}
    if world.clients[client].is_public:
        return await world.token({**form, "client_id": world.client_id(client)}, client=None)
    return await world.token(form, client=client)
