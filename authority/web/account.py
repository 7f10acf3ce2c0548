"""A logged-in user's own account at ``/auth`` (README, "Logging in users"): change
the password, see the sessions, end one.

These routes join the /auth router (``authority.web.auth.auth_routes``) and follow its
rules: cookie requests pass the CSRF check, ``Authorization: Bearer`` (or ``DPoP``, with
a proof by the token's key) requests are judged by that header alone, and only /auth's
own access tokens count.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from authority.accounts.passwords import ahash_password
from authority.accounts.registration import password_problem
from authority.authorization.consents import list_consents, withdraw_consent
from authority.sessions.lifecycle import (
    MAX_SESSION_ID,
    PasswordStale,
    SessionEnded,
    change_own_password,
    end_sessions,
    live_sessions,
)
from authority.sessions.refresh_tokens import new_refresh_token
from authority.sessions.service import LoginThrottled, Session, confirm_password
from authority.web.auth_schema import (
    BODY_RESPONSES,
    CSRF_RESPONSES,
    NOT_AUTHENTICATED,
    PRESENTING,
    UNAUTHENTICATED,
    AuthError,
    ConsentOut,
    ConsentsOut,
    PasswordRequest,
    RefreshOut,
    SessionsOut,
    iso_time,
    refusal_spec,
    respond,
    session_out,
)
from authority.web.cookies import FIRST_PARTY, CookieSessions
from authority.web.http import UNAVAILABLE, client_address

WRONG_PASSWORD = "the current password is wrong"  # noqa: S105 (a message, not a secret)
SESSION_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_SESSION_ID}}}")


@post(
    "/password",
    status_code=200,
    summary="Change the password; every other session of the user ends",
    operation_class=PRESENTING,
    description=(
        "The session making the request goes on with new tokens, answered as a refresh "
        "is (cookies in cookie mode, the body with a Bearer header). A wrong current "
        "password is a 400 and counts against the login throttle like a failed login."
    ),
    responses={
        **BODY_RESPONSES,
        **refusal_spec(400, "the new password breaks a rule, or the current one is wrong"),
        **UNAUTHENTICATED,
        **CSRF_RESPONSES,
        **refusal_spec(429, "too many failed attempts; see Retry-After"),
    },
)
async def change_password(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    data: JSONBody[PasswordRequest],
) -> Response[RefreshOut]:
    auth = sessions.auth
    who = await sessions.authenticated(request, unsafe=True)
    user = who.user
    problem = password_problem(data.new_password, user.username, user.email)
    if problem is not None:
        raise AuthError(400, problem, errors={"new_password": problem})
    try:
        confirmed = await confirm_password(
            auth, user, data.current_password, client_address(request), FIRST_PARTY.client_id
        )
    except LoginThrottled as exc:
        raise AuthError(
            429,
            "too many failed attempts; try again later",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    if not confirmed:
        raise AuthError(400, WRONG_PASSWORD, errors={"current_password": WRONG_PASSWORD})
    password_hash = await ahash_password(data.new_password)
    refresh, refresh_hash = new_refresh_token()
    status_idx = await auth.status.allocate()
    try:
        changed = await auth.db.write(
            change_own_password,
            user,
            password_hash,
            confirmed_hash=user.password_hash,
            session=who.session,
            token_hash=refresh_hash,
            now=auth.clock(),
            ttl=auth.settings.refresh_ttl,
            status_idx=status_idx,
        )
    except PasswordStale:
        raise AuthError(400, WRONG_PASSWORD, errors={"current_password": WRONG_PASSWORD}) from None
    except SessionEnded:  # logged out meanwhile: nothing changed
        raise AuthError(401, NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"}) from None
    session = Session(changed.family, refresh, changed.refresh_expires_at, status_idx)
    return sessions.renewed(session, in_body=who.bearer, jkt=who.jkt)


@get(
    "/sessions",
    summary="The user's live sessions (refresh families)",
    operation_class=PRESENTING,
    responses={**UNAUTHENTICATED, **UNAVAILABLE},
)
async def list_sessions(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[SessionsOut]:
    auth = sessions.auth
    who = await sessions.authenticated(request, unsafe=False)
    found = await auth.db.read(live_sessions, who.user.id, auth.clock())
    return respond(SessionsOut([session_out(s, who.session) for s in found]))


@delete(
    "/sessions/{session_id:str}",
    status_code=204,
    summary="End one of the user's sessions",
    operation_class=PRESENTING,
    responses={
        **refusal_spec(404, "no live session of this user has this id"),
        **UNAUTHENTICATED,
        **CSRF_RESPONSES,
    },
)
async def end_session(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    session_id: FromPath[str],
) -> Response[None]:
    auth = sessions.auth
    who = await sessions.authenticated(request, unsafe=True)
    ended: list[str] = []
    if SESSION_ID.fullmatch(session_id):
        ended = await auth.db.write(
            end_sessions,
            "ended by user",
            auth.clock(),
            user_id=who.user.id,
            family_id=session_id,
        )
    if not ended:  # unknown, ended already, or another user's: the same answer
        raise AuthError(404, "no such session")
    # Ending the session of this browser's own cookies logs it out.
    cookies = sessions.cleared_session() if session_id == who.session and not who.bearer else []
    return respond(None, 204, cookies)


@get(
    "/consents",
    summary="The apps the user allowed, and the scopes (authorization code flow)",
    operation_class=PRESENTING,
    responses={**UNAUTHENTICATED, **UNAVAILABLE},
)
async def list_user_consents(
    request: Request[Any, Any, Any], sessions: NamedDependency[CookieSessions]
) -> Response[ConsentsOut]:
    who = await sessions.authenticated(request, unsafe=False)
    found = await sessions.auth.db.read(list_consents, who.user.id)
    return respond(
        ConsentsOut(
            [
                ConsentOut(c.client_id, c.client_name, list(c.scopes), iso_time(c.granted_at))
                for c in found
            ]
        )
    )


@delete(
    "/consents/{client_id:str}",
    status_code=204,
    summary="Withdraw a consent: the app must ask again (its sessions go on until revoked)",
    operation_class=PRESENTING,
    responses={
        **refusal_spec(404, "the user has no consent for this client"),
        **UNAUTHENTICATED,
        **CSRF_RESPONSES,
    },
)
async def withdraw_user_consent(
    request: Request[Any, Any, Any],
    sessions: NamedDependency[CookieSessions],
    client_id: FromPath[str],
) -> Response[None]:
    who = await sessions.authenticated(request, unsafe=True)
    withdrawn = len(client_id) <= 64 and await sessions.auth.db.write(
        withdraw_consent, who.user.id, client_id
    )
    if not withdrawn:
        raise AuthError(404, "no such consent")
    return respond(None, 204)


ACCOUNT_HANDLERS = (
    change_password,
    list_sessions,
    end_session,
    list_user_consents,
    withdraw_user_consent,
)
