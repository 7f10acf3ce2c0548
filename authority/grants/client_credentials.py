"""The ``client_credentials`` grant (RFC 6749 section 4.4): a confidential client
acting for itself."""

from __future__ import annotations

import functools

from prometheus_client import Counter

from authority import metrics
from authority.accounts.clients import ClientRecord
from authority.grants.common import (
    Params,
    TokenResponse,
    bearer,
    requested_audience,
    requested_scope,
)
from authority.grants.errors import UnauthorizedClientError
from authority.sessions.service import Authority

GRANT_TYPE = "client_credentials"
PARAMETERS = ("scope", "audience", "resource")


@functools.cache
def _issued() -> Counter:
    """The counter's child of this grant, looked up once (a lock and a tuple a token)."""
    return metrics.TOKENS_ISSUED.labels(GRANT_TYPE)


async def handle(
    auth: Authority, client: ClientRecord, params: Params, address: str
) -> TokenResponse:
    if client.is_public:
        raise UnauthorizedClientError(description="public clients cannot use client_credentials")
    scope = requested_scope(params, client.scopes)
    audience = requested_audience(params, client, auth.settings.audience)
    token = auth.signer.sign(
        auth.keys.signing_key(),
        now=auth.clock(),
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        audience=audience,
        status_idx=await auth.status.allocate_for_client(client.client_id),
    )
    _issued().inc()
    return bearer(token.token, auth.signer.ttl, scope, None)
