"""The browser's login session: which user a request's access token names, which
session its cookies belong to, the CSRF check of cookie requests, and the cookies
themselves (README, "Logging in users"). ``/auth`` uses it, and any page of the
authority that acts for a signed-in browser can.

Cookie requests must pass the CSRF check of ``authority.web.csrf``. A request with an
``Authorization: Bearer`` (or ``DPoP``) header is authenticated by that header alone:
its cookies are ignored and it needs no CSRF token (a cross-site page cannot set that
header without a CORS preflight, which only ``CORS_ORIGINS`` pass). A token bound to a
DPoP key counts only with a proof by that key (``authority.web.auth_dpop``). Only
access tokens that ``/auth`` issued itself count: those of the first-party client, for
the authority's own audience; a token another client or a resource server was given is
refused.

With ``Secure`` cookies the names carry the prefixes of RFC 6265bis section 4.1.3
(``__Host-`` and ``__Secure-``), which browsers accept only from a secure origin and,
for ``__Host-``, only without ``Domain`` and with ``Path=/``: a sibling subdomain can
then not plant a session or a CSRF token (README, "Logging in users").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from litestar import Request, Response
from litestar.datastructures import Cookie
from sqlalchemy import Connection

from authority.accounts.clients import FIRST_PARTY_CLIENT_ID, ClientRecord
from authority.accounts.users import UserRecord, get_user
from authority.sessions.families import find_family, session_active
from authority.sessions.refresh_tokens import parse_refresh_token
from authority.sessions.service import Authority, Session, issue_access_token
from authority.signing.manager import KeyManager
from authority.signing.own_tokens import decode_own_access_token
from authority.signing.signer import DPOP_KEY
from authority.status.store import access_token_revoked
from authority.web import csrf
from authority.web.auth_dpop import (
    DpopRefused,
    authorization,
    bound_key,
    check_token_proof,
    refused,
)
from authority.web.auth_schema import (
    NOT_AUTHENTICATED,
    AuthError,
    RefreshOut,
    TokensOut,
    respond,
)

# The public client row behind /auth (migration 0004): it has no OAuth grant.
FIRST_PARTY = ClientRecord(
    client_id=FIRST_PARTY_CLIENT_ID,
    name="first-party web and app login (/auth)",
    is_public=True,
    grant_types=frozenset(),
    scopes=frozenset(),
    audiences=(),
    is_active=True,
    secret_hash=None,
)
REFRESH_PATH = "/auth"


@dataclass(frozen=True)
class CookieNames:
    """The names of the three /auth cookies: prefixed when they are ``Secure``."""

    access: str
    refresh: str
    csrf: str

    @classmethod
    def for_secure(cls, secure: bool) -> CookieNames:
        if not secure:
            return cls("access_token", "refresh_token", "csrftoken")
        return cls("__Host-access_token", "__Secure-refresh_token", "__Host-csrftoken")


@dataclass(frozen=True)
class Who:
    """The user an authenticated request acts for, its session (``sid``), whether it
    came with an ``Authorization`` header (else by cookie), and the DPoP key its token
    is bound to (whose proof the request carried)."""

    user: UserRecord
    session: str
    bearer: bool
    jkt: str | None = None


def _session_user(conn: Connection, sid: str, jti: str, user_id: int) -> UserRecord | None:
    if access_token_revoked(conn, jti) or not session_active(conn, sid):
        return None
    user = get_user(conn, user_id)
    return user if user is not None and user.is_active else None


class CookieSessions:
    """Built once per app from its ``Authority`` and key manager."""

    def __init__(self, auth: Authority, keys: KeyManager):
        settings = auth.settings
        self.auth = auth
        self.keys = keys
        self.csrf_key = csrf.derive_key(auth.secret_key)
        self.trusted_origins = (*settings.cors_origins, settings.issuer)
        self.samesite = cast(Literal["lax", "strict", "none"], settings.cookie_samesite)
        self.names = CookieNames.for_secure(settings.secure_cookies)

    # --- who the request is ------------------------------------------------------------

    def claims_of(self, token: str | None, *, expired_ok: bool = False) -> dict[str, Any] | None:
        """Verified claims of an access token that /auth issued (first-party client, our
        own audience, a ``sid``), else None."""
        if not token:
            return None
        claims = decode_own_access_token(
            self.keys.current_ring(),
            token,
            issuer=self.auth.settings.issuer,
            now=None if expired_ok else self.auth.clock(),
            leeway=0,
        )
        if claims is None or type(claims.get("sid")) is not str:
            return None
        if claims.get("client_id") != FIRST_PARTY.client_id:
            return None
        if claims.get("aud") != self.auth.settings.audience:
            return None
        sub = claims.get("sub")
        return claims if isinstance(sub, str) and sub.isascii() and sub.isdigit() else None

    async def current_user(self, request: Request[Any, Any, Any]) -> UserRecord | None:
        """The user of the request's access token (header first, else cookie), while
        the token is unexpired and unrevoked and its session stands."""
        try:
            return (await self.authenticated(request, unsafe=False)).user
        except (AuthError, DpopRefused):
            return None

    async def signed_in(self, request: Request[Any, Any, Any]) -> tuple[UserRecord, str] | None:
        """The user and login session of the browser's access cookie (never a header:
        the authorization endpoint is a browser's), while both stand."""
        claims = self.claims_of(request.cookies.get(self.names.access))
        # A cookie never holds a bound token: /auth refuses DPoP in cookie delivery.
        return await self._user_of(claims if claims and bound_key(claims) is None else None)

    async def authenticated(self, request: Request[Any, Any, Any], *, unsafe: bool) -> Who:
        """``current_user`` with its session, else a 401. A cookie request without an
        access cookie is a 401 at once; one with it must first pass the CSRF check when
        the request is ``unsafe``."""
        header = authorization(request)
        token = header.token if header is not None else request.cookies.get(self.names.access)
        if token and header is None and unsafe:
            await self.require_csrf(request)
        claims = self.claims_of(token)
        jkt = None
        if claims is not None:
            jkt = await check_token_proof(self.auth, request, header, claims)
        found = await self._user_of(claims)
        if found is None:
            if header is not None and header.dpop:
                raise refused("invalid_token", NOT_AUTHENTICATED)
            raise AuthError(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        user, session = found
        return Who(user, session, header is not None, jkt)

    async def _user_of(self, claims: dict[str, Any] | None) -> tuple[UserRecord, str] | None:
        """The user and session of the claims of a live access token of ours."""
        if claims is None:
            return None
        sid = str(claims["sid"])
        user = await self.auth.db.read(_session_user, sid, claims["jti"], int(claims["sub"]))
        return (user, sid) if user is not None else None

    async def refresh_cookie_family(self, request: Request[Any, Any, Any]) -> str | None:
        """The session of the refresh cookie, looked up at most once per request (the
        CSRF check and logout may both ask)."""
        state = request.state
        if "refresh_family" not in state:
            presented = parse_refresh_token(request.cookies.get(self.names.refresh, ""))
            family = await self.auth.db.read(find_family, presented) if presented else None
            if family is not None and family.client_id != FIRST_PARTY.client_id:
                family = None
            state["refresh_family"] = family.id if family is not None else None
        return cast(str | None, state["refresh_family"])

    async def cookie_session(self, request: Request[Any, Any, Any]) -> str:
        """The login session the request's cookies belong to ("" when none), which
        CSRF tokens are bound to. An expired access cookie still names its session."""
        claims = self.claims_of(request.cookies.get(self.names.access), expired_ok=True)
        if claims is not None:
            return str(claims["sid"])
        return await self.refresh_cookie_family(request) or ""

    # --- CSRF --------------------------------------------------------------------------

    async def require_csrf(self, request: Request[Any, Any, Any]) -> None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if not csrf.origin_allowed(request.headers.get("origin"), own, self.trusted_origins):
            raise AuthError(403, "origin not allowed")
        session = await self.cookie_session(request)
        if not csrf.double_submit_ok(
            self.csrf_key,
            request.headers.get(csrf.HEADER),
            request.cookies.get(self.names.csrf),
            session,
        ):
            raise AuthError(403, csrf.FAILED)

    async def csrf_token(self, request: Request[Any, Any, Any]) -> str:
        """The request's CSRF token while it still fits its session, else a new one
        (so that tabs don't clobber each other)."""
        session = await self.cookie_session(request)
        token = request.cookies.get(self.names.csrf)
        if not csrf.token_fits(self.csrf_key, token, session) or token is None:
            token = csrf.new_token(self.csrf_key, session)
        return token

    # --- tokens ------------------------------------------------------------------------

    def tokens(self, session: Session, jkt: str | None = None) -> TokensOut:
        """A session's new token pair, with the seconds each has left; the access token
        bound to the DPoP key ``jkt`` when given (``token_type`` ``DPoP``)."""
        auth = self.auth
        family = session.family
        bound = DPOP_KEY.set(jkt)
        try:
            access = issue_access_token(auth, FIRST_PARTY.client_id, session, family.scope)
        finally:
            DPOP_KEY.reset(bound)
        refresh_left = max(0, int(session.refresh_expires_at - auth.clock()))
        kind = "Bearer" if jkt is None else "DPoP"
        return TokensOut(access.token, session.refresh_token, auth.signer.ttl, refresh_left, kind)

    def renewed(
        self, session: Session, *, in_body: bool, jkt: str | None = None
    ) -> Response[RefreshOut]:
        """The answer to a refresh (and a password change): the new pair in the body,
        or in the cookies with only the lifetimes in the body."""
        pair = self.tokens(session, jkt)
        if in_body:
            return respond(
                RefreshOut(
                    pair.expires_in, pair.refresh_expires_in, pair.access, pair.refresh, pair
                )
            )
        cookies = self.session_cookies(pair.access, pair.refresh, pair.refresh_expires_in)
        return respond(RefreshOut(pair.expires_in, pair.refresh_expires_in), cookies=cookies)

    # --- cookies -----------------------------------------------------------------------

    def cookie(
        self, key: str, value: str, max_age: int, *, path: str = "/", http_only: bool = True
    ) -> Cookie:
        return Cookie(
            key=key,
            value=value,
            max_age=max_age,
            path=path,
            httponly=http_only,
            secure=self.auth.settings.secure_cookies,
            samesite=self.samesite,
        )

    def session_cookies(self, access: str, refresh: str, refresh_expires_in: int) -> list[Cookie]:
        return [
            self.cookie(self.names.access, access, self.auth.settings.access_ttl),
            self.cookie(self.names.refresh, refresh, refresh_expires_in, path=REFRESH_PATH),
        ]

    def csrf_cookie(self, token: str) -> Cookie:
        return self.cookie(
            self.names.csrf, token, self.auth.settings.refresh_family_ttl, http_only=False
        )

    def login_cookies(
        self, access: str, refresh: str, refresh_expires_in: int, session: str
    ) -> list[Cookie]:
        """A new session's cookies; login rotates the CSRF token, so the anonymous one
        stops working."""
        return [
            *self.session_cookies(access, refresh, refresh_expires_in),
            self.csrf_cookie(csrf.new_token(self.csrf_key, session)),
        ]

    def cleared_session(self) -> list[Cookie]:
        """Token cookies deleted, and a fresh anonymous CSRF token."""
        return [
            self.cookie(self.names.access, "", 0),
            self.cookie(self.names.refresh, "", 0, path=REFRESH_PATH),
            self.csrf_cookie(csrf.new_token(self.csrf_key, "")),
        ]
