"""The first-party login API, ``/auth`` (README, "Logging in users"), in two deliveries.

Cookie delivery is for browsers: tokens travel only in HttpOnly cookies, and every
unsafe request that relies on cookies (login included) must pass the CSRF check
(``authority.web.cookies``). Body delivery is for mobile apps, SPAs and
back-ends-for-frontends: tokens travel in JSON and the access token comes back as
``Authorization: Bearer``, or bound to the client's key with a DPoP proof
(``authority.web.auth_dpop``). A refresh token that came in a cookie is only ever
answered in cookies, never in a body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody

from authority.accounts.passwords import ahash_password
from authority.accounts.registration import registration_problems
from authority.accounts.throttle import take_registration
from authority.accounts.users import UserExists, UserRecord, taken_field
from authority.grants.dpop import bind_refresh_token
from authority.sessions.families import find_family
from authority.sessions.lifecycle import create_audited_user, end_sessions
from authority.sessions.refresh_tokens import parse_refresh_token
from authority.sessions.service import (
    Authority,
    KeyRefused,
    LoginThrottled,
    SessionError,
    authenticate,
    open_session,
    refresh_session,
)
from authority.signing.manager import KeyManager
from authority.web.auth_dpop import (
    DpopRefused,
    authorization,
    bound_key,
    check_token_proof,
    proof_key,
    refuse_for_cookies,
)
from authority.web.auth_schema import (
    BODY_RESPONSES,
    CSRF_RESPONSES,
    DPOP_AUTH_REFUSAL,
    ISSUING,
    LOGGING_OUT,
    PRESENTING,
    REFRESHING,
    UNAUTHENTICATED,
    AuthError,
    CheckOut,
    CsrfOut,
    Delivery,
    DoneOut,
    ErrorOut,
    LoginOut,
    LoginRequest,
    RefreshOut,
    RefreshRequest,
    RegisterRequest,
    UserOut,
    litestar_refusal,
    refusal_spec,
    respond,
    user_out,
)
from authority.web.cookies import FIRST_PARTY, CookieSessions
from authority.web.http import MAX_BODY, NO_STORE, UNAVAILABLE, client_address


async def session_key(
    sessions: CookieSessions, request: Request[Any, Any, Any], delivery: Delivery
) -> str | None:
    """The DPoP key a new session is to be bound to (body delivery only), checked
    before anything else happens. Login and sign-up that set cookies need the CSRF
    token (login CSRF), Bearer header or not: the rule is that an answer which sets
    session cookies needs it, and a Bearer header vouches for nothing here."""
    if delivery == "cookie":
        refuse_for_cookies(request)
        await sessions.require_csrf(request)
        return None
    return await proof_key(sessions.auth, request)


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


async def log_in(
    sessions: CookieSessions, user: UserRecord, delivery: Delivery, status: int, jkt: str | None
) -> Response[LoginOut]:
    auth = sessions.auth
    session = await open_session(auth, FIRST_PARTY.client_id, user, "", auth.settings.audience)
    # RFC 9449 section 5: the session's refresh tokens are bound to the proof's key.
    await bind_refresh_token(auth.db, session.refresh_token, jkt)
    out = sessions.tokens(session, jkt)
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
    operation_class=ISSUING,
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
    jkt = await session_key(sessions, request, data.delivery)
    if (data.username is None) == (data.email is None):
        raise AuthError(
            400,
            "give either a username or an email",
            errors={"username": "give either a username or an email"},
        )
    login_name = data.username if data.username is not None else data.email
    try:
        user = await authenticate(
            sessions.auth,
            login_name or "",
            data.password,
            client_address(request),
            FIRST_PARTY.client_id,
        )
    except LoginThrottled as exc:
        raise AuthError(
            429,
            "too many failed logins; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    if user is None:
        raise AuthError(401, "invalid username or password")
    return await log_in(sessions, user, data.delivery, 200, jkt)


@post(
    "/register",
    status_code=201,
    summary="Create an account and log in",
    operation_class=ISSUING,
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
    jkt = await session_key(sessions, request, data.delivery)
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
            create_audited_user,
            username=data.username,
            email=data.email,
            password_hash=password_hash,
            now=auth.clock(),
            event="user.registered",
            client_id=FIRST_PARTY.client_id,
        )
    except UserExists as exc:
        fields = [exc.field] if exc.field in ("username", "email") else ["username", "email"]
        raise AuthError(400, str(exc), errors=dict.fromkeys(fields, str(exc))) from None
    return await log_in(sessions, user, data.delivery, 201, jkt)


@post(
    "/refresh",
    status_code=200,
    summary="Rotate the refresh token (from the body, else the cookie)",
    operation_class=REFRESHING,
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
    # A body session's family is bound to its proof's key in the rotation.
    jkt = await proof_key(auth, request) if from_body else None
    if raw is None:
        refuse_for_cookies(request)
        # A Bearer request is judged by its header alone: its cookies do not count.
        if authorization(request) is None:
            await sessions.require_csrf(request)
            raw = request.cookies.get(sessions.names.refresh, "")
        if not raw:
            raise AuthError(401, "no refresh token", error="invalid_grant")
    try:
        session = await refresh_session(
            auth, FIRST_PARTY.client_id, raw, jkt=jkt, bind_key=from_body
        )
    except KeyRefused as exc:
        raise DpopRefused(400, "invalid_dpop_proof", str(exc), {}) from None
    except SessionError as exc:
        raise AuthError(401, str(exc), error="invalid_grant", clear_session=not from_body) from None
    return sessions.renewed(session, in_body=from_body, jkt=jkt)


@post(
    "/logout",
    status_code=200,
    summary="Revoke the session of the presented refresh token and clear the cookies",
    operation_class=LOGGING_OUT,
    responses={**BODY_RESPONSES, **CSRF_RESPONSES, **refusal_spec(401, DPOP_AUTH_REFUSAL)},
)
async def logout(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[RefreshRequest | None] = None,
) -> Response[DoneOut]:
    auth = sessions.auth
    header = authorization(request)
    cookie_mode = header is None and (data is None or data.refresh is None)
    if cookie_mode:
        await sessions.require_csrf(request)
    family_id: str | None = None
    if data is not None and data.refresh is not None:
        # A refresh token bound to a key ends its session only with a proof by it.
        await proof_key(auth, request, refresh=data.refresh)
        presented = parse_refresh_token(data.refresh)
        family = await auth.db.read(find_family, presented) if presented else None
        if family is not None and family.client_id == FIRST_PARTY.client_id:
            family_id = family.id
    elif header is not None:
        claims = sessions.claims_of(header.token, expired_ok=True)
        if claims is not None and (header.dpop or bound_key(claims) is not None):
            await check_token_proof(auth, request, header, claims)
        family_id = claims["sid"] if claims else None
    else:
        family_id = await sessions.refresh_cookie_family(request) or await sessions.cookie_session(
            request
        )
    if family_id:
        await auth.db.write(end_sessions, "logout", auth.clock(), family_id=family_id)
    return respond(
        DoneOut("logged out"), cookies=sessions.cleared_session() if cookie_mode else None
    )


@post(
    "/logout-all",
    status_code=200,
    summary="Revoke every session of the user",
    operation_class=PRESENTING,
    responses={**UNAUTHENTICATED, **CSRF_RESPONSES},
)
async def logout_all(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[DoneOut]:
    auth = sessions.auth
    who = await sessions.authenticated(request, unsafe=True)
    revoked = await auth.db.write(end_sessions, "logout-all", auth.clock(), user_id=who.user.id)
    cookies = None if who.bearer else sessions.cleared_session()
    return respond(DoneOut("logged out everywhere", len(revoked)), cookies=cookies)


@get(
    "/me",
    summary="The logged-in user",
    operation_class=PRESENTING,
    responses={**UNAUTHENTICATED, **UNAVAILABLE},
)
async def me(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[UserOut]:
    who = await sessions.authenticated(request, unsafe=False)
    return respond(user_out(who.user))


@get(
    "/check",
    summary="Whether the request carries a valid access token",
    operation_class=PRESENTING,
    responses=UNAVAILABLE,
)
async def check(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[CheckOut]:
    return respond(CheckOut(await sessions.current_user(request) is not None))


def auth_routes(auth: Authority, keys: KeyManager, more: Sequence[HTTPRouteHandler] = ()) -> Router:
    """The /auth router; ``more`` are route handlers of other modules under it
    (``authority.web.account``), which share its dependencies and error answers."""
    sessions = CookieSessions(auth, keys)

    def too_deep(request: Request[Any, Any, Any], _exc: RecursionError) -> Response[ErrorOut]:
        # msgspec recurses once per nesting level of the JSON body.
        return refused(request, AuthError(400, "malformed request: JSON nested too deeply"))

    def refused(_request: Request[Any, Any, Any], exc: AuthError) -> Response[ErrorOut]:
        cookies = sessions.cleared_session() if exc.clear_session else []
        headers = {**NO_STORE, **exc.headers}
        return Response(exc.body, status_code=exc.status, headers=headers, cookies=cookies)

    def rejected(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorOut]:
        return refused(request, litestar_refusal(exc))

    def bad_proof(request: Request[Any, Any, Any], exc: DpopRefused) -> Response[ErrorOut]:
        error = AuthError(exc.status, exc.description, error=exc.error, headers=exc.headers)
        return refused(request, error)

    return Router(
        "/auth",
        route_handlers=[get_csrf, login, register, refresh, logout, logout_all, me, check, *more],
        dependencies={"sessions": Provide(lambda: sessions, sync_to_thread=False)},
        request_max_body_size=MAX_BODY,
        before_request=require_json,
        exception_handlers={
            AuthError: refused,
            DpopRefused: bad_proof,
            RecursionError: too_deep,
            HTTPException: rejected,
            ValidationException: rejected,
        },
        tags=["auth"],
    )
