"""Ending a browser's login session (OpenID Connect RP-Initiated Logout 1.0): the
``/auth`` session and every session that codes issued in it opened."""

from __future__ import annotations

from sqlalchemy import Connection

from authority.authorization.codes import families_of_browser_session
from authority.sessions.lifecycle import end_sessions


def end_browser_session(conn: Connection, browser_session: str, now: float) -> list[str]:
    """Revoke the browser's session and the apps' sessions born in it; their ids."""
    ended: list[str] = []
    for family_id in [browser_session, *families_of_browser_session(conn, browser_session)]:
        ended += end_sessions(conn, "logout", now, family_id=family_id)
    return ended
