"""A deployed authority for end-to-end tests: a work directory set up with the real
``authority`` command (database, first key, a user, clients) and its server processes.

Shared by the tests that talk to ``authority serve`` over HTTP and then look at the
database through a connection of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Row, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.helpers.postgres import postgres_database
from tests.helpers.processes import Server, cli_env, run_cli, start_server

USERNAME = "alice"
PASSWORD = "correct horse battery staple"
# Every process of a deployment (CLI and servers) must hash client secrets alike.
SECRET_KEY = "k" * 40


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """An empty database of ``backend`` for a whole module: a file in ``workdir``, or a
    new PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'authority.db'}"
        return
    with postgres_database() as url:
        yield url


@dataclass
class Client:
    client_id: str
    client_secret: str | None


@dataclass
class Deployment:
    workdir: Path
    database_url: str
    env: dict[str, str] = field(repr=False)
    servers: list[Server] = field(default_factory=list, repr=False)
    user_id: int = 0

    @property
    def backend(self) -> str:
        return make_url(self.database_url).get_backend_name()

    def cli(self, *args: str, input_: str | None = None) -> Any:
        result = run_cli(self.workdir, *args, "--json", env=self.env, input_=input_)
        assert result.returncode == 0, f"authority {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout)

    def create_client(self, name: str, *options: str) -> Client:
        created = self.cli("clients", "create", name, *options)
        return Client(created["client_id"], created["client_secret"])

    def start(self, count: int = 1, **env: str) -> list[Server]:
        """``count`` server processes on this deployment, started side by side; they are
        stopped by ``stop``."""
        server_env = {**self.env, **env}
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(start_server, self.workdir, server_env) for _ in range(count)]
            started = []
            for future in futures:
                with contextlib.suppress(AssertionError):
                    started.append(future.result())
        self.servers.extend(started)
        if len(started) != count:
            for future in futures:
                future.result()  # re-raise the first failure with its log
        return started

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    def query(self, sql: str, **params: Any) -> list[Row[Any]]:
        """Rows of ``sql`` read through a brand-new connection, so that only committed
        data is seen."""
        return asyncio.run(_query(self.database_url, sql, params))


async def _query(url: str, sql: str, params: dict[str, Any]) -> list[Row[Any]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def provision(workdir: Path, database_url: str, **env: str) -> Deployment:
    """``authority setup`` and the user ``alice``, as an operator would do it."""
    deployment = Deployment(
        workdir,
        database_url,
        cli_env(AUTHORITY_DATABASE_URL=database_url, AUTHORITY_SECRET_KEY=SECRET_KEY, **env),
    )
    deployment.cli("setup")
    user = deployment.cli(
        "users",
        "create",
        USERNAME,
        "--email",
        "alice@example.com",
        "--password-stdin",
        input_=PASSWORD + "\n",
    )
    deployment.user_id = user["id"]
    return deployment
