"""``authority events`` reads the audit trail (SPEC section 12): newest first, filtered by
age, user, client and type, as a table or one JSON document; a bad filter is one line.

Users and clients are made with the ``authority`` command itself; the events are
stored with ``audit.record`` (as the services do) at chosen times. Other commands may
record events of their own, so every check names the events it looks for."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection

from authority.cli.main import main
from authority.storage import audit
from authority.storage.database import Database
from authority.storage.migrate import upgrade


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, input=stdin, prog_name="authority")
    return result.exit_code, result.stdout, result.stderr


def record(url: str, *events: dict[str, Any]) -> None:
    """Store each event as a request with its ``request_id`` and ``address`` would."""

    async def go() -> None:
        db = Database(url)
        try:
            for event in events:
                info = audit.RequestInfo(event.pop("request_id"), event.pop("address"), "ua/1")
                with audit.request_scope(info):
                    await db.write(store, event)
        finally:
            await db.dispose()

    asyncio.run(go())


def store(conn: Connection, event: dict[str, Any]) -> None:
    audit.record(conn, **event)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    upgrade(url)
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": url,
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


@pytest.fixture
def trail(env: dict[str, str]) -> dict[str, Any]:
    """alice, the client "billing", and four events of theirs spread over ten days
    (10 s, 20 min, 5 h and 10 days old)."""
    now = time.time()
    password = secrets.token_urlsafe(18)
    code, out, err = run(
        env, "users", "create", "alice", "--email", "a@example.com", "--password-stdin",
        "--json", stdin=password + "\n",
    )  # fmt: skip
    assert code == 0, err
    alice = json.loads(out)["id"]
    code, out, err = run(env, "clients", "create", "billing", "--json")
    assert code == 0, err
    billing = json.loads(out)["client_id"]
    record(
        env["AUTHORITY_DATABASE_URL"],
        {"type": "login.failed", "at": now - 10 * 86400, "user_id": alice, "username": "alice",
         "detail": {"reason": "bad password"}, "request_id": "r-old", "address": "192.0.2.1"},
        {"type": "login.succeeded", "at": now - 5 * 3600, "user_id": alice, "username": "alice",
         "client_id": billing, "request_id": "r-login", "address": "192.0.2.2"},
        {"type": "client.secret_rotated", "at": now - 1200, "client_id": billing,
         "detail": {"overlap": 3600}, "request_id": "r-rotate", "address": None},
        {"type": "login.failed", "at": now - 10, "username": "mallory",
         "detail": {"reason": "[bold red]no such user[/]"}, "request_id": "r-new",
         "address": "198.51.100.7"},
    )  # fmt: skip
    return {"alice": alice, "billing": billing, "now": now}


def listed(env: dict[str, str], *args: str) -> list[str]:
    """The request ids of the events ``authority events ARGS --json`` lists, in order."""
    code, out, err = run(env, "events", *args, "--json")
    assert code == 0, err
    return [e["request_id"] for e in json.loads(out)["events"] if e["request_id"]]


def test_events_come_newest_first_as_one_json_document(
    env: dict[str, str], trail: dict[str, Any]
) -> None:
    code, out, err = run(env, "events", "--json")
    assert code == 0, err
    events = [e for e in json.loads(out)["events"] if e["request_id"]]
    assert [e["request_id"] for e in events] == ["r-new", "r-rotate", "r-login", "r-old"]
    login = events[2]
    assert login["type"] == "login.succeeded"
    assert login["username"] == "alice"
    assert login["client_id"] == trail["billing"]
    assert login["address"] == "192.0.2.2"
    assert login["at"] == pytest.approx(trail["now"] - 5 * 3600)
    shown = datetime.fromisoformat(login["time"])  # ISO 8601, in UTC
    assert shown.utcoffset() == timedelta(0)
    assert abs(shown.timestamp() - login["at"]) < 1
    assert events[1]["detail"] == {"overlap": 3600}


def test_events_are_filtered_by_age_user_client_and_type(
    env: dict[str, str], trail: dict[str, Any]
) -> None:
    assert listed(env, "--since", "6h") == ["r-new", "r-rotate", "r-login"]
    assert listed(env, "--since", "30m") == ["r-new", "r-rotate"]
    assert listed(env, "--since", "2m") == ["r-new"]
    assert listed(env, "--since", "300s") == ["r-new"]
    assert listed(env, "--since", "11d")[-1] == "r-old"
    assert listed(env, "--user", "alice") == ["r-login", "r-old"]
    assert listed(env, "--client", "billing") == ["r-rotate", "r-login"]
    assert listed(env, "--client", trail["billing"]) == ["r-rotate", "r-login"]
    assert listed(env, "--type", "login.failed") == ["r-new", "r-old"]
    assert listed(env, "--type", "login.failed", "--user", "alice") == ["r-old"]
    assert listed(env, "--type", "login.failed", "--limit", "1") == ["r-new"]


def test_the_table_shows_every_column_and_prints_details_as_they_are(
    env: dict[str, str], trail: dict[str, Any]
) -> None:
    code, out, err = run(env, "events", "--since", "6h")
    assert code == 0, err
    for heading in ("time", "type", "user", "client", "address", "request id", "detail"):
        assert heading in out
    rows = [line for line in out.splitlines() if "r-" in line]
    assert [row.split("│")[6].strip() for row in rows] == ["r-new", "r-rotate", "r-login"]
    assert "reason=[bold red]no such user[/]" in out  # not taken for rich markup
    assert "overlap=3600" in out
    assert "198.51.100.7" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--type", "login.failure"), "the types are login.succeeded, login.failed, "),
        (("--since", "7 days"), "not a duration like 90s, 30m, 24h or 7d"),
        (("--since", "1w"), "not a duration like"),
        (("--user", "bob"), "no user 'bob'"),
        (("--client", "payroll"), "no client 'payroll'"),
        (("--limit", "0"), "'--limit'"),
    ],
)
def test_a_bad_filter_is_one_line_and_exit_status_1(
    env: dict[str, str], trail: dict[str, Any], args: tuple[str, ...], says: str
) -> None:
    code, out, err = run(env, "events", *args)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert says in err
    code, out, _ = run(env, "events", *args, "--json")
    assert code == 1
    assert says in json.loads(out)["error"]


def test_every_event_type_is_listed_in_the_error() -> None:
    code, _, err = run({"AUTHORITY_ENV": "test"}, "events", "--type", "x")
    assert code == 1
    assert all(kind in err for kind in audit.EVENT_TYPES)


def test_a_deleted_clients_events_are_found_by_its_client_id(
    env: dict[str, str], trail: dict[str, Any]
) -> None:
    record(
        env["AUTHORITY_DATABASE_URL"],
        {"type": "client.deleted", "at": time.time(), "client_id": "gone-client-id",
         "request_id": "r-deleted", "address": None},
    )  # fmt: skip
    assert listed(env, "--client", "gone-client-id") == ["r-deleted"]
