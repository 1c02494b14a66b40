"""The package's shape: no import cycle, every import pointing down a layer, typer and rich
only in cli/, fastapi and uvicorn only in serve/, torch only where the towers are trained
or run.

The graph is read with `ast` from the source, imports inside functions included (a lazy
import is still a dependency), so it holds whatever is installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tagrec_cli"

# Each module's layer; an import may point to its own layer or below, never up.
#   1 pure helpers, 2 files and data, 3 towers, 4 training and commands, 5 the protocol
#   that runs commands in a row (evaluate's own split), 6 the front ends (the CLI, and
#   the HTTP server, which answers with the same commands)
LAYERS = {
    "tagrec_cli": 0, "tagrec_cli.__main__": 7,
    "tagrec_cli.errors": 1, "tagrec_cli.config": 1, "tagrec_cli.features": 1,
    "tagrec_cli.topk": 1, "tagrec_cli.metrics": 1, "tagrec_cli.toptags": 1,
    "tagrec_cli.documents": 1, "tagrec_cli.prior": 1, "tagrec_cli.unrated": 1,
    "tagrec_cli.artifacts": 2, "tagrec_cli.store": 2, "tagrec_cli.datasets": 2,
    "tagrec_cli.towers": 3,
    "tagrec_cli.train": 4, "tagrec_cli.ingest": 4, "tagrec_cli.embed": 4,
    "tagrec_cli.recommend": 4, "tagrec_cli.evaluate": 4, "tagrec_cli.baselines": 4,
    "tagrec_cli.clean": 4,
    "tagrec_cli.protocol": 5,
    "tagrec_cli.cli": 6, "tagrec_cli.serve": 6,
}
COMMANDS = {"tagrec_cli.ingest", "tagrec_cli.embed", "tagrec_cli.recommend",
            "tagrec_cli.evaluate", "tagrec_cli.train", "tagrec_cli.clean"}
ALLOWED_COMMAND_IMPORTS = {("tagrec_cli.evaluate", "tagrec_cli.baselines")}  # its own part
TORCH_PLACES = ("tagrec_cli.towers", "tagrec_cli.train", "tagrec_cli.embed")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports (top-level names for outside packages, full names of our
    modules: `from tagrec_cli.store import catalogue` is tagrec_cli.store.catalogue)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs
            if len(subs) < len(node.names):  # some name is defined in the module itself
                found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports_of(path, set(mods)) if m in mods}
            for name, path in mods.items()}


def external(name: str) -> set[str]:
    mods = modules()
    return {m.split(".")[0] for m in imports_of(mods[name], set(mods))
            if not m.startswith("tagrec_cli")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as [a, b, ..., a], or None. Example: {a: {b}, b: {a}} -> [a, b, a]"""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer(name: str) -> int:
    owner = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)
    return LAYERS[owner]


def top_level(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"b"}}) is None


def test_every_module_has_a_layer():
    for name in modules():
        assert layer(name) >= 0, name


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_imports_point_down():
    up = [(a, b) for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert up == []


def test_commands_never_import_each_other():
    crossing = [(a, b) for a, targets in graph().items() for b in targets
                if top_level(a) in COMMANDS and top_level(b) in COMMANDS | {"tagrec_cli.baselines"}
                and top_level(a) != top_level(b)
                and (top_level(a), top_level(b)) not in ALLOWED_COMMAND_IMPORTS]
    assert crossing == []


@pytest.mark.parametrize("library", ["typer", "rich", "click"])
def test_cli_libraries_only_in_cli(library):
    outside = [m for m in modules() if not m.startswith("tagrec_cli.cli") and library in
               external(m)]
    assert outside == []


@pytest.mark.parametrize("library", ["fastapi", "starlette", "uvicorn"])
def test_web_libraries_only_in_serve(library):
    outside = [m for m in modules() if not m.startswith("tagrec_cli.serve") and library in
               external(m)]
    assert outside == []


def test_torch_only_where_towers_are_trained_or_run():
    outside = [m for m in modules() if not m.startswith(TORCH_PLACES) and "torch" in external(m)]
    assert outside == []


def test_every_package_folder_is_installed():
    # pyproject.toml lists the packages a wheel holds; a folder left out installs only in
    # editable mode (documents/ was missing from built wheels until this test)
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]
                 ["setuptools"]["packages"]) - {"tagrec_cli.sample_data"}
    folders = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert listed == folders
