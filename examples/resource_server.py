"""A resource server protected by the authority's offline verifier.

    make examples    # once: what it needs, in the project's virtualenv
    AUTHORITY_ISSUER=http://127.0.0.1:8000 .venv/bin/python examples/resource_server.py

Environment: ``AUTHORITY_ISSUER`` (required: the authority's issuer URL),
``AUTHORITY_AUDIENCE`` (default ``default``: the ``aud`` this API accepts),
``HOST`` and ``PORT`` (default ``127.0.0.1:8001``).

    GET /health   public
    GET /me       any valid access token: its claims
    GET /orders   a token with the scope ``orders:read``
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import uvicorn
from litestar import Litestar, Request, get

from authority.verifier import InvalidToken, Verifier
from authority.verifier.litestar import BearerAuth, requires_scope

log = logging.getLogger("resource_server")


@get("/health", opt={"no_auth": True})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/me")
async def me(request: Request[Any, dict[str, Any], Any]) -> dict[str, Any]:
    return request.auth


@get("/orders", guards=[requires_scope("orders:read")])
async def orders(request: Request[Any, dict[str, Any], Any]) -> dict[str, Any]:
    return {"client_id": request.auth["client_id"], "orders": [{"id": 1, "total": "9.90"}]}


def create_app(issuer: str, audience: str) -> Litestar:
    verifier = Verifier(issuer, audience)

    async def warm_up() -> None:
        """Fetch the keys at startup; if the authority is down, the first request will."""
        try:
            await verifier.aload_keys()
        except InvalidToken as exc:  # KeysUnavailable, or IssuerMismatch (a wrong issuer)
            log.warning("signing keys not loaded yet: %s", exc)

    return Litestar([health, me, orders], plugins=[BearerAuth(verifier)], on_startup=[warm_up])


def main() -> int:
    issuer = os.environ.get("AUTHORITY_ISSUER")
    if not issuer:
        print("resource_server: set AUTHORITY_ISSUER to the authority's URL", file=sys.stderr)
        return 2
    app = create_app(issuer, os.environ.get("AUTHORITY_AUDIENCE", "default"))
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8001")),
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
