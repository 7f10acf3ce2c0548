"""The first-party login API, ``/auth`` (README, "Logging in users"), in two deliveries.

Cookie delivery is for browsers: tokens travel only in HttpOnly cookies, and every
unsafe request that relies on cookies (login included) must pass the CSRF check
(``authority.web.cookies``). Body delivery is for mobile apps, SPAs and
back-ends-for-frontends: tokens travel in JSON and the access token comes back as
``Authorization: Bearer``. A refresh token that came in a cookie is only ever answered
in cookies, never in a body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from authority.accounts.passwords import ahash_password
from authority.accounts.registration import registration_problems
from authority.accounts.throttle import take_registration
from authority.accounts.users import UserExists, UserRecord, create_user, taken_field
from authority.sessions.families import find_family, revoke_family, revoke_user_families
from authority.sessions.refresh_tokens import parse_refresh_token
from authority.sessions.service import (
    Authority,
    LoginThrottled,
    Session,
    SessionError,
    authenticate,
    issue_access_token,
    open_session,
    refresh_session,
)
from authority.signing.manager import KeyManager
from authority.web.auth_schema import (
    BODY_RESPONSES,
    CSRF_RESPONSES,
    NOT_AUTHENTICATED,
    UNAUTHENTICATED,
    AuthError,
    CheckOut,
    CsrfOut,
    Delivery,
    DoneOut,
    ErrorOut,
    LoginOut,
    LoginRequest,
    OptionalBody,
    RefreshOut,
    RefreshRequest,
    RegisterRequest,
    TokensOut,
    UserOut,
    refusal_spec,
    user_out,
)
from authority.web.cookies import FIRST_PARTY, CookieSessions
from authority.web.http import MAX_BODY, NO_STORE, UNAVAILABLE, bearer_token, client_address


def respond(content: Any, status: int = 200, cookies: list[Cookie] | None = None) -> Response[Any]:
    return Response(content, status_code=status, headers=NO_STORE, cookies=cookies or [])


async def require_csrf_for_cookies(
    sessions: CookieSessions, request: Request[Any, Any, Any], delivery: Delivery
) -> None:
    """Login and sign-up that set cookies need the CSRF token (login CSRF), Bearer
    header or not: the rule is that an answer which sets session cookies needs it, and
    a Bearer header vouches for nothing here."""
    if delivery == "cookie":
        await sessions.require_csrf(request)


def _is_json(content_type: str) -> bool:
    """``application/json``, with at most a UTF-8 charset (RFC 8259 section 8.1)."""
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    return media == "application/json" and all(
        p.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"') for p in params
    )


async def require_json(request: Request[Any, Any, Any]) -> None:
    """A body must be JSON: a ``text/plain`` or form body is what a cross-site page
    can send without a CORS preflight. Requests without a body pass."""
    headers = request.headers
    has_body = "transfer-encoding" in headers or headers.get("content-length", "0") != "0"
    if has_body and not _is_json(headers.get("content-type", "")):
        raise AuthError(415, "the body must be Content-Type: application/json")


def tokens_of(auth: Authority, session: Session) -> TokensOut:
    """A session's new token pair, with the seconds each has left."""
    access = issue_access_token(auth, FIRST_PARTY.client_id, session.family, session.family.scope)
    refresh_left = max(0, int(session.refresh_expires_at - auth.clock()))
    return TokensOut(access.token, session.refresh_token, auth.signer.ttl, refresh_left)


async def log_in(
    sessions: CookieSessions, user: UserRecord, delivery: Delivery, status: int
) -> Response[LoginOut]:
    auth = sessions.auth
    session = await open_session(auth, FIRST_PARTY.client_id, user, "", auth.settings.audience)
    out = tokens_of(auth, session)
    if delivery == "body":
        return respond(LoginOut(user_out(user), out), status)
    cookies = sessions.login_cookies(
        out.access, out.refresh, out.refresh_expires_in, session.family.id
    )
    return respond(LoginOut(user_out(user)), status, cookies)


@get(
    "/csrf",
    summary="A CSRF token for cookie requests, and the name of the cookie that holds it",
    responses=UNAVAILABLE,
)
async def get_csrf(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[CsrfOut]:
    token = await sessions.csrf_token(request)
    return respond(CsrfOut(token, sessions.names.csrf), cookies=[sessions.csrf_cookie(token)])


@post(
    "/login",
    status_code=200,
    summary="Log in with a username or email and a password",
    responses={
        **BODY_RESPONSES,
        **refusal_spec(401, "wrong username or password (the same answer for both)"),
        **CSRF_RESPONSES,
        **refusal_spec(429, "too many failed logins; see Retry-After"),
    },
)
async def login(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[LoginRequest],
) -> Response[LoginOut]:
    await require_csrf_for_cookies(sessions, request, data.delivery)
    if (data.username is None) == (data.email is None):
        raise AuthError(
            400,
            "give either a username or an email",
            errors={"username": "give either a username or an email"},
        )
    login_name = data.username if data.username is not None else data.email
    try:
        user = await authenticate(
            sessions.auth, login_name or "", data.password, client_address(request)
        )
    except LoginThrottled as exc:
        raise AuthError(
            429,
            "too many failed logins; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    if user is None:
        raise AuthError(401, "invalid username or password")
    return await log_in(sessions, user, data.delivery, 200)


@post(
    "/register",
    status_code=201,
    summary="Create an account and log in",
    responses={
        **BODY_RESPONSES,
        **refusal_spec(400, "a field is invalid or malformed; see errors"),
        **CSRF_RESPONSES,
        **refusal_spec(429, "too many sign-ups from this address; see Retry-After"),
    },
)
async def register(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[RegisterRequest],
) -> Response[LoginOut]:
    auth = sessions.auth
    await require_csrf_for_cookies(sessions, request, data.delivery)
    problems = registration_problems(data.username, data.email, data.password)
    if not problems:
        # Per address, before the lookup and the hashing: a taken name or email is an
        # answer worth collecting, and a flood would fill the hashing queue.
        window = auth.settings.login_failure_window
        wait = await auth.db.write(take_registration, client_address(request), window, auth.clock())
        if wait is not None:
            raise AuthError(
                429, "too many sign-ups; try again later", headers={"Retry-After": str(wait)}
            )
    # Checked before hashing, so a taken name costs no argon2; create_user checks
    # again in its transaction.
    taken = None if problems else await auth.db.read(taken_field, data.username, data.email)
    if taken is not None:
        problems[taken] = f"a user with this {taken} already exists"
    if problems:
        raise AuthError(400, next(iter(problems.values())), errors=problems)
    password_hash = await ahash_password(data.password)
    try:
        user = await auth.db.write(
            create_user,
            username=data.username,
            email=data.email,
            password_hash=password_hash,
            now=auth.clock(),
        )
    except UserExists as exc:
        fields = [exc.field] if exc.field in ("username", "email") else ["username", "email"]
        raise AuthError(400, str(exc), errors=dict.fromkeys(fields, str(exc))) from None
    return await log_in(sessions, user, data.delivery, 201)


@post(
    "/refresh",
    status_code=200,
    summary="Rotate the refresh token (from the body, else the cookie)",
    operation_class=OptionalBody,
    responses={
        **BODY_RESPONSES,
        **refusal_spec(401, "invalid, expired, revoked or reused refresh token"),
        **CSRF_RESPONSES,
    },
)
async def refresh(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[RefreshRequest | None] = None,
) -> Response[RefreshOut]:
    auth = sessions.auth
    raw = data.refresh if data is not None else None
    from_body = raw is not None
    if raw is None:
        # A Bearer request is judged by its header alone: its cookies do not count.
        if bearer_token(request) is None:
            await sessions.require_csrf(request)
            raw = request.cookies.get(sessions.names.refresh, "")
        if not raw:
            raise AuthError(401, "no refresh token", error="invalid_grant")
    try:
        session = await refresh_session(auth, FIRST_PARTY.client_id, raw)
    except SessionError as exc:
        raise AuthError(401, str(exc), error="invalid_grant", clear_session=not from_body) from None
    pair = tokens_of(auth, session)
    if from_body:
        out = RefreshOut(pair.expires_in, pair.refresh_expires_in, pair.access, pair.refresh, pair)
        return respond(out)
    cookies = sessions.session_cookies(pair.access, pair.refresh, pair.refresh_expires_in)
    return respond(RefreshOut(pair.expires_in, pair.refresh_expires_in), cookies=cookies)


@post(
    "/logout",
    status_code=200,
    summary="Revoke the session of the presented refresh token and clear the cookies",
    operation_class=OptionalBody,
    responses={**BODY_RESPONSES, **CSRF_RESPONSES},
)
async def logout(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[RefreshRequest | None] = None,
) -> Response[DoneOut]:
    auth = sessions.auth
    bearer = bearer_token(request)
    cookie_mode = bearer is None and (data is None or data.refresh is None)
    if cookie_mode:
        await sessions.require_csrf(request)
    family_id: str | None = None
    if data is not None and data.refresh is not None:
        presented = parse_refresh_token(data.refresh)
        family = await auth.db.read(find_family, presented) if presented else None
        if family is not None and family.client_id == FIRST_PARTY.client_id:
            family_id = family.id
    elif bearer is not None:
        claims = sessions.claims_of(bearer, expired_ok=True)
        family_id = claims["sid"] if claims else None
    else:
        family_id = await sessions.refresh_cookie_family(request) or await sessions.cookie_session(
            request
        )
    if family_id:
        await auth.db.write(revoke_family, family_id, "logout", auth.clock())
    return respond(
        DoneOut("logged out"), cookies=sessions.cleared_session() if cookie_mode else None
    )


@post(
    "/logout-all",
    status_code=200,
    summary="Revoke every session of the user",
    responses={**UNAUTHENTICATED, **CSRF_RESPONSES},
)
async def logout_all(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[DoneOut]:
    auth = sessions.auth
    cookie_mode = bearer_token(request) is None
    if cookie_mode:
        await sessions.require_csrf(request)
    user = await sessions.current_user(request)
    if user is None:
        raise AuthError(401, NOT_AUTHENTICATED)
    revoked = await auth.db.write(revoke_user_families, user.id, "logout-all", auth.clock())
    cookies = sessions.cleared_session() if cookie_mode else None
    return respond(DoneOut("logged out everywhere", revoked), cookies=cookies)


@get("/me", summary="The logged-in user", responses={**UNAUTHENTICATED, **UNAVAILABLE})
async def me(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[UserOut]:
    user = await sessions.current_user(request)
    if user is None:
        raise AuthError(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
    return respond(user_out(user))


@get(
    "/check",
    summary="Whether the request carries a valid access token",
    responses=UNAVAILABLE,
)
async def check(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[CheckOut]:
    return respond(CheckOut(await sessions.current_user(request) is not None))


def auth_routes(auth: Authority, keys: KeyManager) -> Router:
    sessions = CookieSessions(auth, keys)

    def too_deep(request: Request[Any, Any, Any], _exc: RecursionError) -> Response[ErrorOut]:
        # msgspec recurses once per nesting level of the JSON body.
        return refused(request, AuthError(400, "malformed request: JSON nested too deeply"))

    def refused(_request: Request[Any, Any, Any], exc: AuthError) -> Response[ErrorOut]:
        cookies = sessions.cleared_session() if exc.clear_session else []
        return Response(
            exc.body,
            status_code=exc.status,
            headers={**NO_STORE, **exc.headers},
            cookies=cookies,
        )

    return Router(
        "/auth",
        route_handlers=[get_csrf, login, register, refresh, logout, logout_all, me, check],
        dependencies={"sessions": Provide(lambda: sessions, sync_to_thread=False)},
        request_max_body_size=MAX_BODY,
        before_request=require_json,
        exception_handlers={AuthError: refused, RecursionError: too_deep},
        tags=["auth"],
    )
