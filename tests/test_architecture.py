"""The package layout rules: one subpackage per pipeline stage, imports only downward, no circles.

Every import in the package counts, also those inside functions and under ``TYPE_CHECKING``, and
the lazy re-exports of the packages' ``__init__`` (``attach``). The stages, lowest first, are those
of ARCHITECTURE.md; a module may import from its own stage or a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "smallmines"
STAGES = (
    ("_compat", "_lazy", "_moved", "errors", "bands", "legend", "folders", "cluster", "__init__"),
    ("acquire",),
    ("data",),
    ("models",),
    ("training",),
    ("mapping",),
    ("analysis",),
    ("report",),
    ("demo", "monitor", "cli", "__main__"),
)
LAYER = {name: rank for rank, names in enumerate(STAGES) for name in names}
MAX_LINES = 800


def _module(path: Path) -> str:
    parts = ["smallmines", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(module: str) -> bool:
    return MODULES.get(module, Path()).name == "__init__.py"


def _target(module: str, name: str | None) -> str | None:
    """The smallmines module an import binds (a submodule when ``name`` is one)."""
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module if module in MODULES else None


def imports_of(module: str, source: str | None = None) -> set[str]:
    """Every smallmines module that ``module`` imports, anywhere in its code (or in ``source``)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8") if source is None else source)
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("smallmines")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                above = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*above, base] if base else above)
            if base == "smallmines" or base.startswith("smallmines."):
                found |= {t for a in node.names if (t := _target(base, a.name))}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "attach" and len(node.args) == 2:
            exports = node.args[1]
            if isinstance(exports, ast.Dict):
                for key in exports.keys:
                    if isinstance(key, ast.Constant):
                        name = key.value
                        found.add(name if name.startswith("smallmines.") else f"{package}.{name}")
    return {f for f in found if f in MODULES and f != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_belongs_to_a_stage() -> None:
    unknown = sorted(m for m in MODULES if _stage(m) not in LAYER)
    assert not unknown, f"modules outside the stages of ARCHITECTURE.md: {unknown}"


def upward(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import from a lower stage to a higher one."""
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets if LAYER[_stage(t)] > LAYER[_stage(m)])


def test_no_import_reaches_a_higher_stage() -> None:
    found = upward(GRAPH)
    assert not found, "imports from a lower stage to a higher one:\n" + "\n".join(found)


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import circles: {cycles}"


def test_modules_stay_small() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their seams): {long}"


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("smallmines.data.dataset", "from smallmines.mapping.mapper import map_scene\n",
     "smallmines.data.dataset -> smallmines.mapping.mapper"),
    ("smallmines.models.registry", "def f():\n    from smallmines.training import fit\n",
     "smallmines.models.registry -> smallmines.training"),
    ("smallmines.bands", "from smallmines.analysis import figures as fig\n",
     "smallmines.bands -> smallmines.analysis.figures"),
])
def test_the_check_sees_upward_imports(module: str, source: str, expected: str) -> None:
    assert upward({module: imports_of(module, source)}) == [expected]
    assert upward({module: imports_of(module, "from smallmines.errors import ConfigError\n")}) == []


def test_public_entry_points_import_from_their_stage() -> None:
    from smallmines.analysis import compare_maps
    from smallmines.data import SmallMinesDS
    from smallmines.mapping import map_scene
    from smallmines.models import load_model
    from smallmines.report import build_report
    from smallmines.training import benchmark, evaluate, fit

    assert all(callable(f) for f in (compare_maps, SmallMinesDS, map_scene, load_model, build_report, benchmark,
                                     evaluate, fit))
    assert fit.__module__ == "smallmines.training.trainer"
    assert benchmark.__module__ == "smallmines.training.benchmarking"


def test_old_flat_paths_still_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from smallmines.training.evaluation import evaluate

    monkeypatch.delitem(sys.modules, "smallmines.evaluation", raising=False)
    with pytest.warns(DeprecationWarning, match="smallmines.training.evaluation"):
        old = importlib.import_module("smallmines.evaluation")
    assert old.evaluate is evaluate and old.__spec__.name == "smallmines.training.evaluation"
    assert importlib.import_module("smallmines.change").compare_maps.__module__ == "smallmines.analysis.change"
