"""What the token endpoint benchmarks share: an authority work directory with a
confidential client, a user and a public client made with the ``authority`` CLI, and
a fast way to fill its SQLite database with refresh tokens (direct SQL, server stopped).

Every ``authority`` process of a benchmark (setup, CLI, server) gets the same
``AUTHORITY_SECRET_KEY``, so the client secret hashed by the CLI matches at the server.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Server, authority_cli, authority_env, baseline, free_port, server

USERNAME = "bench"
EMAIL = "bench@example.com"
DB_FILE = "var/authority.db"


@dataclass(frozen=True)
class Deployment:
    """An authority work directory after ``authority setup``."""

    workdir: Path
    env: dict[str, str]

    def serve(
        self, port: int, name: str = "authority", **env: str
    ) -> contextlib.AbstractContextManager[Server]:
        """``authority serve`` in the work directory (plus ``AUTHORITY_*`` in ``env``)."""
        return server(
            name,
            [sys.executable, "-m", "authority", "serve", "--port", str(port)],
            port=port,
            ready_path="/health/ready",
            cwd=self.workdir,
            env={**self.env, **env},
        )

    def cli(self, *args: str, stdin: str | None = None) -> Any:
        return authority_cli(self.workdir, self.env, *args, stdin=stdin)

    @property
    def database(self) -> Path:
        return self.workdir / DB_FILE

    def confidential_client(self) -> tuple[str, str]:
        """``authority clients create svc``: (client_id, client_secret)."""
        made = self.cli("clients", "create", "svc")
        return made["client_id"], made["client_secret"]

    def user_and_public_client(self) -> tuple[str, str, str]:
        """A user and a public client allowed the password and refresh_token grants:
        (username, password, client_id)."""
        password = secrets.token_urlsafe(16)
        self.cli("users", "create", USERNAME, "--email", EMAIL, "--password-stdin", stdin=password)
        made = self.cli(
            "clients",
            "create",
            "app",
            "--public",
            "--grant",
            "password",
            "--grant",
            "refresh_token",
        )
        return USERNAME, password, made["client_id"]

    def copy_database(self, name: str) -> Path:
        """A consistent copy of the database (SQLite backup API) as ``var/NAME``."""
        target = self.workdir / "var" / name
        src, dst = sqlite3.connect(self.database), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        return target


# The login throttle takes a slot per attempt before hashing and gives it back on
# success, so dozens of chains logging the one bench user in at once would be refused:
# the benchmarks measure refresh, not the throttle.
NO_LOGIN_THROTTLE = {
    "AUTHORITY_LOGIN_MAX_FAILURES_ACCOUNT": "1000000",
    "AUTHORITY_LOGIN_MAX_FAILURES_ADDRESS": "1000000",
}


def deployment(workdir: Path, **env: str) -> Deployment:
    """``authority setup`` in ``workdir`` with a fresh secret key, without login
    throttling (plus ``env``)."""
    environment = authority_env(
        AUTHORITY_SECRET_KEY=secrets.token_urlsafe(48), **{**NO_LOGIN_THROTTLE, **env}
    )
    authority_cli(workdir, environment, "setup")
    return Deployment(workdir, environment)


def rs256_baseline(
    tmp: Path, issuer_port: int, client_id: str, alg: str = "RS256", workers: int | None = None
) -> contextlib.AbstractContextManager[Server]:
    """The bare signing endpoint (RS256, or ``alg``), signing tokens shaped like ours."""
    return baseline(
        tmp,
        free_port(),
        "bench.baseline_apps:rs256_token",
        ready_path="/health",
        workers=workers,
        BENCH_ALG=alg,
        BENCH_ISSUER=f"http://127.0.0.1:{issuer_port}",
        BENCH_CLIENT_ID=client_id,
    )


def database_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


def basic_auth(client_id: str, secret: str) -> str:
    # token_urlsafe characters need no form-urlencoding (RFC 6749 section 2.3.1)
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# --- filling the database ------------------------------------------------------------

DAY = 86400.0


def fill(
    db: Path,
    *,
    user_id: int,
    client_id: str,
    families: int,
    tokens_per_family: int,
    kind: str,
    now: float | None = None,
) -> int:
    """Insert ``families`` refresh families of ``tokens_per_family`` tokens each, as
    rotation leaves them (a chain of consumed tokens, each the parent of the next), with
    random 32-byte hashes. Returns the number of rows inserted (tokens + families).

    ``kind`` says what state they are in:

    - ``live``: the family and its newest token are valid, older tokens consumed but not
      yet expired (nothing to prune);
    - ``expired_families``: the family's absolute expiry has passed (prune deletes it
      and all its tokens);
    - ``expired_tokens``: the family is valid, its newest token too, and the older
      tokens are consumed and expired (prune deletes those one by one): a long session.

    Run it with the server stopped: one transaction, synchronous=OFF, big page cache.
    """
    now = time.time() if now is None else now
    if kind == "live":
        family_created, family_expires = now - DAY, now + 29 * DAY
        old_expires, old_consumed, newest_expires = now + 6 * DAY, now - DAY / 2, now + 7 * DAY
    elif kind == "expired_families":
        family_created, family_expires = now - 31 * DAY, now - DAY
        old_expires, old_consumed, newest_expires = now - 2 * DAY, now - 9 * DAY, now - DAY
    elif kind == "expired_tokens":
        family_created, family_expires = now - 20 * DAY, now + 10 * DAY
        old_expires, old_consumed, newest_expires = now - DAY, now - 8 * DAY, now + 7 * DAY
    else:
        raise ValueError(f"unknown kind {kind!r}")
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
        conn.execute("PRAGMA foreign_keys=OFF")
        next_id = (conn.execute("SELECT max(id) FROM refresh_tokens").fetchone()[0] or 0) + 1
        family_ids = [secrets.token_urlsafe(16) for _ in range(families)]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO refresh_families (id, user_id, client_id, scope, audience, "
            "created_at, expires_at) VALUES (?, ?, ?, '', 'default', ?, ?)",
            ((fid, user_id, client_id, family_created, family_expires) for fid in family_ids),
        )

        def tokens() -> Iterator[tuple[Any, ...]]:
            token_id = next_id
            for fid in family_ids:
                parent = None
                for i in range(tokens_per_family):
                    newest = i == tokens_per_family - 1
                    yield (
                        token_id,
                        os.urandom(32),
                        fid,
                        parent,
                        family_created,
                        newest_expires if newest else old_expires,
                        None if newest else old_consumed,
                    )
                    parent, token_id = token_id, token_id + 1

        conn.executemany(
            "INSERT INTO refresh_tokens (id, token_hash, family_id, parent_id, created_at, "
            "expires_at, consumed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            tokens(),
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return families * (tokens_per_family + 1)


def ids(db: Path) -> tuple[int, str]:
    """The id of the bench user and the client_id of the public client."""
    conn = sqlite3.connect(db)
    try:
        user_id = conn.execute("SELECT id FROM users WHERE username = ?", (USERNAME,)).fetchone()[0]
        client_id = conn.execute(
            "SELECT client_id FROM clients WHERE secret_hash IS NULL"
        ).fetchone()[0]
    finally:
        conn.close()
    return int(user_id), str(client_id)


def count_rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("refresh_families", "refresh_tokens")
        }
    finally:
        conn.close()


def count_due(db: Path, now: float | None = None) -> int:
    """Rows that ``authority tokens prune`` would delete now: expired families with
    their tokens, and consumed tokens past their expiry."""
    now = time.time() if now is None else now
    conn = sqlite3.connect(db)
    try:
        families, family_tokens = conn.execute(
            "SELECT count(*), coalesce(sum((SELECT count(*) FROM refresh_tokens t "
            "WHERE t.family_id = f.id)), 0) FROM refresh_families f WHERE f.expires_at <= ?",
            (now,),
        ).fetchone()
        used = conn.execute(
            "SELECT count(*) FROM refresh_tokens t JOIN refresh_families f "
            "ON f.id = t.family_id WHERE f.expires_at > ? AND t.consumed_at IS NOT NULL "
            "AND t.expires_at <= ?",
            (now, now),
        ).fetchone()[0]
    finally:
        conn.close()
    return int(families) + int(family_tokens) + int(used)
