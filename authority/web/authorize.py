"""The authorization endpoint (RFC 6749 section 4.1, RFC 7636, OpenID Connect Core 1.0
section 3.1.2) and its consent form (README, "Log in an app on another origin").

``GET /oauth/authorize`` checks the request (``authority.authorization.requests``),
then who the browser is: its ``/auth`` cookie session. Not signed in, or asked to
sign in again (``prompt=login``, ``max_age``): 302 to ``/login?continue=...``, where
the request rides sealed (``authority.authorization.continuation``) and comes back
here after the login. A client that is not first-party needs the user's consent to
the scopes; the form posts to ``POST /oauth/consent``. Then a code is issued and the
browser goes back to the redirect URI with ``code``, ``state`` and ``iss`` (RFC 9207).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect

from authority.accounts.clients import MAX_NAME, get_client
from authority.accounts.users import UserRecord
from authority.authorization.codes import CodeGrant, new_code, session_started, store_code
from authority.authorization.consents import consented_scopes, grant_consent
from authority.authorization.continuation import Carried, Continuations, carry
from authority.authorization.requests import (
    AuthorizationRequest,
    PageError,
    RedirectError,
    parse_request,
)
from authority.grants.errors import OAuth2Error
from authority.web import csrf
from authority.web.authorize_pages import consent_page, error_page, redirect_origin
from authority.web.cookies import CookieSessions
from authority.web.http import MAX_BODY
from authority.web.oauth_forms import read_form

MAX_QUERY = 8192
RESPONSES = {
    302: ResponseSpec(
        None,
        description="to the redirect URI (code or error, state, iss), or to /login",
        generate_examples=False,
    ),
    400: ResponseSpec(
        str,
        media_type="text/html",
        description="an error page: unknown client or redirect URI, altered request",
        generate_examples=False,
    ),
}


def answer(request: AuthorizationRequest | RedirectError, issuer: str, **params: str) -> Redirect:
    """302 to the verified redirect URI with ``params``, ``state`` and ``iss``."""
    uri, state = request.redirect_uri, request.state
    query = {**params, **({"state": state} if state is not None else {}), "iss": issuer}
    separator = "&" if "?" in uri else "?"
    return Redirect(
        uri + separator + urlencode(query), status_code=302, headers={"Cache-Control": "no-store"}
    )


def refusal(exc: RedirectError, issuer: str) -> Redirect:
    return answer(exc, issuer, error=exc.error, error_description=exc.description)


def query_of(request: Request[Any, Any, Any]) -> tuple[dict[str, str], set[str]]:
    """The query's parameters (an empty value counts as omitted) and those repeated."""
    seen: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name in seen:
            repeated.add(name)
        if value:
            seen[name] = value
    return seen, repeated


class Authorizer:
    """The endpoint's work, built once per app."""

    def __init__(self, sessions: CookieSessions):
        self.sessions = sessions
        self.auth = sessions.auth
        self.issuer = self.auth.settings.issuer
        self.sealer = Continuations.for_secret(self.auth.secret_key)

    async def parse(self, params: Mapping[str, str]) -> AuthorizationRequest:
        client_id = params.get("client_id")
        client = None
        if client_id is not None and len(client_id) <= MAX_NAME:
            client = await self.auth.db.read(get_client, client_id)
        return parse_request(params, client, self.auth.settings.audience)

    async def authorize(self, request: Request[Any, Any, Any]) -> Response[Any]:
        now = self.auth.clock()
        if len(request.scope.get("query_string", b"")) > MAX_QUERY:
            return error_page("the request is too large")
        params, repeated = query_of(request)
        carried: Carried | None = None
        if "continue" in params:
            carried = self.sealer.open(params["continue"], now)
            if carried is None or len(params) > 1:
                return error_page("this sign-in link has expired or was altered")
            params, repeated = dict(carried.params), set()
        try:
            if repeated & {"client_id", "redirect_uri"}:
                raise PageError("client_id and redirect_uri may be sent once")
            parsed = await self.parse(params)
            if repeated:
                raise RedirectError(
                    "invalid_request", "a parameter is repeated", parsed.redirect_uri, parsed.state
                )
        except PageError as exc:
            return error_page(str(exc))
        except RedirectError as exc:
            return refusal(exc, self.issuer)
        return await self.decide(request, parsed, params, carried, now)

    async def decide(
        self,
        request: Request[Any, Any, Any],
        parsed: AuthorizationRequest,
        params: dict[str, str],
        carried: Carried | None,
        now: float,
    ) -> Response[Any]:
        signed = await self.sessions.signed_in(request)
        started = await self.auth.db.read(session_started, signed[1]) if signed else None
        login_after = carried.login_after if carried is not None else None
        if carried is None and signed is not None and started is not None:
            too_old = parsed.max_age is not None and now - started > parsed.max_age
            if "login" in parsed.prompt or too_old:
                login_after = now
        fresh = login_after is not None and (started is None or started < login_after)
        if signed is None or started is None or fresh:
            if "none" in parsed.prompt:
                return answer(
                    parsed,
                    self.issuer,
                    error="login_required",
                    error_description=("the user must sign in"),
                )
            sealed = self.sealer.seal(carry(params, now, login_after=login_after))
            shown = {"fresh": "1"} if fresh else {}
            if parsed.login_hint is not None:
                shown["login_hint"] = parsed.login_hint  # only prefills the form
            target = "/login?" + urlencode({"continue": sealed, **shown})
            return Redirect(target, status_code=302, headers={"Cache-Control": "no-store"})
        user, sid = signed
        if not parsed.client.first_party:
            allowed = await self.auth.db.read(consented_scopes, user.id, parsed.client.client_id)
            covered = allowed is not None and set(parsed.scope) <= allowed
            if "consent" in parsed.prompt or not covered:
                if "none" in parsed.prompt:
                    return answer(
                        parsed,
                        self.issuer,
                        error="consent_required",
                        error_description=("the user has not allowed this client these scopes"),
                    )
                return await self.ask_consent(request, parsed, params, user, now)
        return await self.issue(parsed, user, sid, started)

    async def ask_consent(
        self,
        request: Request[Any, Any, Any],
        parsed: AuthorizationRequest,
        params: dict[str, str],
        user: UserRecord,
        now: float,
    ) -> Response[Any]:
        token = await self.sessions.csrf_token(request)
        page = consent_page(
            client_name=parsed.client.name,
            username=user.username,
            scopes=parsed.scope,
            sealed=self.sealer.seal(carry(params, now, user=user.id)),
            csrf_token=token,
            redirect_origin=redirect_origin(parsed.redirect_uri),
        )
        page.cookies.append(self.sessions.csrf_cookie(token))
        return page

    async def issue(
        self, parsed: AuthorizationRequest, user: UserRecord, sid: str, auth_time: float
    ) -> Redirect:
        code, code_hash = new_code()
        grant = CodeGrant(
            client_id=parsed.client.client_id,
            user_id=user.id,
            redirect_uri=parsed.bound_redirect_uri,
            code_challenge=parsed.code_challenge,
            nonce=parsed.nonce,
            scope=" ".join(parsed.scope),
            audience=parsed.audience,
            auth_time=auth_time,
            browser_session=sid,
            dpop_jkt=parsed.dpop_jkt,
        )
        await self.auth.db.write(
            store_code, grant, code_hash, self.auth.clock(), self.auth.settings.auth_code_ttl
        )
        return answer(parsed, self.issuer, code=code)

    async def consent(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The consent form's answer: CSRF-checked like ``/auth`` (Origin, and the form's
        token equal to the cookie and bound to the session), by the user it was shown to."""
        now = self.auth.clock()
        try:
            form = await read_form(request)
        except OAuth2Error:
            return error_page("malformed consent form")
        sessions = self.sessions
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        session = await sessions.cookie_session(request)
        cookie = request.cookies.get(sessions.names.csrf)
        if not csrf.origin_allowed(
            request.headers.get("origin"), own, sessions.trusted_origins
        ) or not csrf.double_submit_ok(sessions.csrf_key, form.get("csrf_token"), cookie, session):
            return error_page(csrf.FAILED, 403)
        carried = self.sealer.open(form.get("request", ""), now)
        signed = await sessions.signed_in(request)
        if carried is None or signed is None or carried.user != signed[0].id:
            return error_page("this consent form has expired or is not yours")
        try:
            parsed = await self.parse(carried.params)
        except PageError as exc:
            return error_page(str(exc))
        except RedirectError as exc:
            return refusal(exc, self.issuer)
        decision = form.get("decision")
        if decision == "deny":
            return answer(
                parsed,
                self.issuer,
                error="access_denied",
                error_description=("the user did not allow it"),
            )
        if decision != "allow":
            return error_page("choose allow or deny")
        user, sid = signed
        started = await self.auth.db.read(session_started, sid)
        if started is None:
            return error_page("your session has ended; sign in again")
        client_id = parsed.client.client_id
        await self.auth.db.write(grant_consent, user.id, client_id, set(parsed.scope), now)
        return await self.issue(parsed, user, sid, started)


def authorize_handlers(sessions: CookieSessions) -> list[HTTPRouteHandler]:
    authorizer = Authorizer(sessions)

    @get(
        "/oauth/authorize",
        tags=["oauth"],
        summary="Authorization endpoint (RFC 6749 section 4.1, PKCE S256, OpenID Connect)",
        responses=RESPONSES,
    )
    async def authorize(request: Request[Any, Any, Any]) -> Response[Any]:
        return await authorizer.authorize(request)

    @post(
        "/oauth/consent",
        request_max_body_size=MAX_BODY,
        tags=["oauth"],
        summary="The consent form's answer (browser form, CSRF-protected)",
        include_in_schema=False,
    )
    async def consent(request: Request[Any, Any, Any]) -> Response[Any]:
        return await authorizer.consent(request)

    return [authorize, consent]
