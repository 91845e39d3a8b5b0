"""The pipelines' parameters, each described once.

A typed parameter (one that sets a params key) is described by `pseudovad.kubeflow.TYPED`; every
other one (data, infrastructure) in its pipeline function's docstring, `Args:`. `described` adds
the typed ones to that docstring before `dsl.pipeline` reads it, so the compiled pipeline, and
with it the KFP UI, carries every parameter's meaning and the rule. `table` (docs/deploy/parameters.md)
and `listing` (`pseudovad-kfp parameters`) are built from the same two sources, and
tests/test_kfp_params.py checks the signatures against `TYPED`, so none of them can drift.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Callable

from pseudovad import config as config_mod
from pseudovad.kubeflow import PIPELINE_PARAMS, TYPED, UNSET

RULE = ("The params file decides; a typed parameter changes its params key only when you set it. "
        "Left unset (-1, an empty string or [] in the KFP UI), the key keeps the file's value (without "
        "a file: the code default).")


def code_default(key: str) -> Any:
    """The config's own default of a params key (what a params file that omits it gets)."""
    return config_mod.Config().flat()[key]


def shown(value: Any) -> str:
    """A value as the docs and the CLI show it (YAML's spelling: null, true, [2, 3])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value)


def typed_meaning(name: str, required: bool = False) -> str:
    """A typed parameter's description: what it sets, its meaning, and what unset means."""
    key = PIPELINE_PARAMS[name]
    _, kind, meaning = TYPED[key]
    if required:
        return f"{meaning} (sets `{key}`)"
    return (f"{meaning} (sets `{key}`; unset, {shown(UNSET[kind])}: the params file's value, "
            f"code default {shown(code_default(key))})")


def described(func: Callable) -> Callable:
    """Add the typed parameters of `func` to its docstring's `Args:`, where KFP reads parameter
    descriptions; apply below `@dsl.pipeline`."""
    signature = inspect.signature(func).parameters
    lines = [f"    {n}: {typed_meaning(n, required=p.default is inspect.Parameter.empty)}"
             for n, p in signature.items() if n in PIPELINE_PARAMS]
    doc = inspect.cleandoc(func.__doc__ or "")
    func.__doc__ = doc + ("\n" if "Args:" in doc else "\n\nArgs:\n") + "\n".join(lines) + "\n"
    return func


def rows(pipeline) -> list[tuple[str, str, str]]:
    """(parameter, default, meaning) of every parameter of a compiled-form pipeline, in signature order."""
    out = []
    for name, spec in (pipeline.component_spec.inputs or {}).items():
        if name in PIPELINE_PARAMS and spec.default is not None:
            key = PIPELINE_PARAMS[name]
            default = f"params ({shown(code_default(key))})"   # unset: the file's value (the code's)
        else:
            default = "required" if spec.default is None and not spec.optional else shown(spec.default)
        if name in PIPELINE_PARAMS:
            meaning = f"{TYPED[PIPELINE_PARAMS[name]][2]} (`{PIPELINE_PARAMS[name]}`)"
        else:
            meaning = " ".join((spec.description or "").split())
        out.append((name, default, meaning))
    return out


def table(pipeline) -> str:
    """The Markdown table of a pipeline's parameters (docs/deploy/parameters.md)."""
    lines = ["| parameter | default | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {d.replace('|', '∣')} | {m.replace('|', '∣')} |" for n, d, m in rows(pipeline)]
    return "\n".join(lines) + "\n"


def listing(pipeline) -> str:
    """A pipeline's parameters as plain text (`pseudovad-kfp parameters`)."""
    out = [f"{pipeline.name}: {RULE}", ""]
    for name, default, meaning in rows(pipeline):
        out.append(f"  {name} = {default}\n      {meaning}")
    return "\n".join(out) + "\n"
