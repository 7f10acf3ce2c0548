"""PostgreSQL for the tests: the shared server of ``tests/pg_cluster.sh``, new databases
on it, and a cluster of a test's own to stop and start.

PostgreSQL tests use ``TEST_POSTGRES_URL`` (``tests/pg_cluster.sh`` starts a
throwaway server). Without it they skip, unless ``TEST_REQUIRE_POSTGRES=1``
(set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

from tests.helpers.processes import ROOT, cli_env

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def need_postgres() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if REQUIRE_POSTGRES:
        pytest.fail("TEST_REQUIRE_POSTGRES=1 but TEST_POSTGRES_URL is unset")
    pytest.skip("PostgreSQL not configured (source tests/pg_cluster.sh; pg_cluster_start)")


def admin_sql(sql: str) -> None:
    """Run one statement on the PostgreSQL server, from sync or async test code."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin(sql)).result()


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new empty PostgreSQL database, dropped on exit."""
    base = need_postgres()
    name = f"t_{secrets.token_hex(6)}"
    admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- a cluster of a test's own -------------------------------------------------------
#
# To stop and start without disturbing the server the rest of the suite shares: a
# second throwaway cluster made by the functions of ``tests/pg_cluster.sh`` (own data
# directory and port; as root, run as ``postgres``).

SCRIPT = ROOT / "tests" / "pg_cluster.sh"
STATE = ("_PG_CLUSTER_DIR", "_PG_CLUSTER_RUN_BINDIR", "_PG_CLUSTER_RUN_AS", "_PG_CLUSTER_URL")


def _bash(script: str, timeout: float = 60) -> str:
    env = {k: v for k, v in cli_env().items() if not k.startswith(("PG_CLUSTER_", "_PG_"))}
    env.pop("TEST_POSTGRES_URL", None)
    result = subprocess.run(
        ["bash", "-c", f"source {shlex.quote(str(SCRIPT))}\n{script}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{script}\n{result.stdout}{result.stderr}"
    return result.stdout


@dataclass
class OwnPostgres:
    url: str
    state: dict[str, str]

    def _run(self, script: str) -> str:
        restore = "".join(f"{k}={shlex.quote(v)}\n" for k, v in self.state.items())
        return _bash(restore + script)

    def stop(self) -> None:
        """Like a crash or a kill: ``pg_ctl stop --mode=immediate``."""
        self._run(
            '_pg_cluster_as_owner "$_PG_CLUSTER_RUN_AS" "$_PG_CLUSTER_RUN_BINDIR/pg_ctl" '
            '--pgdata="$_PG_CLUSTER_DIR/data" --mode=immediate --wait --silent stop'
        )

    def start(self) -> None:
        """Start it again, same data and port."""
        self._run(
            '_pg_cluster_as_owner "$_PG_CLUSTER_RUN_AS" "$_PG_CLUSTER_RUN_BINDIR/pg_ctl" '
            '--pgdata="$_PG_CLUSTER_DIR/data" --log="$_PG_CLUSTER_DIR/postgres.log" '
            "--wait --timeout=30 --silent start >/dev/null"
        )

    def destroy(self) -> None:
        self._run("pg_cluster_stop")


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster (superuser authority/authority, database authority_test),
    deleted on exit. Wherever the shared PostgreSQL tests run, this one can too."""
    need_postgres()
    out = _bash(
        "pg_cluster_start >&2 && " + " && ".join(f'printf "%s\\n" "${name}"' for name in STATE)
    )
    values = out.strip().split("\n")
    cluster = OwnPostgres(values[-1], dict(zip(STATE, values, strict=True)))
    try:
        # pg_cluster.sh trades durability for speed; a cluster that is killed needs
        # what it acknowledged to survive (asynchronous commits die with the WAL writer).
        libpq = make_url(cluster.url).set(drivername="postgresql")
        cluster._run(
            f'"$_PG_CLUSTER_RUN_BINDIR/psql" --no-psqlrc --quiet --set=ON_ERROR_STOP=1 '
            f"{shlex.quote(libpq.render_as_string(hide_password=False))} "
            '--command="ALTER SYSTEM SET synchronous_commit = on" '
            '--command="SELECT pg_reload_conf()" >/dev/null'
        )
        yield cluster
    finally:
        cluster.destroy()
