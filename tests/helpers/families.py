"""A new refresh family straight through the repository functions, for the tests of
the rotation itself (no HTTP, no grant)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from authority.accounts.clients import create_client
from authority.accounts.users import create_user
from authority.sessions.families import start_family
from authority.sessions.refresh_tokens import new_refresh_token
from authority.storage.database import Database


async def new_family(
    db: Database,
    *,
    now: float,
    refresh_ttl: int,
    family_ttl: int,
    scope: str = "read",
    client_scopes: Sequence[str] = ("read", "write"),
) -> tuple[str, bytes, str]:
    """A user, a client of its own allowed ``refresh_token``, and a family with
    ``scope``: the client's id, the first refresh token's hash and the family's id."""
    stamp = time.monotonic_ns()
    user = await db.write(
        create_user,
        username=f"u{stamp}",
        email=f"{stamp}@example.org",
        password_hash="x",
        now=now,
    )
    client = await db.write(
        create_client,
        name=f"c{stamp}",
        secret_hash=None,
        grant_types=["refresh_token"],
        scopes=list(client_scopes),
        audiences=[],
        now=now,
    )
    _, token_hash = new_refresh_token()
    family, _ = await db.write(
        start_family,
        user_id=user.id,
        username=user.username,
        client_id=client.client_id,
        scope=scope,
        audience="default",
        token_hash=token_hash,
        now=now,
        refresh_ttl=refresh_ttl,
        family_ttl=family_ttl,
    )
    return client.client_id, token_hash, family.id
