"""The package layout's import rules, read from the code's own imports.

Each subpackage may import only the packages below it (see the docstring of
its ``__init__.py`` and docs/architecture.md). A new import that points up or
sideways fails here, with the file and the line.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import heavy_modules_loaded

PACKAGE = Path(__file__).resolve().parents[1] / "embedclf"

#: package -> the embedclf packages its modules may import. The top-level
#: modules (exceptions, _compat, _legacy_paths, _version for __version__) are
#: importable from everywhere and listed as "embedclf".
ALLOWED = {
    "cli": {"workflow", "embedding", "cache", "heads", "model_selection"},
    "workflow": {"embedding", "cache", "heads", "model_selection"},
    "embedding": {"cache"},
    "cache": set(),
    "heads": {"model_selection"},
    "model_selection": set(),
}
TOP_LEVEL = {
    "exceptions",
    "_compat",
    "_lazy",
    "_legacy_paths",
    "_version",
    "__main__",
}

#: third-party library -> the modules allowed to import it (path prefixes).
OWNERS = {
    "tensorflow": ("embedding/", "workflow/_export/", "workflow/_summaries.py"),
    "tensorflow_hub": ("embedding/_backbones.py",),
    "keras": ("embedding/_keras_backbone.py",),
    "h5py": ("cache/",),
    # the optional [dask] extra: the client side and the task run on workers
    "distributed": ("embedding/_dask.py", "embedding/_dask_worker.py"),
    "dask": ("embedding/_dask.py",),
    # the optional [lite] extra: running a TensorFlow Lite export
    "ai_edge_litert": ("workflow/_export/_litert.py",),
    # the OpenVINO runtime: conversion, NNCF int8 calibration, compilation
    "openvino": ("embedding/_openvino.py",),
    "nncf": ("embedding/_openvino.py",),
}


def _imports(path: Path):
    """(line, imported module) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            if node.module == "embedclf":  # from embedclf import heads
                for alias in node.names:
                    yield node.lineno, f"embedclf.{alias.name}"


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else None


def test_every_module_lives_in_a_known_package():
    flat = {p.stem for p in _modules() if _package_of(p) is None}
    assert flat <= TOP_LEVEL | {"__init__"}, (
        f"modules outside a subpackage: {sorted(flat - TOP_LEVEL)}; put each "
        "in the package of its concern"
    )
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_docstring_states_its_rules(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "Owns:" in doc and "May import:" in doc


def test_imports_point_down():
    wrong = []
    for path in _modules():
        src = _package_of(path)
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "embedclf" or len(parts) < 2:
                continue
            dst = parts[1]
            if dst in TOP_LEVEL or dst == src or dst.startswith("__"):
                continue
            if src is None:  # top-level modules import no subpackage eagerly
                if path.name == "__main__.py" and dst == "cli":
                    continue
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
            elif dst not in ALLOWED[src]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_heavy_libraries_have_one_owner():
    wrong = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for line, module in _imports(path):
            lib = module.split(".")[0]
            if lib in OWNERS and not rel.startswith(OWNERS[lib]):
                wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "heavy imports outside their owner:\n" + "\n".join(wrong)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """embedclf module -> the embedclf modules it imports, anywhere in it.

    Imports inside functions (lazy ones) count: they close a circle at run
    time as surely as module-level ones, and so do a package's lazy
    re-exports (the modules its ``_EXPORTS`` names, ``_lazy.py``).
    ``from package import name`` points at the module ``package.name`` when
    there is one, else at the package.
    """
    modules = {_module_name(p): p for p in _modules()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            targets += _lazy_exports(node)
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _lazy_exports(node) -> list[str]:
    """The modules named by an ``_EXPORTS = {name: module}`` assignment."""
    if not (
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
        and isinstance(node.value, ast.Dict)
    ):
        return []
    return [v.value for v in node.value.values if isinstance(v, ast.Constant)]


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_no_import_circle():
    circles = _circles(_import_graph())
    assert not circles, "modules that import each other (directly or not):\n" + (
        "\n".join(" <-> ".join(c) for c in circles)
    )


def test_the_circle_check_can_fail(tmp_path, monkeypatch):
    fake = tmp_path / "embedclf"
    (fake / "cli").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "cli" / "_a.py").write_text("def f():\n    from embedclf.cli._b import g\n")
    (fake / "cli" / "_b.py").write_text("from embedclf.cli import _a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="embedclf.cli._a <-> embedclf.cli._b"):
        test_no_import_circle()


def test_cli_functions_are_short():
    """The CLI parses, calls and prints: no function of it over 80 lines."""
    long = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long.append(f"cli/{path.name}:{node.lineno} {node.name} ({n})")
    assert not long, "CLI functions over 80 lines (move logic to workflow/):\n" + (
        "\n".join(long)
    )


def test_a_lazy_re_export_closes_a_circle(tmp_path, monkeypatch):
    fake = tmp_path / "embedclf"
    (fake / "cache").mkdir(parents=True)
    (fake / "__init__.py").write_text('_EXPORTS = {"X": "embedclf.cache._x"}\n')
    (fake / "cache" / "__init__.py").write_text("")
    (fake / "cache" / "_x.py").write_text("from embedclf import __version__\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="embedclf <-> embedclf.cache._x"):
        test_no_import_circle()


def test_the_checks_can_fail(tmp_path, monkeypatch):
    # A module in cache/ that imports the embedding package must be caught.
    fake = tmp_path / "embedclf"
    (fake / "cache").mkdir(parents=True)
    (fake / "cache" / "_bad.py").write_text("from embedclf.embedding import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="cache/_bad.py:1 imports"):
        test_imports_point_down()


def test_import_embedclf_stays_light():
    code = "from embedclf import ImageEmbedder, SoftmaxClassifier, load_image_folder\n"
    heavy, _ = heavy_modules_loaded(
        code,
        ("tensorflow", "h5py", "tensorflow_hub", "dask", "distributed", "openvino"),
    )
    assert heavy == []
