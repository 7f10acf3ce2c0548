"""The authorization endpoint's pages: the error page (an unknown client or redirect
URI is never redirected to), the consent form, and RP-initiated logout's confirmation
and signed-out pages. Server-rendered, every value
escaped, no script; the headers of the login page (``authority.web.frontend``), with
``form-action`` also allowing the client's redirect URI, where the form's answer goes."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from litestar import Response

from authority.web.frontend import PAGE_HEADERS

SCOPE_TEXT = {
    "openid": "Know who you are (your user id)",
    "profile": "See your username",
    "email": "See your email address",
    "offline_access": "Stay signed in when you are away",
}
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.\-\[\]:]+)?")


def redirect_origin(uri: str) -> str:
    """The CSP source of a redirect URI: its origin, or its scheme for a native app."""
    parts = urlsplit(uri)
    source = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return source if _ORIGIN.fullmatch(source) else "'none'"


def _page(title: str, body: str, status: int, form_action: str | None = None) -> Response[str]:
    headers = dict(PAGE_HEADERS, **{"Cache-Control": "no-store"})
    if form_action is not None:
        # A form posted under no-referrer sends ``Origin: null``, which the CSRF check
        # refuses; same-origin sends our own origin, and nothing to other sites.
        headers["Referrer-Policy"] = "same-origin"
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action 'self' {form_action}".rstrip()
        )
    document = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="stylesheet" href="/static/login.css">\n</head>\n'
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return Response(document, status_code=status, media_type="text/html", headers=headers)


def error_page(message: str, status: int = 400) -> Response[str]:
    text = html.escape(message)
    body = (
        f'<h1>Sign-in request refused</h1>\n<p id="error">{text}</p>\n'
        "<p>Go back to the app and start again.</p>"
    )
    return _page("Sign-in request refused", body, status)


def signed_out_page() -> Response[str]:
    return _page(
        "Signed out", '<h1>Signed out</h1>\n<p id="signed-out">You are signed out.</p>', 200
    )


def logout_confirm_page(
    *, client_name: str | None, fields: dict[str, str], csrf_token: str, form_action: str | None
) -> Response[str]:
    """Asks the user before ending the session (RP-Initiated Logout 1.0 section 2): a
    request without ``id_token_hint`` may come from any page."""
    asker = (
        f"<strong>{html.escape(client_name)}</strong> asks you to sign out."
        if client_name is not None
        else "A page asks you to sign out."
    )
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in {**fields, "csrf_token": csrf_token}.items()
    )
    body = (
        f'<h1>Sign out?</h1>\n<p id="asker">{asker}</p>\n'
        "<p>If you did not ask for this, close this page: you stay signed in.</p>\n"
        '<form id="logout-form" method="post" action="/oauth/logout">\n'
        f"{hidden}\n"
        '<div class="actions">\n<button id="sign-out" type="submit">Sign out</button>\n</div>\n'
        "</form>"
    )
    return _page("Sign out?", body, 200, form_action=form_action or "")


def consent_page(
    *,
    client_name: str,
    username: str,
    scopes: Iterable[str],
    sealed: str,
    csrf_token: str,
    redirect_origin: str,
) -> Response[str]:
    items = "\n".join(
        f"<li>{html.escape(SCOPE_TEXT.get(scope, scope))} (<code>{html.escape(scope)}</code>)</li>"
        for scope in scopes
    )
    body = (
        f"<h1>Allow {html.escape(client_name)}?</h1>\n"
        f"<p>Signed in as <strong>{html.escape(username)}</strong>. "
        f"<strong>{html.escape(client_name)}</strong> asks to:</p>\n"
        f'<ul id="scopes">\n{items}\n</ul>\n'
        '<form id="consent-form" method="post" action="/oauth/consent">\n'
        f'<input type="hidden" name="request" value="{html.escape(sealed)}">\n'
        f'<input type="hidden" name="csrf_token" value="{html.escape(csrf_token)}">\n'
        '<div class="actions">\n'
        '<button id="allow" type="submit" name="decision" value="allow">Allow</button>\n'
        '<button id="deny" type="submit" name="decision" value="deny">Deny</button>\n'
        "</div>\n</form>"
    )
    return _page(f"Allow {client_name}?", body, 200, form_action=redirect_origin)
