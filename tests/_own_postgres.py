"""A PostgreSQL server of a test's own, to stop and start without disturbing the one
the rest of the suite shares: a second throwaway cluster made by the functions of
``tests/pg_cluster.sh`` (own data directory and port; as root, run as ``postgres``).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from tests.conftest import ROOT, cli_env, need_postgres

SCRIPT = ROOT / "tests" / "pg_cluster.sh"
STATE = ("_PG_CLUSTER_DIR", "_PG_CLUSTER_RUN_BINDIR", "_PG_CLUSTER_RUN_AS", "_PG_CLUSTER_URL")


def _bash(script: str, timeout: float = 60) -> str:
    env = {k: v for k, v in cli_env().items() if not k.startswith(("PG_CLUSTER_", "_PG_"))}
    env.pop("AUTHORITY_TEST_POSTGRES_URL", None)
    result = subprocess.run(["bash", "-c", f"source {shlex.quote(str(SCRIPT))}\n{script}"],
                            env=env, capture_output=True, text=True, timeout=timeout, check=False)
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
        self._run('_pg_cluster_as_owner "$_PG_CLUSTER_RUN_AS" "$_PG_CLUSTER_RUN_BINDIR/pg_ctl" '
                  '--pgdata="$_PG_CLUSTER_DIR/data" --mode=immediate --wait --silent stop')

    def start(self) -> None:
        """Start it again, same data and port."""
        self._run('_pg_cluster_as_owner "$_PG_CLUSTER_RUN_AS" "$_PG_CLUSTER_RUN_BINDIR/pg_ctl" '
                  '--pgdata="$_PG_CLUSTER_DIR/data" --log="$_PG_CLUSTER_DIR/postgres.log" '
                  "--wait --timeout=30 --silent start >/dev/null")

    def destroy(self) -> None:
        self._run("pg_cluster_stop")


@contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh cluster (superuser authority/authority, database authority_test),
    deleted on exit. Wherever the shared PostgreSQL tests run, this one can too."""
    need_postgres()
    out = _bash("pg_cluster_start >&2 && "
                + " && ".join(f'printf "%s\\n" "${name}"' for name in STATE))
    values = out.strip().split("\n")
    cluster = OwnPostgres(values[-1], dict(zip(STATE, values, strict=True)))
    try:
        # pg_cluster.sh trades durability for speed; a cluster that is killed needs
        # what it acknowledged to survive (asynchronous commits die with the WAL writer).
        libpq = make_url(cluster.url).set(drivername="postgresql")
        cluster._run(f'"$_PG_CLUSTER_RUN_BINDIR/psql" --no-psqlrc --quiet --set=ON_ERROR_STOP=1 '
                     f'{shlex.quote(libpq.render_as_string(hide_password=False))} '
                     '--command="ALTER SYSTEM SET synchronous_commit = on" '
                     '--command="SELECT pg_reload_conf()" >/dev/null')
        yield cluster
    finally:
        cluster.destroy()
