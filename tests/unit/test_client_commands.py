"""``authority clients`` as an operator runs it (README, "Command line"): unique names,
``show``, ``rotate-secret``, ``disable``, ``enable``, ``delete``; one line per error,
one JSON document under ``--json``, an audit event per change and never a secret in
the output, the audit trail or the log."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Connection, select

from authority.accounts.clients import ClientNameTaken, create_client
from authority.accounts.users import create_user
from authority.cli.main import main
from authority.sessions.families import start_family
from authority.storage.database import Database
from authority.storage.tables import AuditEvent, Client, RefreshFamily, RefreshToken

SECRET_KEY = "k" * 40


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": sqlite_url,
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY": SECRET_KEY,
        "AUTHORITY_AUDIENCE": "api://authority",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, prog_name="authority")
    return result.exit_code, result.stdout, result.stderr


def ok(env: dict[str, str], *args: str) -> Any:
    code, out, err = run(env, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line_error(env: dict[str, str], *args: str) -> str:
    """The error of a command that must fail: exit 1, one line, and the same under --json."""
    code, out, err = run(env, *args)
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    code, out, _ = run(env, *args, "--json")
    assert code == 1
    assert json.loads(out)["error"] == err.removeprefix("error: ").strip()
    return err.removeprefix("error: ").strip()


def rows(url: str, table: Any) -> list[Any]:
    """Every row of ``table``, read through a new connection of its own."""

    async def read() -> list[Any]:
        db = Database(url)
        try:
            return await db.read(lambda conn: list(conn.execute(select(table))))
        finally:
            await db.dispose()

    return asyncio.run(read())


def events(url: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [
        (e.type, e.client_id, json.loads(e.detail))
        for e in sorted(rows(url, AuditEvent.__table__), key=lambda e: e.id)
    ]


def test_a_taken_client_name_is_one_line_and_changes_nothing(
    env: dict[str, str], sqlite_url: str
) -> None:
    first = ok(env, "clients", "create", "billing")
    before = rows(sqlite_url, Client.__table__)
    assert one_line_error(env, "clients", "create", "billing", "--public") == (
        "a client named 'billing' already exists"
    )
    # A name is never another client's id either: commands accept both.
    assert one_line_error(env, "clients", "create", first["client_id"]) == (
        f"a client named {first['client_id']!r} already exists"
    )
    assert rows(sqlite_url, Client.__table__) == before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("", "--public"), "a client name is 1 to 200 characters"),
        (("x" * 201,), "a client name is 1 to 200 characters"),
        (("bad\tname",), "a client name cannot hold control characters"),
        ((" billing",), "a client name cannot begin or end with a space"),
        (("svc", "--audience", "two words"), "invalid audience 'two words': no spaces"),
    ],
)
def test_a_bad_client_name_or_audience_is_one_line(
    env: dict[str, str], sqlite_url: str, args: tuple[str, ...], says: str
) -> None:
    before = rows(sqlite_url, Client.__table__)
    assert one_line_error(env, "clients", "create", *args) == says
    assert rows(sqlite_url, Client.__table__) == before


async def test_the_database_decides_which_of_two_concurrent_creations_gets_the_name(
    migrated_url: str,
) -> None:
    """Two writers, each with its own connections, race for one name: one wins, the
    other is told the name is taken (the unique constraint, not a check before)."""
    writers = [Database(migrated_url), Database(migrated_url)]
    try:
        outcomes = await asyncio.gather(
            *(
                db.write(
                    create_client,
                    name="race",
                    secret_hash=None,
                    grant_types=["refresh_token"],
                    scopes=[],
                    audiences=[],
                    now=time.time(),
                )
                for db in writers
            ),
            return_exceptions=True,
        )
        named = await writers[0].read(
            lambda conn: conn.execute(select(Client.client_id).where(Client.name == "race")).all()
        )
    finally:
        for db in writers:
            await db.dispose()
    assert sorted(type(o).__name__ for o in outcomes) == ["ClientNameTaken", "ClientRecord"]
    assert str(next(o for o in outcomes if isinstance(o, ClientNameTaken))) == (
        "a client named 'race' already exists"
    )
    assert len(named) == 1


def test_clients_show_describes_a_client_by_name_or_id_and_never_its_secret(
    env: dict[str, str], sqlite_url: str
) -> None:
    created = ok(
        env,
        "clients",
        "create",
        "orders",
        "--scope",
        "orders:read",
        "--audience",
        "api://orders",
        "--audience",
        "api://stock",
    )
    shown = ok(env, "clients", "show", "orders")
    assert ok(env, "clients", "show", created["client_id"]) == shown
    created_at = datetime.fromisoformat(shown.pop("created_at"))
    assert abs(created_at.timestamp() - time.time()) < 60
    assert created_at.utcoffset() == timedelta(0)
    assert shown == {
        "client_id": created["client_id"],
        "name": "orders",
        "public": False,
        "grant_types": ["client_credentials"],
        "scopes": ["orders:read"],
        "audiences": ["api://orders", "api://stock"],
        "default_audience": "api://orders",
        "active": True,
        "previous_secret_valid_until": None,
        "first_party": False,
        "redirect_uris": [],
        "post_logout_redirect_uris": [],
    }
    ok(env, "clients", "create", "spa", "--public")
    assert ok(env, "clients", "show", "spa")["default_audience"] == "api://authority"
    code, text, _ = run(env, "clients", "show", "orders")
    assert code == 0
    assert "api://stock" in text
    (stored,) = [r for r in rows(sqlite_url, Client.__table__) if r.name == "orders"]
    for output in (text, json.dumps(shown)):
        assert created["client_secret"] not in output
        assert stored.secret_hash.hex() not in output
    assert one_line_error(env, "clients", "show", "nope") == "no client 'nope'"


def test_rotate_secret_prints_the_new_secret_once_and_when_the_old_one_stops(
    env: dict[str, str], sqlite_url: str
) -> None:
    created = ok(env, "clients", "create", "billing")
    rotated = ok(env, "clients", "rotate-secret", "billing", "--overlap", "3600")
    assert set(rotated) == {"client_id", "name", "client_secret", "previous_secret_valid_until"}
    assert rotated["client_id"] == created["client_id"]
    assert len(rotated["client_secret"]) >= 43
    assert rotated["client_secret"] != created["client_secret"]
    until = datetime.fromisoformat(rotated["previous_secret_valid_until"]).timestamp()
    assert 3540 < until - time.time() <= 3600
    assert (
        ok(env, "clients", "show", "billing")["previous_secret_valid_until"]
        == (rotated["previous_secret_valid_until"])
    )
    again = ok(env, "clients", "rotate-secret", created["client_id"])  # default: no overlap
    assert again["previous_secret_valid_until"] is None
    assert ok(env, "clients", "show", "billing")["previous_secret_valid_until"] is None
    (stored,) = [r for r in rows(sqlite_url, Client.__table__) if r.name == "billing"]
    assert (stored.previous_secret_hash, stored.previous_secret_until) == (None, None)


def test_rotate_secret_refuses_a_public_client_and_an_overlap_over_30_days(
    env: dict[str, str], sqlite_url: str
) -> None:
    ok(env, "clients", "create", "spa", "--public")
    ok(env, "clients", "create", "billing")
    before = rows(sqlite_url, Client.__table__)
    assert one_line_error(env, "clients", "rotate-secret", "spa") == (
        "'spa' is a public client: it has no secret"
    )
    too_long = one_line_error(env, "clients", "rotate-secret", "billing", "--overlap", "2592001")
    assert "2592001 is not in the range 0<=x<=2592000" in too_long
    assert "is not in the range" in one_line_error(
        env, "clients", "rotate-secret", "billing", "--overlap", "-1"
    )
    assert one_line_error(env, "clients", "rotate-secret", "nope") == "no client 'nope'"
    assert rows(sqlite_url, Client.__table__) == before
    assert [e[0] for e in events(sqlite_url)] == ["client.created", "client.created"]


def open_session(url: str, client_id: str) -> None:
    """A user's login session (refresh family, one token) at ``client_id``."""

    async def write() -> None:
        db = Database(url)
        try:
            await db.write(_session, client_id)
        finally:
            await db.dispose()

    asyncio.run(write())


def _session(conn: Connection, client_id: str) -> None:
    user = create_user(
        conn, username="alice", email="alice@example.com", password_hash="-", now=time.time()
    )
    start_family(
        conn,
        user_id=user.id,
        username=user.username,
        client_id=client_id,
        scope="",
        audience="default",
        token_hash=client_id.encode().ljust(32, b"-")[:32],
        now=time.time(),
        refresh_ttl=3600,
        family_ttl=7200,
    )


def test_disable_enable_and_delete_with_one_audit_event_each_and_no_secret(
    env: dict[str, str], sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    svc = ok(env, "clients", "create", "svc", "--grant", "password", "--grant", "refresh_token")
    rotated = ok(env, "clients", "rotate-secret", "svc", "--overlap", "60")
    open_session(sqlite_url, svc["client_id"])

    assert ok(env, "clients", "disable", "svc") == {
        "client_id": svc["client_id"],
        "name": "svc",
        "active": False,
        "sessions_revoked": 1,
    }
    (family,) = rows(sqlite_url, RefreshFamily.__table__)
    assert family.revoked_at is not None
    assert family.revoke_reason == "client_disabled"
    assert ok(env, "clients", "show", "svc")["active"] is False
    # Disabling again changes nothing and records nothing.
    assert ok(env, "clients", "disable", "svc")["sessions_revoked"] == 0
    assert ok(env, "clients", "enable", "svc") == {
        "client_id": svc["client_id"],
        "name": "svc",
        "active": True,
    }
    assert rows(sqlite_url, RefreshFamily.__table__)[0].revoked_at == family.revoked_at

    assert ok(env, "clients", "delete", "svc") == {
        "client_id": svc["client_id"],
        "name": "svc",
        "deleted": True,
    }
    # Its sessions and their refresh tokens went with it.
    assert rows(sqlite_url, RefreshFamily.__table__) == []
    assert rows(sqlite_url, RefreshToken.__table__) == []
    assert one_line_error(env, "clients", "show", "svc") == "no client 'svc'"

    trail = events(sqlite_url)
    assert [(kind, client_id) for kind, client_id, _ in trail] == [
        (kind, svc["client_id"])
        for kind in (
            "client.created",
            "client.secret_rotated",
            "client.disabled",
            "client.enabled",
            "client.deleted",
        )
    ]
    assert all(detail == {"name": "svc"} for _, _, detail in trail)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (svc["client_secret"], rotated["client_secret"]):
        assert secret not in json.dumps(trail)
        assert secret not in logged
    assert logged.count('"type":"client.') == len(trail)


def test_the_built_in_client_of_auth_cannot_be_disabled_or_deleted(
    env: dict[str, str], sqlite_url: str
) -> None:
    before = rows(sqlite_url, Client.__table__)
    for command, says in (
        ("disable", "disabled (disable its users instead)"),
        ("delete", "deleted"),
    ):
        assert one_line_error(env, "clients", command, "authority-web") == (
            f"authority-web is the built-in client of /auth: it cannot be {says}"
        )
    assert rows(sqlite_url, Client.__table__) == before
    assert events(sqlite_url) == []
