"""OpenID Connect's endpoints besides authorization: ``/oauth/userinfo`` (Core 1.0
section 5.3, errors per RFC 6750 section 3.1) and ``/oauth/logout`` (RP-Initiated
Logout 1.0).

Logout with a valid ``id_token_hint`` (GET, or POST as section 2 allows) ends the
browser's session at once: the ID token shows which app asks and for whom. A request
without it could come from any page that links or redirects a signed-in browser here
(logout CSRF), so section 2's "SHOULD ask the End-User" is done: a confirmation page
whose form posts back with a CSRF token bound to the browser's session (as the consent
form's), and only that POST, with its ``Origin`` and token checked, ends the session. A
browser with no session has nothing to end and goes straight on. Either way the browser
then goes to the client's registered ``post_logout_redirect_uri`` (with ``state``) or
to a signed-out page (README, "Log in an app on another origin").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from litestar import Request, Response, get, post, route
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect
from sqlalchemy import Connection

from authority.accounts.clients import MAX_NAME, ClientRecord, get_client
from authority.accounts.users import UserRecord, get_user
from authority.authorization.id_token_hints import decode_own_id_token
from authority.authorization.id_tokens import user_claims
from authority.authorization.logout import end_browser_session
from authority.grants.errors import OAuth2Error
from authority.sessions.families import session_active
from authority.signing.own_tokens import decode_own_access_token
from authority.status.store import access_token_revoked
from authority.web import csrf
from authority.web.authorize_pages import (
    error_page,
    logout_confirm_page,
    redirect_origin,
    signed_out_page,
)
from authority.web.cookies import CookieSessions
from authority.web.http import MAX_BODY, NO_STORE, bearer_token
from authority.web.oauth_forms import read_form

MAX_HINT = 8192
MAX_STATE = 1024
_PAGE = "text/html"
_REDIRECT = "to the registered post_logout_redirect_uri, with state"
GET_RESPONSES = {
    200: ResponseSpec(
        str,
        media_type=_PAGE,
        description="signed out; or, without id_token_hint, a page asking the user to confirm",
        generate_examples=False,
    ),
    302: ResponseSpec(None, description=_REDIRECT, generate_examples=False),
    400: ResponseSpec(str, media_type=_PAGE, description="an error page", generate_examples=False),
}
POST_RESPONSES = {
    200: ResponseSpec(str, media_type=_PAGE, description="signed out", generate_examples=False),
    303: ResponseSpec(None, description=_REDIRECT, generate_examples=False),
    400: ResponseSpec(str, media_type=_PAGE, description="an error page", generate_examples=False),
    403: ResponseSpec(
        str,
        media_type=_PAGE,
        description="the confirmation's CSRF token or Origin is wrong: nothing changed",
        generate_examples=False,
    ),
}
USERINFO_RESPONSES = {
    401: ResponseSpec(None, description="no token, or not a valid one", generate_examples=False),
    403: ResponseSpec(
        None, description="insufficient_scope: openid not granted", generate_examples=False
    ),
}


def _live_user(conn: Connection, claims: dict[str, Any]) -> UserRecord | None:
    sid, sub = claims.get("sid"), claims.get("sub")
    if access_token_revoked(conn, claims["jti"]) or not isinstance(sid, str):
        return None
    if not isinstance(sub, str) or not sub.isascii() or not sub.isdigit():
        return None
    if not session_active(conn, sid):
        return None
    user = get_user(conn, int(sub))
    return user if user is not None and user.is_active else None


def _challenge(status: int, error: str | None, description: str) -> Response[Any]:
    value = (
        "Bearer" if error is None else f'Bearer error="{error}", error_description="{description}"'
    )
    body = {"error": error or "invalid_token", "error_description": description}
    return Response(body, status_code=status, headers={**NO_STORE, "WWW-Authenticate": value})


class Refused(Exception):
    """Shown on the error page; never redirected."""


@dataclass(frozen=True)
class LogoutRequest:
    """A checked request: the hint's claims, the client, where to go, the state."""

    hinted: dict[str, Any] | None
    client: ClientRecord | None
    target: str | None
    state: str | None

    def confirm_fields(self) -> dict[str, str]:
        """What the confirmation form carries back (checked again when it does)."""
        fields = {
            "client_id": self.client.client_id if self.client is not None else None,
            "post_logout_redirect_uri": self.target,
            "state": self.state,
        }
        return {name: value for name, value in fields.items() if value is not None}


class Logouts:
    """The endpoint's work, built once per app."""

    def __init__(self, sessions: CookieSessions):
        self.sessions = sessions
        self.auth = sessions.auth

    async def check(self, params: dict[str, str]) -> LogoutRequest:
        hint = params.get("id_token_hint")
        hinted = None
        if hint is not None:
            ring = self.sessions.keys.current_ring()
            hinted = decode_own_id_token(ring, hint[:MAX_HINT], self.auth.settings.issuer)
            if hinted is None or len(hint) > MAX_HINT:
                raise Refused("id_token_hint is not an ID token of this authority")
        client_id = params.get("client_id")
        if hinted is not None and client_id is not None and client_id != hinted["aud"]:
            raise Refused("client_id is not the ID token's audience")
        client_id = client_id or (str(hinted["aud"]) if hinted is not None else None)
        target = params.get("post_logout_redirect_uri")
        client: ClientRecord | None = None
        if client_id is not None and len(client_id) <= MAX_NAME:
            client = await self.auth.db.read(get_client, client_id)
        if target is not None and (
            client is None or target not in client.post_logout_redirect_uris
        ):
            raise Refused("post_logout_redirect_uri is not registered for this client")
        state = params.get("state")
        return LogoutRequest(
            hinted, client, target, state if len(state or "") <= MAX_STATE else None
        )

    async def browser(
        self, request: Request[Any, Any, Any]
    ) -> tuple[tuple[UserRecord, str] | None, str]:
        """Who the browser is signed in as, and its session ("" when it has none)."""
        signed = await self.sessions.signed_in(request)
        return signed, signed[1] if signed else await self.sessions.cookie_session(request)

    async def get(self, request: Request[Any, Any, Any]) -> Response[Any]:
        params = {k: v for k, v in request.query_params.items() if v}
        try:
            checked = await self.check(params)
        except Refused as exc:
            return error_page(str(exc))
        signed, session = await self.browser(request)
        if checked.hinted is None and session:
            return await self.ask(request, checked)
        return await self.finish(checked, signed, session, status=302)

    async def ask(self, request: Request[Any, Any, Any], checked: LogoutRequest) -> Response[Any]:
        token = await self.sessions.csrf_token(request)
        page = logout_confirm_page(
            client_name=checked.client.name if checked.client is not None else None,
            fields=checked.confirm_fields(),
            csrf_token=token,
            form_action=redirect_origin(checked.target) if checked.target is not None else None,
        )
        page.cookies.append(self.sessions.csrf_cookie(token))
        return page

    async def post(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The confirmation form's answer (CSRF-checked like the consent form), or an
        app's POST with ``id_token_hint`` (section 2), which needs no confirmation."""
        try:
            form = await read_form(request)
        except OAuth2Error:
            return error_page("malformed logout form")
        sessions = self.sessions
        signed, session = await self.browser(request)
        if "id_token_hint" not in form:
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            cookie = request.cookies.get(sessions.names.csrf)
            token = form.pop("csrf_token", None)
            if not csrf.origin_allowed(
                request.headers.get("origin"), own, sessions.trusted_origins
            ) or not csrf.double_submit_ok(sessions.csrf_key, token, cookie, session):
                return error_page(csrf.FAILED, 403)
        try:
            checked = await self.check(form)
        except Refused as exc:
            return error_page(str(exc))
        return await self.finish(checked, signed, session, status=303)

    async def finish(
        self,
        checked: LogoutRequest,
        signed: tuple[UserRecord, str] | None,
        session: str,
        *,
        status: Literal[302, 303],
    ) -> Response[Any]:
        """End the browser's session (unless the hint names another user) and the one
        the hint names, clear the cookies, and go on."""
        hinted, auth = checked.hinted, self.auth
        same_user = hinted is None or signed is None or hinted.get("sub") == str(signed[0].id)
        if session and same_user:
            await auth.db.write(end_browser_session, session, auth.clock())
        if hinted is not None and isinstance(hinted.get("sid"), str):
            await auth.db.write(end_browser_session, str(hinted["sid"]), auth.clock())
        cookies = self.sessions.cleared_session()
        if checked.target is None:
            page = signed_out_page()
            page.cookies.extend(cookies)
            return page
        query = urlencode({"state": checked.state}) if checked.state is not None else ""
        target = checked.target
        location = target + (("&" if "?" in target else "?") + query if query else "")
        return Redirect(location, status_code=status, headers=NO_STORE, cookies=cookies)


def oidc_handlers(sessions: CookieSessions) -> list[HTTPRouteHandler]:
    auth = sessions.auth
    issuer = auth.settings.issuer

    @route(
        "/oauth/userinfo",
        http_method=["GET", "POST"],
        status_code=200,
        tags=["oauth"],
        summary="UserInfo (OpenID Connect Core 1.0 section 5.3)",
        responses=USERINFO_RESPONSES,
    )
    async def userinfo(request: Request[Any, Any, Any]) -> Response[Any]:
        token = bearer_token(request)
        if token is None:
            return _challenge(401, None, "an access token is required")
        claims = decode_own_access_token(
            sessions.keys.current_ring(), token, issuer=issuer, now=auth.clock(), leeway=0
        )
        user = await auth.db.read(_live_user, claims) if claims is not None else None
        if claims is None or user is None:
            return _challenge(401, "invalid_token", "the access token is not valid")
        scopes = set(str(claims.get("scope", "")).split())
        if "openid" not in scopes:
            return _challenge(403, "insufficient_scope", "the token was not granted openid")
        return Response(user_claims(user, scopes), headers=NO_STORE)

    logouts = Logouts(sessions)

    @get(
        "/oauth/logout",
        tags=["oauth"],
        summary="RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)",
        media_type=_PAGE,
        responses=GET_RESPONSES,
    )
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        return await logouts.get(request)

    @post(
        "/oauth/logout",
        request_max_body_size=MAX_BODY,
        tags=["oauth"],
        summary="RP-initiated logout by POST: the confirmation form, or id_token_hint",
        media_type=_PAGE,
        responses=POST_RESPONSES,
    )
    async def logout_form(request: Request[Any, Any, Any]) -> Response[Any]:
        return await logouts.post(request)

    return [userinfo, logout, logout_form]
