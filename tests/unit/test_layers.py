"""The package's shape (README, "Where things live"): imports run one way, down the
layers; the verifier stands alone; no cycles; at most seven import levels; no module
over about 400 lines. Read from the source with ``ast``, so a new import that breaks
the design fails here."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "authority"
# Lower number, lower layer: a module may import its own layer and the ones below.
LAYERS = {
    "authority.settings": 1,
    "authority.clock": 1,
    "authority.randomness": 1,
    "authority.metrics": 1,
    "authority.logs": 1,
    "authority.storage": 1,
    "authority.accounts": 2,
    "authority.signing": 2,
    "authority.status": 2,
    "authority.sessions": 3,
    "authority.authorization": 3,
    "authority.grants": 4,
    "authority.web": 5,
    "authority.cli": 5,
    "authority.__main__": 6,
}
MAX_LEVELS = 7
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets.append(node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                # ``from authority.web import csrf`` imports a module; ``from
                # authority.web.http import NO_STORE`` imports authority.web.http.
                if target in paths and target != name:
                    found.add(target)
                    break
        imports[name] = found
    return imports


def levels() -> dict[str, int]:
    imports = graph()

    @functools.cache
    def level(name: str, stack: tuple[str, ...] = ()) -> int:
        if name in stack:
            raise AssertionError(f"import cycle: {' -> '.join((*stack, name))}")
        below = [level(other, (*stack, name)) for other in imports[name]]
        return 1 + max(below, default=0)

    return {name: level(name) for name in imports}


def layer_of(name: str) -> int | None:
    for prefix, layer in LAYERS.items():
        if name == prefix or name.startswith(prefix + "."):
            return layer
    return None


def test_there_are_no_import_cycles_and_at_most_seven_levels() -> None:
    found = levels()
    tallest = max(found.values())
    assert tallest <= MAX_LEVELS, sorted(found.items(), key=lambda item: -item[1])[:5]


def goes_up(name: str, other: str) -> bool:
    mine, theirs = layer_of(name), layer_of(other)
    return mine is not None and theirs is not None and theirs > mine


def test_imports_run_down_the_layers_and_the_cli_never_imports_the_web_app() -> None:
    upward = [
        (name, other)
        for name, others in graph().items()
        for other in others
        if goes_up(name, other)
        or (name.startswith("authority.cli") and other.startswith("authority.web"))
    ]
    assert upward == []


def test_the_verifier_imports_nothing_of_the_server() -> None:
    leaks = [
        (name, other)
        for name, others in graph().items()
        if name.startswith("authority.verifier")
        for other in others
        if not other.startswith("authority.verifier")
    ]
    assert leaks == []


def test_every_module_has_a_layer() -> None:
    unplaced = [
        name
        for name in graph()
        if layer_of(name) is None
        and not name.startswith("authority.verifier")
        and name != "authority"
    ]
    assert unplaced == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_is_over_about_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES
