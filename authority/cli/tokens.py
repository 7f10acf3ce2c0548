"""``authority tokens``: prune dead refresh tokens (and audit events past their
retention), revoke a user's sessions."""

from __future__ import annotations

import time
from typing import Any

import click

from authority.cli.common import console, existing_user, json_option, run_command, with_database
from authority.sessions.lifecycle import end_sessions
from authority.sessions.pruning import prune_events, prune_tokens
from authority.settings import Settings
from authority.storage.database import Database


@click.group()
def tokens() -> None:
    """Refresh token sessions: prune, revoke."""


@tokens.command("prune")
@json_option
def tokens_prune(as_json: bool) -> None:
    """Delete expired families, expired consumed tokens and expired revocations, and
    audit events older than AUDIT_RETENTION; in short batches, safe while serving."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        return {
            "deleted": await prune_tokens(db, time.time),
            "audit_events_deleted": await prune_events(db, time.time, settings.audit_retention),
        }

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"deleted {r['deleted']} token row(s) and {r['audit_events_deleted']} audit "
            "event(s) older than AUDIT_RETENTION"
        ),
    )


@tokens.command("revoke")
@click.option("--user", "username", required=True, help="Revoke every session of this user.")
@json_option
def tokens_revoke(username: str, as_json: bool) -> None:
    """Revoke every refresh token family (session) of a user."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user = await existing_user(db, username)
        revoked = await db.write(end_sessions, "revoked by operator", time.time(), user_id=user.id)
        return {"username": user.username, "sessions_revoked": len(revoked)}

    run_command(
        as_json,
        with_database(body),
        lambda r: console.print(
            f"revoked {r['sessions_revoked']} session(s) of [bold]{r['username']}[/]"
        ),
    )
