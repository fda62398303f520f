"""The shape of the code: stages as packages with no import circle, modules a
reader can hold in their head, private names private, and the plugin on the
documented plugin API only."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "sparsenet_design"
PLUGIN = ROOT / "adapters" / "adacof" / "sdesign_adacof"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in CORE.rglob("*.py")}


def _imports(path: Path, name: str, top_level_only: bool):
    """(target module, imported names) of each import statement in ``path``."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {str(p.relative_to(ROOT)): n for p in CORE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_circle_between_core_modules():
    modules = _core_modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        for target, names in _imports(path, name, top_level_only=True):
            for imported in names or [""]:
                sub = f"{target}.{imported}"
                dest = sub if sub in modules else target
                if dest in modules and dest != name:
                    graph.add_edge(name, dest)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import circles: {cycles[:5]}"


def test_no_private_name_crosses_a_module():
    modules = _core_modules()
    crossing = []
    for name, path in modules.items():
        for target, names in _imports(path, name, top_level_only=False):
            if target.startswith("sparsenet_design") and target != name:
                crossing += [f"{name} imports {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not crossing, crossing


def test_the_core_never_imports_a_plugin():
    for name, path in _core_modules().items():
        for target, _ in _imports(path, name, top_level_only=False):
            assert not target.startswith("sdesign_adacof"), f"{name} imports {target}"


@pytest.mark.skipif(not PLUGIN.is_dir(), reason="the AdaCoF plugin is not in this checkout")
def test_the_plugin_uses_only_the_plugin_api():
    used = set()
    for path in PLUGIN.rglob("*.py"):
        for target, _ in _imports(path, "sdesign_adacof", top_level_only=False):
            if target.startswith("sparsenet_design"):
                used.add(target)
    assert used == {"sparsenet_design.plugin_api"}, used


def test_the_public_names_are_importable():
    import sparsenet_design
    from sparsenet_design import plugin_api

    for name in sparsenet_design.__all__ + plugin_api.__all__:
        module = plugin_api if name in plugin_api.__all__ else sparsenet_design
        assert getattr(module, name) is not None, name
