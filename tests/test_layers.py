"""The package's layout holds: no import cycles, and each layer imports only what
docs/architecture.md says it may (read from the code with `ast`, nothing is imported).

An import inside a function counts like one at the top: a lazy import still ties two modules.
`from pseudovad.x import y` is an import of module `pseudovad.x.y` when that is a module, else of
`pseudovad.x` (its `__init__`).
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "pseudovad"

# What each part of src/pseudovad may import from the package (docs/architecture.md, one line per
# module). A key names a module or a folder ("training/" = every module in it); the longest key
# that matches decides. An import of the part itself (a module of the same folder) is always fine.
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors", "method_spec", "params_types", "params_yaml"},
    "method_spec": {"errors"},
    "params_types": {"errors"},
    "params_yaml": {"errors"},
    "files": {"errors"},
    "device": {"errors"},
    "calibration": {"errors"},
    "gate": set(),
    "results": {"__init__", "errors", "files"},   # __init__: the package version
    "geometry": {"config", "method_spec"},
    "build": {"errors"},
    "storage": {"errors"},
    "pseudo/": {"errors"},
    "data/": {"config", "errors", "files", "geometry", "method_spec", "storage"},
    "models/": {"config", "errors", "files", "geometry", "method_spec"},
    "evaluation/": {"calibration", "config", "data/", "device", "errors", "files", "geometry", "method_spec",
                    "models/", "results"},
    "scoring/": {"calibration", "config", "data/", "errors", "evaluation/", "files"},
    "tracking/": {"build", "config", "errors", "evaluation/", "files", "method_spec", "models/", "results"},
    "registry/": {"config", "errors", "files", "gate", "method_spec", "models/", "results", "tracking/"},
    "training/": {"calibration", "config", "data/", "device", "errors", "evaluation/", "files", "geometry",
                  "method_spec", "models/", "pseudo/", "registry/", "results", "tracking/"},
    # a method's module: its spec, over its networks (models/) and its update rule (training/)
    "methods/": {"config", "errors", "geometry", "method_spec", "models/", "params_types", "training/"},
    "tune/": {"calibration", "config", "data/", "device", "errors", "evaluation/", "files", "geometry",
              "method_spec", "models/", "results", "tracking/", "training/"},
    "retrain": {"config", "data/", "errors", "registry/"},
    "kubeflow": {"build", "config", "data/", "errors", "models/", "results", "tracking/"},
    "dvc_cache": {"config", "data/", "errors", "storage"},
    "stages/": {"config", "data/", "device", "errors", "evaluation/", "files", "method_spec", "registry/", "results",
                "retrain", "scoring/", "storage", "tracking/", "training/", "tune/"},
    "stages/retrain": {"config", "errors", "files", "retrain", "stages/", "tracking/"},
    "cli": {"build", "config", "device", "errors", "stages/"},
    "__main__": {"cli"},
    "__init__": set(),
}
# Libraries that decide a layer's weight: models/ must load on a machine without MLflow.
NEVER: dict[str, set[str]] = {"models/": {"mlflow"}}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_imports() -> dict[str, set[str]]:
    """{module: the modules (of the package, and top-level libraries) it imports}."""
    files = {module_name(p): p for p in (SRC / PACKAGE).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_package = path.name == "__init__.py"
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:                                   # relative: from its own package
                    base = mod.split(".") if is_package else mod.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    out.add(sub if sub in files else target)
        graph[mod] = {m if m in files or not m.startswith(PACKAGE + ".") else _owner(m, files) for m in out}
    return graph


def _owner(name: str, files) -> str:
    while name not in files and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def part(mod: str) -> str:
    """The MAY_IMPORT key a module of the package falls under."""
    rel = mod[len(PACKAGE) + 1:] if mod != PACKAGE else "__init__"
    best = ""
    for key in MAY_IMPORT:
        k = key.rstrip("/").replace("/", ".")
        if rel == k or (key.endswith("/") and rel.startswith(k + ".")) or (key.endswith("/") and rel == k):
            if len(key) > len(best):
                best = key
    assert best, f"{mod}: no line in MAY_IMPORT (add it, and to docs/architecture.md)"
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(read_imports()) == []


def test_each_layer_imports_only_what_the_architecture_allows():
    graph = read_imports()
    broken = []
    for mod, targets in sorted(graph.items()):
        here = part(mod)
        for t in sorted(targets):
            if not t.startswith(PACKAGE + ".") and t != PACKAGE:
                continue
            there = part(t)
            if there != here and there not in MAY_IMPORT[here]:
                broken.append(f"{mod} imports {t} ({here} may not import {there})")
    assert broken == []


def test_nothing_below_the_stages_imports_a_stage():
    graph = read_imports()
    below = ("training", "tune", "evaluation", "scoring", "models", "data", "pseudo")
    wrong = [f"{m} imports {t}" for m, ts in graph.items() for t in ts
             if m.split(".")[1:2] and m.split(".")[1] in below and t.startswith(f"{PACKAGE}.stages")]
    assert wrong == []


def test_models_never_reach_mlflow_not_even_through_another_module():
    graph = read_imports()
    for layer, banned in NEVER.items():
        prefix = f"{PACKAGE}.{layer.rstrip('/').replace('/', '.')}"
        for mod in (m for m in graph if m == prefix or m.startswith(prefix + ".")):
            seen, todo = set(), [mod]
            while todo:                                      # everything `mod` imports, transitively
                m = todo.pop()
                for t in graph.get(m, ()):
                    assert t.split(".")[0] not in banned, f"{mod} reaches {t} (via {m})"
                    if t in graph and t not in seen:
                        seen.add(t)
                        todo.append(t)


def test_every_module_has_its_line_on_the_architecture_page():
    """docs/architecture.md ("One line per module") names every module of the package, and no
    module that is gone: a line starts with the module's path (later names on a line share its
    folder; `stages/<stage>.py` stands for every stage)."""
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    listed: set[str] = set()
    for line in page.split("## One line per module", 1)[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("- `"):
            folder = ""
            for name in re.findall(r"`([^`]+)`", line.split(" — ", 1)[0]):
                folder = name.rsplit("/", 1)[0] + "/" if "/" in name else folder
                listed.add(name if "/" in name else folder + name)
    modules = {str(p.relative_to(SRC / PACKAGE)) for p in (SRC / PACKAGE).rglob("*.py") if p.name != "__init__.py"}
    stages = {m for m in modules if m.startswith("stages/")} if "stages/<stage>.py" in listed else set()
    assert sorted(modules - listed - stages) == []
    assert sorted(n for n in listed - modules if "<" not in n and not n.endswith("__init__.py")) == []
