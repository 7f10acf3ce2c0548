"""The examples run as the README writes them: the ``examples`` extra (``make
examples``) installs every package ``examples/`` imports, pinned to the versions of
``constraints.txt`` like every other dependency."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_packages() -> set[str]:
    """The top-level modules ``examples/`` imports that are neither the standard
    library nor the examples themselves."""
    local = {p.stem for p in (ROOT / "examples").iterdir()}
    found: set[str] = set()
    for path in (ROOT / "examples").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def pinned(requirements: list[str]) -> dict[str, str]:
    """``{name: version}`` of requirements that are each ``name==version``."""
    found = {}
    for line in requirements:
        name, _, version = line.split(";")[0].strip().partition("==")
        assert version, f"{line!r} is not pinned"
        found[name.split("[")[0].lower()] = version
    return found


def test_the_examples_extra_installs_everything_the_examples_import() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {
        **pinned(project["dependencies"]),
        **pinned(project["optional-dependencies"]["examples"]),
    }
    distributions = packages_distributions()
    needed = {
        distributions[module][0].lower() for module in imported_packages() if module != "authority"
    }
    assert needed, "the examples import third-party packages"
    assert needed <= set(installed), needed - set(installed)
    constraints = {
        name.lower(): version
        for name, _, version in (
            line.partition("==")
            for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line
        )
    }
    assert {name: constraints[name] for name in installed} == installed
