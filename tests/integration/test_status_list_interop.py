"""An independent implementation reads our token status list: the npm package
``@sd-jwt/jwt-status-list`` (in Node.js, ``tests/node/status_list.mjs``, the list's
signature checked by panva's jose) decodes the list a real ``authority serve`` publishes
and agrees bit for bit with our verifier, for revoked and unrevoked tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from authority.status.publisher import POLL
from authority.verifier import InvalidToken, Verifier
from authority.verifier.status_bits import decode, is_set
from tests.helpers.deployment import Client, Deployment, database, provision
from tests.helpers.node import run_node_json

SIZE = 1024 * 64


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("status-interop")
    with database("sqlite", workdir) as url:
        deployed = provision(workdir, url, AUTHORITY_STATUS_LIST_SIZE=str(SIZE))
        deployed.start()
        yield deployed
        deployed.stop()


def client_token(url: str, client: Client) -> str:
    assert client.client_secret is not None
    response = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def verdict(verifier: Verifier, token: str) -> int:
    """Our verifier's status of a token: 0 valid, 1 revoked (anything else fails)."""
    try:
        verifier.verify(token)
    except InvalidToken as exc:
        if exc.reason != "revoked":
            raise
        return 1
    return 0


def test_the_npm_status_list_package_agrees_bit_for_bit_with_our_verifier(
    deployment: Deployment,
) -> None:
    url = deployment.servers[0].url
    client = deployment.create_client("svc")
    assert client.client_secret is not None
    tokens = [client_token(url, client) for _ in range(12)]
    revoked = tokens[1::3]
    for token in revoked:
        response = httpx.post(
            f"{url}/oauth/revoke",
            data={"token": token},
            auth=(client.client_id, client.client_secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
    time.sleep(2 * POLL)  # the server's list follows the database within a poll

    ours = Verifier(url, "default")
    verdicts = [verdict(ours, token) for token in tokens]
    assert verdicts == [1 if token in revoked else 0 for token in tokens]

    theirs = run_node_json("status_list.mjs", url, *tokens)
    assert [entry["status"] for entry in theirs["tokens"]] == verdicts
    assert {entry["uri"] for entry in theirs["tokens"]} == {f"{url}/status/1"}
    assert (theirs["bits"], theirs["size"]) == (1, SIZE)

    listed = httpx.get(f"{url}/status/1", timeout=10).text
    claims = jwt.decode(listed, options={"verify_signature": False})  # ours checked it
    bits = decode(claims["status_list"]["lst"])
    ours_set = [i for i in range(SIZE) if is_set(bits, i)]
    assert theirs["set"] == ours_set
    idx = [entry["idx"] for entry in theirs["tokens"]]
    assert ours_set == sorted(i for i, verdict in zip(idx, verdicts, strict=True) if verdict)
