"""The ``authorization_code`` grant (RFC 6749 section 4.1.3) with PKCE (RFC 7636,
S256 only) and OpenID Connect's ID token (Core 1.0 section 3.1.3.3).

The code is redeemed in one transaction (``authority.authorization.codes``): a code
presented twice is ``invalid_grant`` and revokes the session it opened. The session is
a refresh family like any other (rotation, reuse detection, grace and pruning apply);
its refresh token is handed out only when the client may use ``refresh_token``. A code
whose request named ``dpop_jkt`` (RFC 9449 section 10) is exchanged only with a DPoP
proof by that key (checked at the token endpoint: ``DPOP_KEY``)."""

from __future__ import annotations

from authority import metrics
from authority.accounts.clients import ClientRecord
from authority.accounts.users import get_user
from authority.authorization.codes import NewSession, parse_code, redeem_code
from authority.authorization.id_tokens import sign_id_token
from authority.grants.common import Params, TokenResponse, bearer, named_audience, parse_scope
from authority.grants.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
)
from authority.sessions.refresh_tokens import new_refresh_token
from authority.sessions.service import Authority, Session, issue_access_token
from authority.signing.signer import DPOP_KEY
from authority.storage import audit

GRANT_TYPE = "authorization_code"
PARAMETERS = ("code", "redirect_uri", "code_verifier", "scope", "resource")

REFUSALS = {
    "unknown": "authorization code is invalid",
    "replayed": "authorization code was already used; what it issued has been revoked",
    "expired": "authorization code has expired",
    "foreign": "authorization code was issued to another client",
    "redirect": "redirect_uri differs from the authorization request's",
    "verifier": "code_verifier is missing or does not match the code_challenge",
    "dpop": "the code is bound to a DPoP key (dpop_jkt): a DPoP proof by that key is required",
}


async def handle(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> TokenResponse:
    code = params.get("code")
    if code is None:
        raise InvalidRequestError(description="code is required")
    scope, resource = parse_scope(params), named_audience(params)
    code_hash = parse_code(code)
    if code_hash is None:
        raise InvalidGrantError(description=REFUSALS["unknown"])
    refresh, refresh_hash = new_refresh_token()
    request = audit.current_request()
    settings = auth.settings
    status_idx = await auth.status.allocate()
    redemption = await auth.db.write(
        redeem_code,
        code_hash,
        client_id=client.client_id,
        redirect_uri=params.get("redirect_uri"),
        verifier=params.get("code_verifier"),
        now=auth.clock(),
        session=NewSession(
            refresh_hash,
            settings.refresh_ttl,
            settings.refresh_family_ttl,
            status_idx,
            request.address if request else None,
            request.user_agent if request else None,
        ),
        scope=scope,
        resource=resource,
        dpop_jkt=DPOP_KEY.get(),
    )
    grant, family = redemption.grant, redemption.family
    if redemption.outcome == "scope":
        raise InvalidScopeError(description="requested scope exceeds what was authorized")
    if redemption.outcome == "target":
        raise InvalidTargetError(description="resource differs from the authorization's")
    if redemption.outcome != "ok" or grant is None or family is None:
        raise InvalidGrantError(description=REFUSALS[redemption.outcome])
    session = Session(family, refresh, redemption.refresh_expires_at, status_idx)
    access = issue_access_token(auth, client.client_id, session, family.scope)
    metrics.TOKENS_ISSUED.labels(GRANT_TYPE).inc()
    response = bearer(
        access.token,
        auth.signer.ttl,
        family.scope,
        refresh if "refresh_token" in client.grant_types else None,
    )
    scopes = set(family.scope.split())
    if "openid" in scopes:
        user = await auth.db.read(get_user, grant.user_id)
        if user is None:
            raise InvalidGrantError(description=REFUSALS["unknown"])
        response.id_token = sign_id_token(
            auth.keys.signing_key(),
            issuer=settings.issuer,
            client_id=client.client_id,
            now=auth.clock(),
            ttl=settings.access_ttl,
            user=user,
            scopes=scopes,
            auth_time=grant.auth_time,
            nonce=grant.nonce,
            sid=grant.browser_session,
            access_token=access.token,
        )
    return response
