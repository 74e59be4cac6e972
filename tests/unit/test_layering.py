"""The layering of mcc's packages, read from the source (ast, no imports run).

    mcc.passes    imports TVM, numpy, the standard library, mcc.passes and mcc.errors only
    mcc.runtime   imports nothing of the compiler: mcc.runtime, mcc.errors, mcc.targets
    mcc.frontends imports nothing of the later stages (mcc.runtime, mcc.passes do)
    mcc.driver    is imported by nothing but the API (mcc, mcc.cli) and mcc.tuning
    no cycle between modules: neither through the imports that run when a module is
    imported (module level, with the packages above each imported module), nor through
    all imports (function-level ones too: two modules that need each other are one)
    no cycle between mcc's subpackages (mcc.tuning imports mcc.schedule, never the reverse:
    the schedule stage reads tuning records through mcc.schedule.records)

Function-level imports count everywhere: they run sooner or later.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# where each package's source lives (pyproject.toml's package-dir)
PACKAGE_DIRS = {"mcc": ROOT / "compiler", "mcc.passes": ROOT / "passes",
                "mcc.targets": ROOT / "targets", "mcc.cpp": ROOT / "runtime" / "cpp"}

PASSES_MAY_IMPORT = ("tvm", "tvm_ffi", "numpy", "mcc.passes", "mcc.errors")
RUNTIME_MAY_IMPORT = ("mcc.runtime", "mcc.errors", "mcc.targets")
FRONTENDS_MAY_IMPORT = ("mcc.frontends", "mcc.runtime", "mcc.passes", "mcc.errors")
DRIVER_IMPORTED_BY = ("mcc.driver", "mcc.cli", "mcc.tuning")  # and the package root, mcc


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the mcc package."""
    found: dict[str, Path] = {}
    for package, directory in PACKAGE_DIRS.items():
        for path in sorted(directory.rglob("*.py")):
            rel = path.relative_to(directory).with_suffix("").parts
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for each import in a module; ``from a import b``
    names ``a.b`` where that is a module of mcc, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # module level includes the bodies of top-level if / try
        if isinstance(node, (ast.If, ast.Try)):
            top.update(id(n) for n in ast.walk(node)
                       if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = name if _is_package(name) else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, id(node) in top))
    return found


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _third_party(module: str) -> bool:
    return module.split(".")[0] not in sys.stdlib_module_names and module != "__future__"


def _violations(prefix: str, allowed, *, only_mcc: bool) -> list[str]:
    bad = []
    for name, path in MODULES.items():
        if not _within(name, (prefix,)):
            continue
        for module, _ in _imports(name, path):
            if _within(module, allowed):
                continue
            if only_mcc and not _within(module, ("mcc",)):
                continue
            if not only_mcc and not _third_party(module):
                continue
            bad.append(f"{name} imports {module}")
    return sorted(set(bad))


def test_walk_finds_the_package():
    assert {"mcc", "mcc.cli", "mcc.passes.quantize", "mcc.runtime", "mcc.targets"} <= set(MODULES)


def test_passes_import_only_tvm_numpy_and_passes():
    assert _violations("mcc.passes", PASSES_MAY_IMPORT, only_mcc=False) == []


def test_runtime_imports_nothing_of_the_compiler():
    assert _violations("mcc.runtime", RUNTIME_MAY_IMPORT, only_mcc=True) == []


def test_frontends_import_no_later_stage():
    assert _violations("mcc.frontends", FRONTENDS_MAY_IMPORT, only_mcc=True) == []


def test_only_the_api_and_tuning_import_the_driver():
    bad = [f"{name} imports {module}" for name, path in MODULES.items()
           if name != "mcc" and not _within(name, DRIVER_IMPORTED_BY)
           for module, _ in _imports(name, path) if _within(module, ("mcc.driver",))]
    assert sorted(set(bad)) == []


def _module_level_graph() -> dict[str, set[str]]:
    """mcc module -> the mcc modules its module-level imports run: the module imported and
    the packages above it (their ``__init__`` runs first), except the importer's own."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        edges = set()
        for module, top in _imports(name, path):
            if not top or not _within(module, ("mcc",)):
                continue
            parts = module.split(".")
            for k in range(1, len(parts) + 1):
                target = ".".join(parts[:k])
                if target in MODULES and target not in own:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _full_graph() -> dict[str, set[str]]:
    """mcc module -> the mcc modules it imports anywhere (module or function level), but
    not its own packages (loaded before it: ``mcc.__version__``, the API verbs)."""
    graph = {}
    for name, path in MODULES.items():
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        graph[name] = {m for m, _ in _imports(name, path) if m in MODULES and m not in own}
    return graph


def test_no_import_cycles_at_import_time():
    assert _cycles(_module_level_graph()) == []


def test_no_modules_that_import_each_other():
    assert _cycles(_full_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
])
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def _package_of(module: str) -> str:
    """The subpackage of mcc a module belongs to (``mcc.tuning.log`` -> ``mcc.tuning``);
    a top-level module (``mcc.cli``) is its own, and the package root is ``mcc``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _package_graph() -> dict[str, set[str]]:
    """mcc subpackage -> the subpackages its modules import (anywhere), the API root
    (``mcc``: the verbs, which import every stage) left out."""
    graph: dict[str, set[str]] = {}
    for name, targets in _full_graph().items():
        package = _package_of(name)
        if package == "mcc":
            continue
        edges = graph.setdefault(package, set())
        edges.update(p for p in map(_package_of, targets) if p not in (package, "mcc"))
    return graph


def test_no_cycles_between_packages():
    assert _cycles(_package_graph()) == []


def test_tuning_imports_schedule_not_the_reverse():
    graph = _package_graph()
    assert "mcc.schedule" in graph["mcc.tuning"]
    assert "mcc.tuning" not in graph["mcc.schedule"]
