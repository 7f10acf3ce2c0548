"""The DPoP binding of a refresh family (RFC 9449 section 5; README, "DPoP:
sender-constrained tokens"), decided inside the rotation: a family bound to a key
refreshes only with a proof by that key, and a refusal changes nothing (the token is
not consumed, the family is not revoked: a thief without the key can neither end the
session nor burn the token). A family keeps the key it was first bound to."""

from __future__ import annotations

from sqlalchemy import Connection, column, table, update

REFUSAL = "the refresh token is bound to a DPoP key: send a proof by that key"

# The two columns of ``refresh_families`` named here (as ``one_statement`` names them in
# its SQL): importing the tables would add an import level under ``families``.
_FAMILIES = table("refresh_families", column("id"), column("dpop_jkt"))


def refuses(bound: str | None, jkt: str | None) -> bool:
    """Whether a family bound to ``bound`` refuses a request proved by ``jkt``."""
    return bound is not None and bound != jkt


def bind(
    conn: Connection, family_id: str, bound: str | None, jkt: str | None, wanted: bool
) -> None:
    """Bind an unbound family to ``jkt`` when ``wanted`` (a public client's or a body
    session's refresh with a proof); nothing otherwise, and no statement."""
    if wanted and jkt is not None and bound is None:
        c = _FAMILIES.c
        conn.execute(
            update(_FAMILIES).where(c.id == family_id, c.dpop_jkt.is_(None)).values(dpop_jkt=jkt)
        )
