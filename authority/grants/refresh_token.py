"""The ``refresh_token`` grant (RFC 6749 section 6), with rotation and reuse detection
(README, "Tokens"): every use hands out a new refresh token, and presenting a
used one revokes the whole session."""

from __future__ import annotations

from authority.accounts.clients import ClientRecord
from authority.grants.common import Params, TokenResponse, bearer, named_audience, parse_scope
from authority.grants.dpop import InvalidDpopProofError
from authority.grants.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
)
from authority.sessions.service import (
    AudienceRefused,
    Authority,
    KeyRefused,
    RefreshRefused,
    ScopeRefused,
    issue_access_token,
    refresh_session,
)
from authority.signing.signer import DPOP_KEY

GRANT_TYPE = "refresh_token"
PARAMETERS = ("refresh_token", "scope", "audience", "resource")


async def handle(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> TokenResponse:
    raw = params.get("refresh_token")
    if raw is None:
        raise InvalidRequestError(description="refresh_token is required")
    scope, audience = parse_scope(params), named_audience(params)
    # RFC 9449 section 5: a public client's refresh tokens are bound to its proof's key.
    jkt = DPOP_KEY.get()
    try:
        session = await refresh_session(
            auth, client.client_id, raw, scope, audience, jkt=jkt, bind_key=client.is_public
        )
    except KeyRefused as exc:
        raise InvalidDpopProofError(description=str(exc)) from None
    except ScopeRefused as exc:
        raise InvalidScopeError(description=str(exc)) from None
    except AudienceRefused as exc:
        raise InvalidTargetError(description=str(exc)) from None
    except RefreshRefused as exc:
        raise InvalidGrantError(description=str(exc)) from None
    granted = " ".join(scope) if scope is not None else session.family.scope
    access = issue_access_token(auth, client.client_id, session, granted)
    return bearer(access.token, auth.signer.ttl, granted, session.refresh_token)
