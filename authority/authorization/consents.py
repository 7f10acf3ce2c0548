"""Consents (README, "Log in an app on another origin"): the scopes a user allowed a
client that is not first-party, remembered per user and client; a later request is
covered when it asks for no scope beyond them. A user lists and withdraws them at
``/auth/consents``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from authority.storage.tables import Client, Consent


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    client_id: str
    client_name: str
    scopes: tuple[str, ...]
    granted_at: float


def consented_scopes(conn: Connection, user_id: int, client_id: str) -> set[str] | None:
    scope = conn.execute(
        select(Consent.scope).where(Consent.user_id == user_id, Consent.client_id == client_id)
    ).scalar()
    return set(scope.split()) if scope is not None else None


def grant_consent(
    conn: Connection, user_id: int, client_id: str, scopes: set[str], now: float
) -> None:
    """Remember that the user allowed ``scopes`` (added to what it allowed before)."""
    before = consented_scopes(conn, user_id, client_id)
    scope = " ".join(sorted(scopes | (before or set())))
    if before is None:
        conn.execute(
            insert(Consent).values(
                user_id=user_id, client_id=client_id, scope=scope, granted_at=now
            )
        )
        return
    conn.execute(
        update(Consent)
        .where(Consent.user_id == user_id, Consent.client_id == client_id)
        .values(scope=scope, granted_at=now)
    )


def list_consents(conn: Connection, user_id: int) -> list[ConsentRecord]:
    rows = conn.execute(
        select(Consent.client_id, Client.name, Consent.scope, Consent.granted_at)
        .join(Client, Client.client_id == Consent.client_id)
        .where(Consent.user_id == user_id)
        .order_by(Consent.granted_at)
    )
    return [ConsentRecord(r.client_id, r.name, tuple(r.scope.split()), r.granted_at) for r in rows]


def withdraw_consent(conn: Connection, user_id: int, client_id: str) -> bool:
    """Forget the user's consent to ``client_id``; False when there was none."""
    return bool(
        conn.execute(
            delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id)
        ).rowcount
    )
