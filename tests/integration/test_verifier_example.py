"""``examples/resource_server.py`` end to end: a real authority process issues tokens
with ``client_credentials``, a real resource server process verifies them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from tests.helpers.node import run_node_json
from tests.helpers.processes import (
    Server,
    cli_env,
    run_cli,
    start_resource_server,
    start_server,
)

AUDIENCE = "api://orders"


def authority_env(workdir: Path) -> dict[str, str]:
    return cli_env(
        AUTHORITY_SECRET_KEY="k" * 40,
        AUTHORITY_AUDIENCE=AUDIENCE,
        AUTHORITY_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'authority.db'}",
        AUTHORITY_KEYS_DIR=str(workdir / "keys"),
    )


def cli(workdir: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    result = run_cli(workdir, *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def access_token(authority: Server, client: dict[str, str]) -> str:
    response = httpx.post(
        f"{authority.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@dataclass
class ExampleDeployment:
    """The example resource server and the authority it trusts (not a
    ``tests.helpers.deployment.Deployment``: its own clients and audience)."""

    url: str  # the resource server
    authority: Server
    reader: dict[str, str]
    writer: dict[str, str]


@pytest.fixture
def deployment(tmp_path: Path, servers: list[Server]) -> Iterator[ExampleDeployment]:
    env = authority_env(tmp_path)
    cli(tmp_path, env, "setup")
    with ThreadPoolExecutor(2) as pool:  # the CLI starts slowly: overlap the steps
        reader = pool.submit(
            cli, tmp_path, env, "clients", "create", "reader", "--scope", "orders:read"
        )
        writer = pool.submit(
            cli, tmp_path, env, "clients", "create", "writer", "--scope", "orders:write"
        )
        authority = start_server(tmp_path, env)
        servers.append(authority)
        api = start_resource_server(tmp_path, authority.url, AUTHORITY_AUDIENCE=AUDIENCE)
        try:
            yield ExampleDeployment(api.url, authority, reader.result(), writer.result())
        finally:
            api.stop()


def test_example_resource_server_answers_200_401_and_403(deployment: ExampleDeployment) -> None:
    url, reader, writer = deployment.url, deployment.reader, deployment.writer
    read_token = access_token(deployment.authority, reader)
    write_token = access_token(deployment.authority, writer)

    allowed = httpx.get(f"{url}/orders", headers={"Authorization": f"Bearer {read_token}"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["client_id"] == reader["client_id"]

    me = httpx.get(f"{url}/me", headers={"Authorization": f"Bearer {write_token}"})
    assert (me.status_code, me.json()["sub"], me.json()["aud"]) == (
        200,
        writer["client_id"],
        AUDIENCE,
    )

    missing = httpx.get(f"{url}/orders")
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")

    forged = httpx.get(f"{url}/orders", headers={"Authorization": f"Bearer {read_token}x"})
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    wrong_scope = httpx.get(f"{url}/orders", headers={"Authorization": f"Bearer {write_token}"})
    assert wrong_scope.status_code == 403
    assert 'error="insufficient_scope"' in wrong_scope.headers["www-authenticate"]
    assert 'scope="orders:read"' in wrong_scope.headers["www-authenticate"]


def test_openid_client_gets_dpop_bound_tokens_the_example_accepts_only_with_a_proof(
    deployment: ExampleDeployment, tmp_path: Path
) -> None:
    """panva's openid-client, with its own DPoP support (RFC 9449): client_credentials,
    and a public client's password grant and refresh, all bound to its keys; the
    example resource server accepts the bound token with a proof and refuses it as
    Bearer and without a proof; the bound refresh token needs a proof by its key."""
    env = authority_env(tmp_path)
    app = cli(
        tmp_path, env, "clients", "create", "spa", "--public",
        "--grant", "password", "--grant", "refresh_token", "--scope", "orders:read",
    )  # fmt: skip
    password = "a long enough password for alice"
    created = run_cli(
        tmp_path, "users", "create", "alice", "--email", "alice@example.com",
        "--password-stdin", "--json", env=env, input_=password + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    result = run_node_json(
        "openid_client_dpop.mjs",
        deployment.authority.url,
        deployment.reader["client_id"],
        deployment.reader["client_secret"],
        app["client_id"],
        "alice",
        password,
        f"{deployment.url}/orders",
    )
    assert isinstance(result, dict)
    assert result["clientCredentials"]["tokenType"].lower() == "dpop"
    assert result["withProof"]["status"] == 200, result
    claims = jwt.decode(
        result["clientCredentials"]["accessToken"], options={"verify_signature": False}
    )
    assert claims["cnf"]["jkt"]
    assert result["asBearer"]["status"] == 401
    assert result["asBearer"]["challenge"].startswith('DPoP error="invalid_token"')
    assert result["withoutProof"]["status"] == 401
    assert result["withoutProof"]["challenge"].startswith('DPoP error="invalid_dpop_proof"')
    assert result["login"]["tokenType"].lower() == "dpop"
    assert result["refreshed"]["tokenType"].lower() == "dpop"
    assert result["refreshWithoutProof"] == "invalid_dpop_proof"
    assert result["refreshByOtherKey"] == "invalid_dpop_proof"
