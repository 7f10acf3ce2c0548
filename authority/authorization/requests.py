"""The authorization request (RFC 6749 section 4.1.1, RFC 7636 section 4.3, OpenID
Connect Core 1.0 section 3.1.2.1, RFC 8707, RFC 9207, RFC 9449 section 10) and its
errors.

The client and its redirect URI are checked first: when either is unknown the error is
shown to the user (``PageError``) and the browser is never redirected (RFC 6749
section 4.1.2.1). Every later error is sent back to the verified redirect URI
(``RedirectError``). PKCE with S256 is required of every client (RFC 9700 section
2.1.1); ``plain`` is refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authority.accounts.clients import SCOPE_TOKEN, ClientRecord
from authority.accounts.redirects import find_redirect

MAX_STATE = 1024
MAX_NONCE = 512  # authorization_codes.nonce
MAX_LOGIN_HINT = 320
MAX_AGE = 10 * 365 * 86400
PROMPTS = frozenset({"none", "login", "consent"})
_Refuse = Callable[[str, str], "RedirectError"]
# RFC 7636 section 4.2: an S256 challenge is 43 base64url characters.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")
# RFC 9449 section 10: dpop_jkt is a JWK SHA-256 thumbprint (RFC 7638), base64url.
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


class PageError(Exception):
    """Shown to the user, never redirected: the client or redirect URI is not known."""


class RedirectError(Exception):
    """Sent back to the client's redirect URI as ``error`` and ``error_description``."""

    def __init__(self, error: str, description: str, redirect_uri: str, state: str | None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: ClientRecord
    redirect_uri: str  # where the answer goes
    bound_redirect_uri: str | None  # what the request named (the token request repeats it)
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None
    audience: str
    dpop_jkt: str | None = None


def verify_client(
    params: Mapping[str, str], client: ClientRecord | None
) -> tuple[ClientRecord, str]:
    """The client and the redirect URI to answer at, else ``PageError``."""
    if client is None or not client.is_active:
        raise PageError("unknown client")
    if "authorization_code" not in client.grant_types or not client.redirect_uris:
        raise PageError("this client cannot use the authorization code flow")
    redirect_uri = find_redirect(client.redirect_uris, params.get("redirect_uri"))
    if redirect_uri is None:
        raise PageError("the redirect URI is not registered for this client")
    return client, redirect_uri


def parse_request(
    params: Mapping[str, str], client: ClientRecord | None, default_audience: str
) -> AuthorizationRequest:
    """The request's meaning, or ``PageError`` / ``RedirectError`` saying what is wrong."""
    client, redirect_uri = verify_client(params, client)
    state = params.get("state")

    def refuse(error: str, description: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri, state)

    if state is not None and (len(state) > MAX_STATE or not _PRINTABLE.fullmatch(state)):
        raise RedirectError(  # the state is not echoed back
            "invalid_request",
            f"state is at most {MAX_STATE} printable characters",
            redirect_uri,
            None,
        )
    if params.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code")
    if params.get("response_mode", "query") != "query":
        raise refuse("invalid_request", "response_mode must be query")
    if "request" in params or "request_uri" in params:
        raise refuse("request_not_supported", "request objects are not supported")
    method, challenge = params.get("code_challenge_method"), params.get("code_challenge")
    if challenge is None:
        raise refuse("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if method != "S256":
        raise refuse("invalid_request", "code_challenge_method must be S256")
    if not _CHALLENGE.fullmatch(challenge):
        raise refuse("invalid_request", "code_challenge must be 43 base64url characters")
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        bound_redirect_uri=params.get("redirect_uri"),
        scope=_scope(params, client, refuse),
        state=state,
        nonce=_bounded(params, "nonce", MAX_NONCE, refuse),
        code_challenge=challenge,
        prompt=_prompt(params, refuse),
        max_age=_max_age(params, refuse),
        login_hint=_bounded(params, "login_hint", MAX_LOGIN_HINT, refuse),
        audience=_audience(params, client, default_audience, refuse),
        dpop_jkt=_dpop_jkt(params, refuse),
    )


def _scope(params: Mapping[str, str], client: ClientRecord, refuse: _Refuse) -> tuple[str, ...]:
    raw = params.get("scope")
    if raw is None:
        return tuple(sorted(client.scopes))
    scopes = tuple(dict.fromkeys(raw.split(" ")))
    if len(raw) > 1000 or not all(SCOPE_TOKEN.fullmatch(s) for s in scopes):
        raise refuse("invalid_scope", "malformed scope")
    unknown = set(scopes) - client.scopes
    if unknown:
        raise refuse("invalid_scope", f"scope not allowed for this client: {sorted(unknown)[0]}")
    return scopes


def _bounded(params: Mapping[str, str], name: str, limit: int, refuse: _Refuse) -> str | None:
    value = params.get(name)
    if value is not None and (len(value) > limit or not _PRINTABLE.fullmatch(value)):
        raise refuse("invalid_request", f"{name} is at most {limit} printable characters")
    return value


def _prompt(params: Mapping[str, str], refuse: _Refuse) -> frozenset[str]:
    raw = params.get("prompt")
    if raw is None:
        return frozenset()
    prompt = frozenset(raw.split(" "))
    if not prompt <= PROMPTS:
        raise refuse("invalid_request", "prompt must be none, login or consent")
    if "none" in prompt and len(prompt) > 1:
        raise refuse("invalid_request", "prompt=none cannot be combined")
    return prompt


def _max_age(params: Mapping[str, str], refuse: _Refuse) -> int | None:
    raw = params.get("max_age")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_AGE:
        raise refuse("invalid_request", "max_age must be a number of seconds")
    return int(raw)


def _audience(
    params: Mapping[str, str], client: ClientRecord, default: str, refuse: _Refuse
) -> str:
    resource = params.get("resource")
    if resource is None:
        return client.default_audience(default)
    if resource != default and resource not in client.audiences:
        raise refuse("invalid_target", "this client may not request that resource")
    return resource


def _dpop_jkt(params: Mapping[str, str], refuse: _Refuse) -> str | None:
    jkt = params.get("dpop_jkt")
    if jkt is not None and not _THUMBPRINT.fullmatch(jkt):
        raise refuse(
            "invalid_request", "dpop_jkt must be a JWK SHA-256 thumbprint (43 base64url characters)"
        )
    return jkt
