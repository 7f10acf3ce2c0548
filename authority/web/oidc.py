"""OpenID Connect's endpoints besides authorization: ``/oauth/userinfo`` (Core 1.0
section 5.3, errors per RFC 6750 section 3.1) and ``/oauth/logout`` (RP-Initiated
Logout 1.0)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, route
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect
from sqlalchemy import Connection

from authority.accounts.clients import MAX_NAME, ClientRecord, get_client
from authority.accounts.users import UserRecord, get_user
from authority.authorization.id_token_hints import decode_own_id_token
from authority.authorization.id_tokens import user_claims
from authority.authorization.logout import end_browser_session
from authority.sessions.families import session_active
from authority.signing.own_tokens import decode_own_access_token
from authority.status.store import access_token_revoked
from authority.web.authorize_pages import error_page, signed_out_page
from authority.web.cookies import CookieSessions
from authority.web.http import NO_STORE, bearer_token

MAX_HINT = 8192
USERINFO_RESPONSES = {
    401: ResponseSpec(None, description="no token, or not a valid one", generate_examples=False),
    403: ResponseSpec(
        None, description="insufficient_scope: openid not granted", generate_examples=False
    ),
}
LOGOUT_RESPONSES = {
    302: ResponseSpec(
        None, description="to the registered post_logout_redirect_uri", generate_examples=False
    ),
    400: ResponseSpec(
        str, media_type="text/html", description="an error page", generate_examples=False
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

    @get(
        "/oauth/logout",
        tags=["oauth"],
        summary="RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0)",
        media_type="text/html",
        responses=LOGOUT_RESPONSES,
    )
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        params = {k: v for k, v in request.query_params.items() if v}
        hint = params.get("id_token_hint")
        hinted = None
        if hint is not None:
            hinted = decode_own_id_token(sessions.keys.current_ring(), hint[:MAX_HINT], issuer)
            if hinted is None or len(hint) > MAX_HINT:
                return error_page("id_token_hint is not an ID token of this authority")
        client_id = params.get("client_id")
        if hinted is not None and client_id is not None and client_id != hinted["aud"]:
            return error_page("client_id is not the ID token's audience")
        client_id = client_id or (str(hinted["aud"]) if hinted is not None else None)
        target = params.get("post_logout_redirect_uri")
        client: ClientRecord | None = None
        if client_id is not None and len(client_id) <= MAX_NAME:
            client = await auth.db.read(get_client, client_id)
        if target is not None and (
            client is None or target not in client.post_logout_redirect_uris
        ):
            return error_page("post_logout_redirect_uri is not registered for this client")
        signed = await sessions.signed_in(request)
        session = signed[1] if signed else await sessions.cookie_session(request)
        same_user = hinted is None or signed is None or hinted.get("sub") == str(signed[0].id)
        if session and same_user:
            await auth.db.write(end_browser_session, session, auth.clock())
        if hinted is not None and isinstance(hinted.get("sid"), str):
            await auth.db.write(end_browser_session, str(hinted["sid"]), auth.clock())
        cookies = sessions.cleared_session()
        if target is None:
            page = signed_out_page()
            page.cookies.extend(cookies)
            return page
        state = params.get("state")
        query = urlencode({"state": state}) if state is not None and len(state) <= 1024 else ""
        location = target + (("&" if "?" in target else "?") + query if query else "")
        return Redirect(location, status_code=302, headers=NO_STORE, cookies=cookies)

    return [userinfo, logout]
