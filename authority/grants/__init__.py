"""The grant types of the token endpoint (RFC 6749 section 4), one module each.

A grant module declares ``GRANT_TYPE``, the form ``PARAMETERS`` it reads and its
``handle``; this registry feeds the token endpoint's dispatch, the discovery metadata,
the choices of ``authority clients create --grant`` and the OpenAPI form. Adding a
grant is one new module plus one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from authority.accounts.clients import ClientRecord
from authority.grants import authorization_code, client_credentials, password, refresh_token
from authority.grants.common import Params, TokenResponse
from authority.sessions.service import Authority


class Grant(Protocol):
    GRANT_TYPE: str
    PARAMETERS: tuple[str, ...]

    def handle(
        self, auth: Authority, client: ClientRecord, params: Params, address: str
    ) -> Awaitable[TokenResponse]: ...


GRANTS: dict[str, Grant] = {
    grant.GRANT_TYPE: grant
    for grant in (
        client_credentials,
        refresh_token,
        password,
        authorization_code,
    )
}
