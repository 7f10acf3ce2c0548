"""What the verifier imports (README, "Verifying tokens in a resource server"): a
resource server installs it with ``cryptography`` alone. Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers.processes import ROOT
from tests.helpers.verifier import AUDIENCE, JwksServer, claims, jwks_server, rsa_key, sign

SERVER_PACKAGES = [
    "litestar",
    "sqlalchemy",
    "alembic",
    "joserfc",
    "authlib",
    "msgspec",
    "httpx",
    "jwt",
    "anyio",
    "uvicorn",
    "click",
    "asyncpg",
    "aiosqlite",
]

# Only the standard library, cryptography (and its cffi) and this project may be imported.
ONLY_CRYPTOGRAPHY = """
import importlib.abc, sys
ALLOWED = set(sys.stdlib_module_names) | {"cryptography", "cffi", "_cffi_backend", "authority"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in ALLOWED:
            raise ImportError("not installed in this test: " + name)
        return None
sys.meta_path.insert(0, Block())
"""


def python(code: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def loaded_after(module: str) -> list[str]:
    code = (
        f"import json, sys, {module}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    return list(json.loads(python(code)))


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with jwks_server(rsa_key()) as srv:
        yield srv


@pytest.mark.parametrize("module", ["authority.verifier", "authority.verifier.asgi"])
def test_importing_the_verifier_loads_no_server_package(module: str) -> None:
    loaded = loaded_after(module)
    assert "cryptography" in loaded
    assert [p for p in SERVER_PACKAGES if p in loaded] == []


def test_only_the_litestar_integration_loads_litestar() -> None:
    assert "litestar" in loaded_after("authority.verifier.litestar")


def test_verifier_fetches_and_verifies_with_only_cryptography_installed(server: JwksServer) -> None:
    token = sign(claims(iss=server.issuer))
    code = (
        ONLY_CRYPTOGRAPHY
        + """
import asyncio
from authority.verifier import Verifier
from authority.verifier.asgi import BearerAuthMiddleware
verifier = Verifier(sys.argv[1], sys.argv[2], clock=lambda: 1_800_000_000)
print(verifier.verify(sys.argv[3])["sub"], asyncio.run(verifier.averify(sys.argv[3]))["sub"])
try:
    import httpx
except ImportError:
    print("no httpx")
"""
    )
    assert python(code, server.issuer, AUDIENCE, token).split() == ["svc", "svc", "no", "httpx"]
    assert server.total() == 2
