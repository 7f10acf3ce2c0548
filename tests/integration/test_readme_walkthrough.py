"""The README's "first service and first token" steps work exactly as written, on a
fresh copy of the repository (issue 13, "Done when").

The section is found by its title, wherever it is and however it is worded around
that phrase; its fenced ``sh``/``bash`` blocks are run verbatim, in order, by one
``bash`` (so variables set by one block reach the next) with ``set -euo pipefail``,
in a copy of the repository that has no ``var/`` and no keys yet, with no
``AUTHORITY_*`` variable and a PATH without the virtualenv: what a new user has.
Every block must succeed and the last must print a token.

The steps talk to ``http://127.0.0.1:8000``, the server ``make run`` starts. Other
tests run in parallel, so the server and the steps share a network namespace of
their own, whose port 8000 is nobody else's: the commands stay verbatim. The test
starts that server itself with ``make run`` (without reinstalling: the copy uses this
checkout's ``.venv``); a block line that would start it again (``make run``,
``authority serve``) is skipped, and only such a line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.processes import ROOT

TITLE = re.compile(r"first service and (?:a )?first token", re.I)
FENCE = re.compile(r"^```\s*(\S*)")
SHELLS = {"sh", "bash", "shell"}
HEADING = re.compile(r"^(#{1,6})\s")
LONG_RUNNING = re.compile(r"^\s*(?:make\s+run|(?:\S*/)?authority\s+serve)\b")
DONE = "@@block {} done@@"
BRING_UP_LOOPBACK = """
import fcntl, signal, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS: IFF_UP
print("up", flush=True)
signal.pause()
"""
READY = """
import sys, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:8000/health/ready", timeout=1)
except Exception:
    sys.exit(1)
"""


def walkthrough(readme: str) -> list[str]:
    """The shell blocks of the section whose title names the first service and token:
    from that line to the next heading (of the same or a higher level, when the title
    is itself a heading)."""
    lines = readme.splitlines()
    fenced = False
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and TITLE.search(line):
            start = number
            heading = HEADING.match(line)
            level = len(heading[1]) if heading else 6
            break
    else:
        raise AssertionError("the README has no 'first service and first token' section")
    blocks: list[str] = []
    language: str | None = None  # of the open fence; None outside one
    body: list[str] = []
    for line in lines[start + 1 :]:
        fence = FENCE.match(line)
        if language is not None:
            if fence:
                if language in SHELLS:
                    blocks.append("\n".join(body))
                language, body = None, []
            else:
                body.append(line)
        elif fence:
            language = fence[1]
        elif (heading := HEADING.match(line)) and len(heading[1]) <= level:
            break
    return blocks


def runnable(block: str) -> str:
    return "\n".join("" if LONG_RUNNING.match(line) else line for line in block.splitlines())


def fresh_copy(target: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored), as a clone would
    have them, with this checkout's ``.venv``; no ``var/``, no keys."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the repository's files")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)  # mtimes kept: make sees nothing to rebuild
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def user_env(home: Path) -> dict[str, str]:
    """A new user's environment: no AUTHORITY_* setting, no virtualenv on PATH."""
    venv = str(ROOT / ".venv")
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and venv not in p]
    keep = ("LANG", "LC_ALL", "TERM", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return {**env, "PATH": os.pathsep.join(path), "HOME": str(home)}


class Namespace:
    """A network namespace of our own, held by a sleeping process; ``command`` runs
    a command in it."""

    def __init__(self) -> None:
        if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")):
            pytest.skip("a private port 8000 needs root and util-linux (unshare, nsenter)")
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", sys.executable, "-c", BRING_UP_LOOPBACK],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline().strip() == "up", "no network namespace"

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--net", "--", *args]

    def close(self) -> None:
        self.holder.terminate()
        self.holder.wait(10)
        assert self.holder.stdout is not None
        self.holder.stdout.close()


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    held = Namespace()
    yield held
    held.close()


def test_the_walkthrough_parser_finds_the_blocks_under_the_title() -> None:
    readme = "\n".join(
        [
            "## Command line",
            "```",
            "authority keys list",
            "```",
            "### A first service and a first token",
            "```sh",
            "echo one",
            "```",
            "text",
            "```python",
            "print('not shell')",
            "```",
            "```bash",
            "make run   # in another terminal",
            "echo two",
            "```",
            "## Signing keys",
            "```sh",
            "echo three",
            "```",
        ]
    )
    blocks = walkthrough(readme)
    assert blocks == ["echo one", "make run   # in another terminal\necho two"]
    assert runnable(blocks[1]) == "\necho two"


def test_the_readme_walkthrough_gives_a_token(tmp_path: Path, namespace: Namespace) -> None:
    if not shutil.which("curl"):
        pytest.skip("the README's steps use curl")
    blocks = walkthrough((ROOT / "README.md").read_text())
    assert blocks, "the section has no sh or bash block"
    repo = fresh_copy(tmp_path / "authority")
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home)
    log = tmp_path / "make-run.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            namespace.command(
                "make", "-o", ".venv/.deps-installed", "-o", ".venv/.dev-deps-installed", "run"
            ),
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make and the server stop together
        )
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(namespace.command(sys.executable, "-c", READY)).returncode:
            assert server.poll() is None, f"make run exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"make run never ready:\n{log.read_text()}"
            time.sleep(0.2)
        script = ["set -euo pipefail"]
        for number, block in enumerate(blocks, 1):
            script += [runnable(block), f"echo '{DONE.format(number)}'"]
        ran = subprocess.run(
            namespace.command("bash", "-c", "\n".join(script)),
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    outputs = re.split(r"@@block \d+ done@@\n", ran.stdout)
    finished = len(outputs) - 1
    assert ran.returncode == 0, (
        f"block {finished + 1} of {len(blocks)} failed (exit {ran.returncode}):\n"
        f"{blocks[finished]}\n--- stdout:\n{outputs[-1]}\n--- stderr:\n{ran.stderr}"
    )
    last = outputs[-2].strip().splitlines()
    answer = json.loads(last[-1]) if last else {}
    assert answer.get("token_type") == "Bearer", f"the last block printed {outputs[-2]!r}"
    assert answer.get("access_token", "").count(".") == 2
