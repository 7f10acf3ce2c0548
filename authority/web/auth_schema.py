"""The /auth wire format: request and response bodies, the error answer, and how the
OpenAPI document describes them. Bodies are msgspec structs; unknown fields are a 400."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from litestar import Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation, RequestBody

from authority.accounts.users import UserRecord
from authority.sessions.lifecycle import SessionInfo
from authority.web.dpop_schema import ISSUING_PROOF, LOGOUT_PROOF, PRESENTING_PROOF, dpop_operation
from authority.web.http import MAX_BODY, NO_STORE, UNAVAILABLE, error_spec

Delivery = Literal["cookie", "body"]


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    password: str
    username: str | None = None
    email: str | None = None
    delivery: Delivery = "cookie"


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    email: str
    password: str
    delivery: Delivery = "cookie"


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body delivery names the refresh token; cookie delivery sends an empty object or
    no body at all."""

    refresh: str | None = None


class PasswordRequest(msgspec.Struct, forbid_unknown_fields=True):
    current_password: str
    new_password: str


class UserOut(msgspec.Struct):
    id: int
    username: str
    email: str
    date_joined: str


class TokensOut(msgspec.Struct):
    """``token_type``: ``DPoP`` when the access token is bound to the key of the
    request's DPoP proof (send it as ``Authorization: DPoP``), else ``Bearer``."""

    access: str
    refresh: str
    expires_in: int
    refresh_expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (a token type, not a secret)


class LoginOut(msgspec.Struct, omit_defaults=True):
    user: UserOut
    tokens: TokensOut | None = None


class RefreshOut(msgspec.Struct, omit_defaults=True):
    """Cookie delivery: only the lifetimes. Body delivery: the new pair, both at the top
    level (as simplejwt clients expect) and as ``tokens`` (as at login)."""

    expires_in: int
    refresh_expires_in: int
    access: str | None = None
    refresh: str | None = None
    tokens: TokensOut | None = None


class CsrfOut(msgspec.Struct):
    """The token, and the name of the cookie that holds it (prefixed when cookies are
    ``Secure``), so that scripts need not guess it."""

    csrf_token: str
    cookie_name: str


class SessionOut(msgspec.Struct):
    """A live session (refresh family): where it was opened, when last refreshed, and
    whether it is the one making this request."""

    id: str
    client_id: str
    created_at: str
    last_used_at: str
    address: str | None
    user_agent: str | None
    current: bool


class SessionsOut(msgspec.Struct):
    sessions: list[SessionOut]


class ConsentOut(msgspec.Struct):
    """Scopes the user allowed a client at the consent page."""

    client_id: str
    client_name: str
    scopes: list[str]
    granted_at: str


class ConsentsOut(msgspec.Struct):
    consents: list[ConsentOut]


class CheckOut(msgspec.Struct):
    authenticated: bool


class DoneOut(msgspec.Struct, omit_defaults=True):
    detail: str
    revoked: int | None = None


class ErrorOut(msgspec.Struct, omit_defaults=True):
    detail: str
    error: str | None = None
    errors: dict[str, str] | None = None


class AuthError(Exception):
    """A refused /auth request: its status, ``detail``, and what to clear."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        error: str | None = None,
        errors: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        clear_session: bool = False,
    ):
        super().__init__(detail)
        self.status = status
        self.body = ErrorOut(detail, error, errors)
        self.headers = dict(headers or {})
        self.clear_session = clear_session


def litestar_refusal(exc: HTTPException) -> AuthError:
    """Litestar's own refusals (a body that does not fit its struct, one over the size
    limit) as /auth errors, instead of its ``{"status_code", "detail", "extra"}``."""
    if exc.status_code == 413:
        return AuthError(413, f"the body is over {MAX_BODY // 1024} KiB")
    if not isinstance(exc, ValidationException):
        return AuthError(exc.status_code, exc.detail)
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = [p for p in extra if isinstance(p, dict)]
    first = str(problems[0].get("message", "")) if problems else ""
    fields = {
        str(p["key"]): str(p.get("message", ""))
        for p in problems
        if p.get("source") == "body" and p.get("key") not in (None, "data")
    }
    detail = f"malformed request: {first}" if first else "malformed request"
    return AuthError(400, detail, errors=fields or None)


@dataclass
class OptionalBody(Operation):
    """An operation whose JSON body may be left out (cookie delivery sends none);
    Litestar marks every request body required."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def refusal_spec(status: int, description: str) -> dict[int, ResponseSpec]:
    """An OpenAPI response of the /auth error answer."""
    return error_spec(status, description, ErrorOut)


# DPoP (RFC 9449): login, sign-up and refresh in body delivery, and logout, take a proof
# (a 400 when it fails); a request with an access token bound to a key takes one by it.
_BODY_ONLY = " Body delivery only: with cookie delivery a proof is a 400 invalid_dpop_proof."
ISSUING = dpop_operation(description=ISSUING_PROOF + _BODY_ONLY)
REFRESHING = dpop_operation(OptionalBody, ISSUING_PROOF + _BODY_ONLY)
LOGGING_OUT = dpop_operation(OptionalBody, LOGOUT_PROOF)
PRESENTING = dpop_operation(description=PRESENTING_PROOF, refuses=False)
DPOP_AUTH_REFUSAL = (
    "a token bound to a DPoP key without a valid proof by it, or a proof or "
    "Authorization: DPoP that does not fit the token: invalid_token or invalid_dpop_proof, "
    "with WWW-Authenticate: DPoP (RFC 9449 section 7.1)"
)

NOT_AUTHENTICATED = "not authenticated"
# Every request with a JSON body: malformed or too big, and the storage may be down.
BODY_RESPONSES = {
    **refusal_spec(
        400,
        "malformed request: not JSON, nested too deeply, not an object, unknown or mistyped fields",
    ),
    **refusal_spec(413, "the body is over 16 KiB"),
    **refusal_spec(415, "the body is not Content-Type: application/json"),
    **UNAVAILABLE,
}
CSRF_RESPONSES = {
    **refusal_spec(403, "CSRF token missing or incorrect, or a foreign Origin"),
    **UNAVAILABLE,
}
UNAUTHENTICATED = refusal_spec(401, f"{NOT_AUTHENTICATED}; or {DPOP_AUTH_REFUSAL}")


def iso_time(timestamp: float) -> str:
    """ISO 8601, UTC."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


def user_out(user: UserRecord) -> UserOut:
    return UserOut(user.id, user.username, user.email, iso_time(user.date_joined))


def session_out(session: SessionInfo, current: str | None) -> SessionOut:
    return SessionOut(
        session.id,
        session.client_id,
        iso_time(session.created_at),
        iso_time(session.last_used_at),
        session.address,
        session.user_agent,
        session.id == current,
    )


def respond(content: Any, status: int = 200, cookies: list[Cookie] | None = None) -> Response[Any]:
    """A /auth answer: never cached."""
    return Response(content, status_code=status, headers=NO_STORE, cookies=cookies or [])
