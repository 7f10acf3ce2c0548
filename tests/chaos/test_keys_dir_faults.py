"""A file key store that breaks under a running service: ``keys/`` made read-only, or
full (a tiny tmpfs mounted over it, then filled). Rotations fail with one clear line;
the running server says what is wrong in ``/health/ready`` and keeps signing with the
key it loaded; once the directory is fixed, rotation works again without a restart.

Mounts are made in a private mount namespace (``tests/helpers/mount_namespace.py``), where
the server and the commands run.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authority.verifier import Verifier
from tests.helpers.deployment import SECRET_KEY, Client, Deployment
from tests.helpers.mount_namespace import MountNamespace
from tests.helpers.processes import Server, cli_env

ISSUER = "http://authority.test"
# Fills the small tmpfs over keys/ to the last block (dd's "No space left" is the
# expected end); refuses to write anywhere else, and never more than 256 KiB.
FILL = (
    '[ "$(stat -f -c %T keys)" = tmpfs ] && '
    "{ dd if=/dev/zero of=keys/filler bs=4096 count=64 2>/dev/null; true; }"
)


@pytest.fixture
def namespace() -> Iterator[MountNamespace]:
    ns = MountNamespace()
    yield ns
    ns.close()


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    """``authority setup`` with a file key store; the client of a resource server."""
    env = cli_env(
        AUTHORITY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        AUTHORITY_SECRET_KEY=SECRET_KEY,
        AUTHORITY_ISSUER=ISSUER,
        AUTHORITY_MAINTENANCE_INTERVAL="0.5",
        AUTHORITY_KEYSTORE_POLL_INTERVAL="0.5",
    )
    deployment = Deployment(tmp_path, env["AUTHORITY_DATABASE_URL"], env)
    deployment.cli("setup")
    return deployment


def one_line_error(result: Any) -> str:
    """The single ``error: ...`` line of a failed command."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return str(lines[0])


def cli_json(namespace: MountNamespace, deployment: Deployment, *args: str) -> Any:
    """``authority ARGS --json`` in the namespace, where the mounts are."""
    result = namespace.cli(deployment.workdir, deployment.env, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ready(server: Server) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{server.url}/health/ready", timeout=5)
    return response.status_code, response.json()


def wait_for_keystore(server: Server, problem: str | None, within: float = 10) -> dict[str, Any]:
    """Poll ``/health/ready`` until its key store check says ``ok`` (``problem`` None)
    or ``degraded`` with ``problem`` in the server's log (the public answer names the
    check, never the why)."""
    deadline = time.monotonic() + within
    while True:
        status, body = ready(server)
        check = body["checks"]["keystore"]
        if problem is None:
            done = check == "ok"
        else:
            done = check == "degraded" and problem in server.log.read_text()
        if done:
            # Degraded, not down: the server still has a key to sign with.
            assert status == 200, body
            return body
        assert time.monotonic() < deadline, f"key store check still says {body}"
        time.sleep(0.1)


def token_kid_and_claims(server: Server, client: Client) -> tuple[str, dict[str, Any]]:
    """A client_credentials token from ``server``, verified against its own JWKS."""
    assert client.client_secret is not None
    with httpx.Client(base_url=server.url, timeout=10) as http:
        issued = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, client.client_secret),
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        jwks = http.get("/.well-known/jwks.json").content
    # The keys are the point here; the token's status list lives at the fictional issuer.
    verifier = Verifier(ISSUER, "default", jwks=jwks, check_status=False)
    header = json.loads(_b64(token.split(".")[0]))
    return str(header["kid"]), verifier.verify(token)


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def signs_with(server: Server, client: Client, kid: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while (signed := token_kid_and_claims(server, client)[0]) != kid:
        assert time.monotonic() < deadline, f"still signing with {signed}, not {kid}"
        time.sleep(0.2)


def kids(server: Server) -> set[str]:
    keys = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=5).json()["keys"]
    return {key["kid"] for key in keys}


def test_a_read_only_keys_directory_fails_rotations_with_one_line_while_the_server_keeps_signing(
    namespace: MountNamespace, deployment: Deployment
) -> None:
    workdir, env = deployment.workdir, deployment.env
    client = deployment.create_client("resource")
    namespace.sh(workdir, "mount --bind keys keys")
    server = namespace.serve(workdir, env)
    try:
        current = cli_json(namespace, deployment, "keys", "list")[0]["kid"]
        assert token_kid_and_claims(server, client)[0] == current
        wait_for_keystore(server, None)

        namespace.sh(workdir, "mount -o remount,bind,ro keys")
        for args in (("keys", "rotate"), ("keys", "rotate", "--now")):
            line = one_line_error(namespace.cli(workdir, env, *args))
            assert line == "error: keys directory keys is not writable"
        wait_for_keystore(server, "keys directory keys is not writable")
        kid, claims = token_kid_and_claims(server, client)
        assert (kid, claims["client_id"]) == (current, client.client_id)
        assert kids(server) == {current}

        # Writable again: the report clears and the next rotation works, no restart.
        namespace.sh(workdir, "mount -o remount,bind,rw keys")
        wait_for_keystore(server, None)
        rotated = namespace.cli(workdir, env, "keys", "rotate", "--now", "--json")
        assert rotated.returncode == 0, rotated.stderr
        signs_with(server, client, json.loads(rotated.stdout)["kid"])
    finally:
        server.stop()


def test_a_full_keys_directory_fails_rotations_with_one_line_while_the_server_keeps_signing(
    namespace: MountNamespace, deployment: Deployment
) -> None:
    workdir, env = deployment.workdir, deployment.env
    client = deployment.create_client("resource")
    # A 64 KiB tmpfs over keys/, holding the keys `setup` made.
    namespace.sh(
        workdir,
        "cp -a keys saved && mount -t tmpfs -o size=64k,mode=0700 tmpfs keys "
        "&& cp -a saved/. keys/ && rm -r saved",
    )
    # The server publishes a next key 3 s after a key starts signing (interval 4 s,
    # published 1 s ahead): after the directory is full.
    env = {**env, "AUTHORITY_KEY_ROTATION_INTERVAL": "4", "AUTHORITY_KEY_PUBLISH_DELAY": "1"}
    server = namespace.serve(workdir, env)
    try:
        rotated = namespace.cli(workdir, env, "keys", "rotate", "--now", "--json")
        assert rotated.returncode == 0, rotated.stderr
        current = json.loads(rotated.stdout)["kid"]
        namespace.sh(workdir, FILL)
        assert time.time() < json.loads(rotated.stdout)["activate_at"] + 3, "filled too late"
        listing_before = cli_json(namespace, deployment, "keys", "list")

        line = one_line_error(namespace.cli(workdir, env, "keys", "rotate"))
        assert line == "error: no space left to write keys in keys"
        wait_for_keystore(server, "no space left to write keys in keys")
        signs_with(server, client, current)
        assert ready(server)[1]["checks"]["signing_key"] == f"ok ({current})"
        # Nothing half-written: the store lists exactly what it held, no temp files.
        assert cli_json(namespace, deployment, "keys", "list") == listing_before
        leftovers = namespace.sh(workdir, "ls -A keys").stdout.split()
        assert sorted(leftovers) == sorted(
            [".lock", "filler", *(f"{k['kid']}.json" for k in listing_before)]
        )

        # Space again: the server's next maintenance publishes the key it owed.
        namespace.sh(workdir, "rm keys/filler")
        wait_for_keystore(server, None)
        deadline = time.monotonic() + 10
        while len(published := kids(server)) <= len(listing_before):
            assert time.monotonic() < deadline, f"no new key published: {published}"
            time.sleep(0.2)
    finally:
        server.stop()


def test_a_key_that_does_not_fit_on_a_nearly_full_disk_fails_and_leaves_the_store_loadable(
    namespace: MountNamespace, deployment: Deployment
) -> None:
    """A 4096-bit key file is longer than one 4 KiB page: with one page left, the write
    is cut short rather than refused. That must fail too, not rename half a key in."""
    workdir, env = deployment.workdir, deployment.env
    namespace.sh(
        workdir,
        "cp -a keys saved && mount -t tmpfs -o size=64k,mode=0700 tmpfs keys "
        "&& cp -a saved/. keys/ && rm -r saved",
    )
    namespace.sh(workdir, f"{FILL} && truncate -s -4096 keys/filler")
    free = namespace.sh(workdir, "df -B1 --output=avail keys | tail -n 1").stdout
    assert int(free) == 4096
    listing_before = cli_json(namespace, deployment, "keys", "list")

    line = one_line_error(namespace.cli(workdir, env, "keys", "rotate", "--size", "4096"))
    assert line == "error: no space left to write keys in keys"
    assert cli_json(namespace, deployment, "keys", "list") == listing_before
    # And a server can still start on it.
    server = namespace.serve(workdir, env)
    server.stop()
