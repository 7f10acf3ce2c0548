"""The first-party login API, ``/auth`` (SPEC section 3), in two deliveries.

Cookie delivery is for browsers: tokens travel only in HttpOnly cookies, and every
unsafe request that relies on cookies (login included) must pass the CSRF check of
``authority.web.csrf``. Body delivery is for mobile apps, SPAs and back-ends-for-frontends:
tokens travel in JSON and the access token comes back as ``Authorization: Bearer``.

A request with an ``Authorization: Bearer`` header is authenticated by that header
alone: its cookies are ignored and it needs no CSRF token (a cross-site page cannot
set that header without a CORS preflight, which only ``CORS_ORIGINS`` pass). A refresh
token that came in a cookie is only ever answered in cookies, never in a body.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.params import JSONBody
from sqlalchemy import Connection

from authority.web import csrf
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
from authority.accounts.clients import ClientRecord
from authority.grants.errors import UNAVAILABLE, OAuth2Error
from authority.sessions.families import (
    access_token_revoked,
    find_family,
    revoke_family,
    revoke_user_families,
    session_active,
)
from authority.grants.common import (
    LoginThrottled,
    authenticate_user,
    issue_user_tokens,
    open_session,
    rotate_refresh_token,
)
from authority.web.oauth import client_address
from authority.accounts.passwords import ahash_password
from authority.accounts.registration import registration_problems
from authority.sessions.service import Authority
from authority.signing.signer import decode_own_access_token, parse_refresh_token
from authority.accounts.users import UserExists, UserRecord, create_user, get_user, taken_field

# The public client row behind /auth (migration 0004): it has no OAuth grant.
FIRST_PARTY = ClientRecord(
    client_id="authority-web",
    name="first-party web and app login (/auth)",
    is_public=True,
    grant_types=frozenset(),
    scopes=frozenset(),
    audiences=(),
    is_active=True,
    secret_hash=None,
)
ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
MAX_BODY = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The token of an ``Authorization: Bearer`` header; "" when it is empty. Other
    schemes are not ours and are ignored."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _session_user(conn: Connection, sid: str, jti: str, user_id: int) -> UserRecord | None:
    if access_token_revoked(conn, jti) or not session_active(conn, sid):
        return None
    user = get_user(conn, user_id)
    return user if user is not None and user.is_active else None


def auth_routes(auth: Authority) -> Router:
    settings = auth.settings
    csrf_key = csrf.derive_key(auth.secret_key)
    trusted_origins = (*settings.cors_origins, settings.issuer)
    samesite = cast(Literal["lax", "strict", "none"], settings.cookie_samesite)

    def claims_of(token: str | None, *, expired_ok: bool = False) -> dict[str, Any] | None:
        """Verified claims of one of our user access tokens (they carry a ``sid``)."""
        if not token:
            return None
        claims = decode_own_access_token(
            auth.keys.current_ring(),
            token,
            issuer=settings.issuer,
            now=None if expired_ok else auth.clock(),
            leeway=0,
        )
        if claims is None or type(claims.get("sid")) is not str:
            return None
        sub = claims.get("sub")
        return claims if isinstance(sub, str) and sub.isascii() and sub.isdigit() else None

    async def current_user(request: Request[Any, Any, Any]) -> UserRecord | None:
        """The user of the request's access token (header first, else cookie), while
        the token is unexpired and unrevoked and its session stands."""
        token = bearer_token(request)
        if token is None:
            token = request.cookies.get(ACCESS_COOKIE)
        claims = claims_of(token)
        if claims is None:
            return None
        return await auth.db.read(_session_user, claims["sid"], claims["jti"], int(claims["sub"]))

    async def refresh_cookie_family(request: Request[Any, Any, Any]) -> str | None:
        """The session of the refresh cookie, looked up at most once per request (the
        CSRF check and logout may both ask)."""
        state = request.state
        if "refresh_family" not in state:
            presented = parse_refresh_token(request.cookies.get(REFRESH_COOKIE, ""))
            family = await auth.db.read(find_family, presented) if presented else None
            if family is not None and family.client_id != FIRST_PARTY.client_id:
                family = None
            state["refresh_family"] = family.id if family is not None else None
        return cast(str | None, state["refresh_family"])

    async def cookie_session(request: Request[Any, Any, Any]) -> str:
        """The login session the request's cookies belong to ("" when none), which
        CSRF tokens are bound to. An expired access cookie still names its session."""
        claims = claims_of(request.cookies.get(ACCESS_COOKIE), expired_ok=True)
        if claims is not None:
            return str(claims["sid"])
        return await refresh_cookie_family(request) or ""

    async def require_csrf(request: Request[Any, Any, Any]) -> None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if not csrf.origin_allowed(request.headers.get("origin"), own, trusted_origins):
            raise AuthError(403, "origin not allowed")
        session = await cookie_session(request)
        if not csrf.double_submit_ok(
            csrf_key,
            request.headers.get(csrf.HEADER),
            request.cookies.get(csrf.COOKIE),
            session,
        ):
            raise AuthError(403, csrf.FAILED)

    async def require_csrf_for_cookies(request: Request[Any, Any, Any], delivery: Delivery) -> None:
        """Login and sign-up that set cookies need the CSRF token (login CSRF)."""
        if delivery == "cookie" and bearer_token(request) is None:
            await require_csrf(request)

    def cookie(
        key: str, value: str, max_age: int, *, path: str = "/", http_only: bool = True
    ) -> Cookie:
        return Cookie(
            key=key,
            value=value,
            max_age=max_age,
            path=path,
            httponly=http_only,
            secure=settings.secure_cookies,
            samesite=samesite,
        )

    def session_cookies(access: str, refresh: str, refresh_expires_in: int) -> list[Cookie]:
        return [
            cookie(ACCESS_COOKIE, access, settings.access_ttl),
            cookie(REFRESH_COOKIE, refresh, refresh_expires_in, path="/auth"),
        ]

    def csrf_cookie(token: str) -> Cookie:
        return cookie(csrf.COOKIE, token, settings.refresh_family_ttl, http_only=False)

    def cleared_session() -> list[Cookie]:
        """Token cookies deleted, and a fresh anonymous CSRF token."""
        return [
            cookie(ACCESS_COOKIE, "", 0),
            cookie(REFRESH_COOKIE, "", 0, path="/auth"),
            csrf_cookie(csrf.new_token(csrf_key, "")),
        ]

    def respond(
        content: Any, status: int = 200, cookies: list[Cookie] | None = None
    ) -> Response[Any]:
        return Response(content, status_code=status, headers=NO_STORE, cookies=cookies or [])

    def seconds_until(when: float) -> int:
        return max(0, int(when - auth.clock()))

    async def log_in(user: UserRecord, delivery: Delivery, status: int) -> Response[LoginOut]:
        family, refresh, refresh_expires = await open_session(
            auth, FIRST_PARTY, user, "", settings.audience
        )
        tokens = issue_user_tokens(auth, FIRST_PARTY, family, "", refresh)
        out = TokensOut(
            tokens["access_token"], refresh, tokens["expires_in"], seconds_until(refresh_expires)
        )
        if delivery == "body":
            return respond(LoginOut(user_out(user), out), status)
        # Login rotates the CSRF token: the anonymous one stops working.
        cookies = [
            *session_cookies(out.access, out.refresh, out.refresh_expires_in),
            csrf_cookie(csrf.new_token(csrf_key, family.id)),
        ]
        return respond(LoginOut(user_out(user)), status, cookies)

    @get(
        "/csrf",
        summary="A CSRF token for cookie requests (also set as the csrftoken cookie)",
        responses=UNAVAILABLE,
    )
    async def get_csrf(request: Request[Any, Any, Any]) -> Response[CsrfOut]:
        session = await cookie_session(request)
        token = request.cookies.get(csrf.COOKIE)
        if not csrf.token_fits(csrf_key, token, session) or token is None:
            token = csrf.new_token(csrf_key, session)
        return respond(CsrfOut(token), cookies=[csrf_cookie(token)])

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
        request: Request[Any, Any, Any], data: JSONBody[LoginRequest]
    ) -> Response[LoginOut]:
        await require_csrf_for_cookies(request, data.delivery)
        if (data.username is None) == (data.email is None):
            raise AuthError(
                400,
                "give either a username or an email",
                errors={"username": "give either a username or an email"},
            )
        login_name = data.username if data.username is not None else data.email
        try:
            user = await authenticate_user(
                auth, login_name or "", data.password, client_address(request)
            )
        except LoginThrottled as exc:
            raise AuthError(
                429,
                "too many failed logins; try again later",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        if user is None:
            raise AuthError(401, "invalid username or password")
        return await log_in(user, data.delivery, 200)

    @post(
        "/register",
        status_code=201,
        summary="Create an account and log in",
        responses={
            **BODY_RESPONSES,
            **refusal_spec(400, "a field is invalid or malformed; see errors"),
            **CSRF_RESPONSES,
        },
    )
    async def register(
        request: Request[Any, Any, Any], data: JSONBody[RegisterRequest]
    ) -> Response[LoginOut]:
        await require_csrf_for_cookies(request, data.delivery)
        problems = registration_problems(data.username, data.email, data.password)
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
        return await log_in(user, data.delivery, 201)

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
        request: Request[Any, Any, Any], data: JSONBody[RefreshRequest | None] = None
    ) -> Response[RefreshOut]:
        raw = data.refresh if data is not None else None
        from_body = raw is not None
        if raw is None:
            # A Bearer request is judged by its header alone: its cookies do not count.
            if bearer_token(request) is None:
                await require_csrf(request)
                raw = request.cookies.get(REFRESH_COOKIE, "")
            if not raw:
                raise AuthError(401, "no refresh token", error="invalid_grant")
        try:
            family, replacement, expires_at = await rotate_refresh_token(
                auth, FIRST_PARTY.client_id, raw
            )
        except OAuth2Error as exc:
            raise AuthError(
                401, exc.description, error="invalid_grant", clear_session=not from_body
            ) from None
        access = issue_user_tokens(auth, FIRST_PARTY, family, family.scope, None)
        pair = TokensOut(
            access["access_token"], replacement, access["expires_in"], seconds_until(expires_at)
        )
        if from_body:
            out = RefreshOut(
                pair.expires_in, pair.refresh_expires_in, pair.access, pair.refresh, pair
            )
            return respond(out)
        cookies = session_cookies(pair.access, pair.refresh, pair.refresh_expires_in)
        return respond(RefreshOut(pair.expires_in, pair.refresh_expires_in), cookies=cookies)

    @post(
        "/logout",
        status_code=200,
        summary="Revoke the session of the presented refresh token and clear the cookies",
        operation_class=OptionalBody,
        responses={**BODY_RESPONSES, **CSRF_RESPONSES},
    )
    async def logout(
        request: Request[Any, Any, Any], data: JSONBody[RefreshRequest | None] = None
    ) -> Response[DoneOut]:
        bearer = bearer_token(request)
        cookie_mode = bearer is None and (data is None or data.refresh is None)
        if cookie_mode:
            await require_csrf(request)
        family_id: str | None = None
        if data is not None and data.refresh is not None:
            presented = parse_refresh_token(data.refresh)
            family = await auth.db.read(find_family, presented) if presented else None
            if family is not None and family.client_id == FIRST_PARTY.client_id:
                family_id = family.id
        elif bearer is not None:
            claims = claims_of(bearer, expired_ok=True)
            family_id = claims["sid"] if claims else None
        else:
            family_id = await refresh_cookie_family(request) or await cookie_session(request)
        if family_id:
            await auth.db.write(revoke_family, family_id, "logout", auth.clock())
        return respond(DoneOut("logged out"), cookies=cleared_session() if cookie_mode else None)

    @post(
        "/logout-all",
        status_code=200,
        summary="Revoke every session of the user",
        responses={**UNAUTHENTICATED, **CSRF_RESPONSES},
    )
    async def logout_all(request: Request[Any, Any, Any]) -> Response[DoneOut]:
        cookie_mode = bearer_token(request) is None
        if cookie_mode:
            await require_csrf(request)
        user = await current_user(request)
        if user is None:
            raise AuthError(401, NOT_AUTHENTICATED)
        revoked = await auth.db.write(revoke_user_families, user.id, "logout-all", auth.clock())
        cookies = cleared_session() if cookie_mode else None
        return respond(DoneOut("logged out everywhere", revoked), cookies=cookies)

    @get("/me", summary="The logged-in user", responses={**UNAUTHENTICATED, **UNAVAILABLE})
    async def me(request: Request[Any, Any, Any]) -> Response[UserOut]:
        user = await current_user(request)
        if user is None:
            raise AuthError(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        return respond(user_out(user))

    @get(
        "/check",
        summary="Whether the request carries a valid access token",
        responses=UNAVAILABLE,
    )
    async def check(request: Request[Any, Any, Any]) -> Response[CheckOut]:
        return respond(CheckOut(await current_user(request) is not None))

    def refused(request: Request[Any, Any, Any], exc: AuthError) -> Response[ErrorOut]:
        cookies = cleared_session() if exc.clear_session else []
        return Response(
            exc.body,
            status_code=exc.status,
            headers={**NO_STORE, **exc.headers},
            cookies=cookies,
        )

    return Router(
        "/auth",
        route_handlers=[get_csrf, login, register, refresh, logout, logout_all, me, check],
        request_max_body_size=MAX_BODY,
        exception_handlers={AuthError: refused},
        tags=["auth"],
    )
