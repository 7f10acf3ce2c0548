"""``authority events``: read the audit trail (README, "Audit events"), newest first."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from authority.accounts.clients import find_client
from authority.cli.common import (
    CommandError,
    console,
    existing_user,
    json_option,
    run_command,
    when,
    with_database,
)
from authority.settings import Settings
from authority.storage import audit
from authority.storage.database import Database

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LIMIT = 10000


class Duration(click.ParamType[int]):
    """``90s``, ``30m``, ``24h``, ``7d``: seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        found = re.fullmatch(r"(\d{1,9})([smhd])", str(value).strip())
        if found is None:
            self.fail(f"{value!r} is not a duration like 90s, 30m, 24h or 7d", param, ctx)
        return int(found[1]) * UNITS[found[2]]


class EventType(click.ParamType[str]):
    """One of ``audit.EVENT_TYPES``; a mistake lists them all on one line."""

    name = "type"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value not in audit.EVENT_TYPES:
            self.fail(
                f"{value!r} is not an event type; the types are {', '.join(audit.EVENT_TYPES)}",
                param,
                ctx,
            )
        return str(value)


async def client_id_of(db: Database, ref: str) -> str:
    """The client named ``ref`` (or whose client_id it is); a deleted client by the
    client_id its events still carry."""
    client = await db.read(find_client, ref)
    if client is not None:
        return client.client_id
    if await db.read(audit.query, audit.Filter(client_id=ref, limit=1)):
        return ref
    raise CommandError(f"no client {ref!r}")


@click.command()
@click.option(
    "--since", type=Duration(), help="Only events of the last DURATION (90s, 30m, 24h, 7d)."
)
@click.option("--user", "username", help="Only events of this user.")
@click.option("--client", "client", help="Only events of this client (name or client_id).")
@click.option("--type", "type_", type=EventType(), help="Only events of this type.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=100,
    show_default=True,
    help="At most this many events, the newest.",
)
@json_option
def events(
    since: int | None,
    username: str | None,
    client: str | None,
    type_: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Security events (logins, sessions, clients, keys), newest first."""

    async def body(settings: Settings, db: Database) -> dict[str, Any]:
        user_id = (await existing_user(db, username)).id if username is not None else None
        client_id = await client_id_of(db, client) if client is not None else None
        which = audit.Filter(
            since=time.time() - since if since is not None else None,
            user_id=user_id,
            client_id=client_id,
            type=type_,
            limit=limit,
        )
        found = await db.read(audit.query, which)
        return {"events": [{**event, "time": when(event["at"])} for event in found]}

    run_command(as_json, with_database(body), show)


def show(result: dict[str, Any]) -> None:
    if not result["events"]:
        console.print("no events")
        return
    table = Table("time", "type", "user", "client", "address", "request id", "detail")
    for event in result["events"]:
        cells = (
            event["time"],
            event["type"],
            event["username"] or "",
            event["client_id"] or "",
            event["address"] or "",
            event["request_id"] or "",
            " ".join(f"{k}={_text(v)}" for k, v in event["detail"].items()),
        )
        table.add_row(*(Text(cell) for cell in cells))  # data, never rich markup
    console.print(table)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
