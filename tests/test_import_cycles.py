"""No import cycle among the package's modules, counting imports under TYPE_CHECKING and inside
functions (ARCHITECTURE.md, "Import rules"). Read as installed: integrations/ and training/ are
copied under guardvl_sdk/, so their imports of guardvl_sdk.integrations/.training are seen."""

import shutil
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The named lazy imports of convenience methods (ARCHITECTURE.md): the only upward imports.
CONVENIENCE = {
    ("guardvl_sdk.guard", "guardvl_sdk.integrations.langchain"),  # Guard.as_runnable
    ("guardvl_sdk.guard", "guardvl_sdk.training.demo"),  # Guard.from_pretrained("demo")
}


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> grimp.ImportGraph:
    tree = tmp_path_factory.mktemp("installed")
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "guardvl_sdk", tree / "guardvl_sdk", ignore=skip)
    for sub in ("integrations", "training"):
        shutil.copytree(ROOT / sub, tree / "guardvl_sdk" / sub, ignore=skip)
    saved = sys.path[:], {k: v for k, v in sys.modules.items() if k.startswith("guardvl_sdk")}
    sys.path.insert(0, str(tree))
    for name in saved[1]:
        del sys.modules[name]  # grimp finds the package through the import system
    try:
        return grimp.build_graph("guardvl_sdk", cache_dir=None)
    finally:
        sys.path[:] = saved[0]
        sys.modules.update(saved[1])


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_but_the_named_convenience_imports(graph: grimp.ImportGraph) -> None:
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(edges) > 70  # the whole package was read
    for importer, imported in CONVENIENCE:
        assert imported in edges[importer], f"{importer} -> {imported} is gone: update the list"
        edges[importer].discard(imported)
    assert cycles(edges) == []


def test_the_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
