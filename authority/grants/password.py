"""The ``password`` grant (RFC 6749 section 4.3), legacy: only for clients created with
it allowed. Failed logins are throttled like ``/auth/login``'s."""

from __future__ import annotations

from authority import metrics
from authority.accounts.clients import ClientRecord
from authority.grants.common import (
    Params,
    TokenResponse,
    bearer,
    requested_audience,
    requested_scope,
)
from authority.grants.errors import InvalidGrantError, InvalidRequestError, SlowDownError
from authority.sessions.service import (
    Authority,
    LoginThrottled,
    authenticate,
    issue_access_token,
    open_session,
)

GRANT_TYPE = "password"
PARAMETERS = ("username", "password", "scope", "audience", "resource")


async def handle(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> TokenResponse:
    username, secret = params.get("username"), params.get("password")
    if username is None or secret is None:
        raise InvalidRequestError(description="username and password are required")
    scope = requested_scope(params, client.scopes)
    audience = requested_audience(params, client, auth.settings.audience)
    try:
        user = await authenticate(auth, username, secret, address, client.client_id)
    except LoginThrottled as exc:
        raise SlowDownError(exc.retry_after) from None
    if user is None:
        raise InvalidGrantError(description="invalid username or password")
    metrics.TOKENS_ISSUED.labels(GRANT_TYPE).inc()
    session = await open_session(auth, client.client_id, user, scope, audience)
    access = issue_access_token(auth, client.client_id, session, scope)
    refresh = session.refresh_token if "refresh_token" in client.grant_types else None
    return bearer(access.token, auth.signer.ttl, scope, refresh)
