"""Third-party JavaScript clients in real Node.js: ``tests/node`` pins them
(``package.json`` and ``package-lock.json``), :func:`node_modules` installs them once
with ``npm ci`` and :func:`run_node` runs a script of ``tests/node`` with them.

Node.js and npm are required, as a browser and PostgreSQL are: without them these tests
skip on a developer's machine and fail when ``TEST_REQUIRE_NODE=1`` (``.ci/run``)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
REQUIRE_NODE = os.environ.get("TEST_REQUIRE_NODE") == "1"
_STAMP = NODE_DIR / "node_modules" / ".installed-lock"


def _missing(what: str) -> None:
    if REQUIRE_NODE:
        pytest.fail(f"TEST_REQUIRE_NODE=1 but {what}")
    pytest.skip(what)


def node_modules() -> Path:
    """``tests/node/node_modules`` as the lock file pins it: installed by ``npm ci`` the
    first time, and again whenever the lock file changes. Safe across processes."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are not installed (Debian: apt install nodejs npm)")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    with (NODE_DIR / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (_STAMP.exists() and _STAMP.read_bytes() == lock):
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],  # type: ignore[list-item]
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
            _STAMP.write_bytes(lock)
    return NODE_DIR / "node_modules"


def run_node(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/node/SCRIPT`` with Node.js, the pinned packages installed."""
    node_modules()
    return subprocess.run(
        [shutil.which("node") or "node", str(NODE_DIR / script), *args],
        cwd=NODE_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_node_json(script: str, *args: str, **kwargs: Any) -> Any:
    """Run a script that prints one JSON document; fail the test with its output if it
    exits non-zero."""
    done = run_node(script, *args, **kwargs)
    assert done.returncode == 0, (
        f"node {script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return json.loads(done.stdout)
