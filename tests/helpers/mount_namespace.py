"""A private mount namespace for fault tests: mounts made in it (a read-only bind mount,
a tiny tmpfs over ``keys/``) are seen only by the processes we run in it, and vanish
with them, whatever happens to the test.

A sleeping ``unshare --mount`` process holds the namespace; ``nsenter`` runs commands,
``authority serve`` and the CLI in it. Needs root (mounting), else the tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.processes import SERVE, Server, start_server


class MountNamespace:
    def __init__(self) -> None:
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
            pytest.skip("mount namespaces need root and util-linux (unshare, nsenter)")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sleep", "infinity"]
        )
        own = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == own:
            assert self.holder.poll() is None, "unshare --mount failed"
            assert time.monotonic() < deadline, "unshare never entered its namespace"
            time.sleep(0.01)

    def command(self, workdir: Path, *args: str) -> list[str]:
        """``args`` run in ``workdir`` as seen from the namespace. (``nsenter --wd``
        would keep the directory of our own namespace, where its mounts are absent.)"""
        return [
            "nsenter",
            f"--target={self.holder.pid}",
            "--mount",
            "--",
            "sh",
            "-c",
            'cd "$1" && shift && exec "$@"',
            "sh",
            str(workdir),
            *args,
        ]

    def sh(self, workdir: Path, script: str) -> subprocess.CompletedProcess[str]:
        """``sh -c script`` in the namespace; fails the test if it fails."""
        result = subprocess.run(
            self.command(workdir, "sh", "-c", script),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{script}: {result.stderr}"
        return result

    def cli(
        self, workdir: Path, env: dict[str, str], *args: str
    ) -> subprocess.CompletedProcess[str]:
        """``authority ARGS`` run in the namespace."""
        return subprocess.run(
            self.command(workdir, sys.executable, "-m", "authority", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def serve(self, workdir: Path, env: dict[str, str], wait: float = 30) -> Server:
        """``authority serve`` in the namespace, once ``/health/ready`` answers 200.
        nsenter execs the server: the process we hold is the server itself."""
        return start_server(workdir, env, wait, command=self.command(workdir, *SERVE))

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()
