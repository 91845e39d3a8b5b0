"""Each dvc.yaml stage's code `deps` cover the code its command runs, so `dvc repro` re-runs a stage
whenever a module it imports changes (and `dvc status` never calls a stale output up to date).

The code a stage runs: `pseudovad <stage>` imports `pseudovad.cli`, then `pseudovad.stages.<stage>`,
and everything of the package those import, transitively, read with `ast` (nothing imported): an
import inside a function counts, so does a module path written as a string (what `importlib` and
Ray load by name), a name `evaluation/__init__` exports lazily (`_EXPORTS`), and the `__init__.py`
of every package on the way. A module that scans its package (`pkgutil.iter_modules`: the method
registry, `method_spec.py`) loads every module beside it; of those, the walk follows what they
import at the top (a method's spec), not what their functions import lazily (its network and
update rule, which the stages that run a model reach on their own paths).
A `deps` entry covers a file when it is that file or a folder holding it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "pseudovad"
PIPELINES = ("dvc.yaml", "tune/dvc.yaml")


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / PACKAGE).rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """A package `__init__`'s `_EXPORTS = {name: submodule}` (PEP 562 lazy names)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imports_of(mod: str, files: dict[str, Path], top_level: bool = False) -> set[str]:
    """The package's modules `mod` imports directly (any import, at any depth of its code; with
    `top_level`, only the module's own statements)."""
    path = files[mod]
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(name: str) -> None:
        while name not in files and "." in name:       # `pseudovad.x.y` where y is a name in x
            name = name.rsplit(".", 1)[0]
        if name in files:
            out.add(name)

    tree = ast.parse(path.read_text(), str(path))
    nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             for n in ast.walk(top)] if top_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Attribute) and node.attr == "iter_modules":     # a plugin scan
            out |= scanned_modules(tree, files)
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == PACKAGE:
                    add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_package else mod.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            add(target)
            lazy = _lazy_exports(ast.parse(files[target].read_text())) if target in files and \
                files[target].name == "__init__.py" else {}
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in files:
                    out.add(sub)
                elif a.name in lazy:
                    out.add(f"{target}.{lazy[a.name]}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in files:
            out.add(node.value)                         # importlib.import_module("pseudovad.x")
    return out


def scanned_modules(tree: ast.Module, files: dict[str, Path]) -> set[str]:
    """The modules of the packages a scanning module names as strings (`"pseudovad.methods"`)."""
    packages = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in files}
    return {m for m in files if m.rsplit(".", 1)[0] in packages}


def closure(start: list[str], files: dict[str, Path]) -> set[Path]:
    """The files of every module reachable from `start`, with each package's `__init__.py`."""
    seen: set[str] = set()
    scanned: set[str] = set()            # loaded by a plugin scan: their top-level imports only
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]     # the packages on the way
        found = imports_of(mod, files, top_level=mod in scanned)
        tree = ast.parse(files[mod].read_text())
        if any(isinstance(n, ast.Attribute) and n.attr == "iter_modules" for n in ast.walk(tree)):
            scanned |= scanned_modules(tree, files) - seen
        todo += sorted(found - seen)
    return {files[m] for m in seen}


def stages() -> list[tuple[str, str, dict]]:
    out = []
    for pipeline in PIPELINES:
        spec = yaml.safe_load((ROOT / pipeline).read_text())
        for name, stage in spec["stages"].items():
            out.append((pipeline, name, stage))
    return out


def uncovered(pipeline: str, stage: dict) -> list[str]:
    """Files the stage's command runs that no `deps` entry covers (repository-relative)."""
    files = _modules()
    words = stage["cmd"].split()
    assert words[0] == PACKAGE, f"{pipeline}: {stage['cmd']!r} is not a `pseudovad <stage>` command"
    wdir = (ROOT / pipeline).parent / stage.get("wdir", ".")
    deps = [(wdir / str(d)).resolve() for d in stage.get("deps", [])]
    code = closure([f"{PACKAGE}.cli", f"{PACKAGE}.stages.{words[1]}"], files)
    return sorted(str(f.relative_to(ROOT)) for f in code
                  if not any(f == d or f.is_relative_to(d) for d in deps))


@pytest.mark.parametrize("pipeline,name,stage", stages(), ids=[f"{p}:{n}" for p, n, _ in stages()])
def test_each_stage_deps_cover_the_code_its_command_imports(pipeline, name, stage):
    assert uncovered(pipeline, stage) == [], f"{pipeline}: stage {name}: add these to its deps"


def test_the_import_walk_sees_lazy_and_in_function_imports():
    """The walk itself: train reaches device.py only through an import inside a function, and
    `from pseudovad.evaluation import Detector` (a lazy name) reaches evaluation/streaming.py."""
    files = _modules()
    code = {str(p.relative_to(SRC)) for p in closure([f"{PACKAGE}.stages.train"], files)}
    assert {"pseudovad/device.py", "pseudovad/evaluation/streaming.py", "pseudovad/__init__.py",
            "pseudovad/stages/__init__.py", "pseudovad/stages/train.py"} <= code
    assert "pseudovad/stages/score.py" not in code
