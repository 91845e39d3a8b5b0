"""The reference pages, generated from the code every time the site is built (never by hand).

An MkDocs hook (mkdocs.yml `hooks:`): `on_files` adds two pages to the build, made from
- every params key: `pseudovad.config.documented_keys` (type, default, description: the one place
  a key is described) beside the repository's params.yaml;
- every command and option of `pseudovad` and `pseudovad-kfp`: their argparse parsers.
The Kubeflow pipeline parameters' page (docs/deploy/parameters.md) holds the tables
`pseudovad-kfp parameters PIPELINE --markdown` prints (tests/test_kfp_params.py keeps them equal);
`undescribed` also checks that every pipeline parameter carries a description.
tests/test_docs.py builds the site with PSEUDOVAD_REFERENCE_DUMP set and reads what was generated:
a key, option or parameter without a description, or a page that lists fewer keys than the config
has, fails the suite.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Reading the code

def params_rows() -> list[Any]:
    """Every params section and key as `pseudovad.config` documents it (KeyDoc rows)."""
    from pseudovad.config import documented_keys

    return documented_keys()


def params_yaml_values(path: Path = ROOT / "params.yaml") -> dict[str, Any]:
    """The repository's params.yaml as dotted keys (a mapping-valued key such as tune.space is one value)."""
    from pseudovad.config import Config

    leaves = set(Config().flat())
    out: dict[str, Any] = {}

    def walk(prefix: str, tree: dict) -> None:
        for k, v in tree.items():
            key = prefix + str(k)
            if isinstance(v, dict) and key not in leaves:
                walk(key + ".", v)
            else:
                out[key] = v

    walk("", yaml.safe_load(path.read_text()) or {})
    return out


@functools.cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    """The two command lines' parsers, every stage's arguments included."""
    from pipelines import cli as kfp_cli
    from pseudovad import cli

    return {"pseudovad": cli.build_parser()[0], "pseudovad-kfp": kfp_cli.build_parser()}


def commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line summary, parser) of each subcommand (argparse keeps them in private fields)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, summaries.get(name, ""), sub


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user passes to `parser` (help and subcommands left out)."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@functools.cache
def pipelines() -> dict[str, Any]:
    """The Kubeflow pipelines by the name `pseudovad-kfp` gives them. Load them before `parsers`
    (`undescribed` and `on_files` do): KFP inspects the call stack for every task it adds, which
    takes seconds per pipeline once the stages have imported torch and scikit-learn (thousands more
    modules to search)."""
    from pipelines import cli as kfp_cli

    return {name: kfp_cli.load_pipeline(name) for name in kfp_cli.PIPELINES}


def undescribed() -> list[str]:
    """Every params key, command-line option and pipeline parameter that has no description."""
    missing = [f"params key {k.key}" for k in params_rows() if not k.description.strip()]
    for name, pipeline in pipelines().items():
        missing += [f"pipeline {name} parameter {p}" for p, spec in pipeline.component_spec.inputs.items()
                    if not (spec.description or "").strip()]
    for prog, parser in parsers().items():
        missing += [f"{prog} {_flags(a)}" for a in options(parser) if not _help(a)]
        for name, summary, sub in commands(parser):
            if not summary:
                missing.append(f"{prog} {name}")
            missing += [f"{prog} {name} {_flags(a)}" for a in options(sub) if not _help(a)]
    return missing


# ----------------------------------------------------------------------------------------------
# Writing the pages

def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(v: Any) -> str:
    if v is None:
        return "`null`"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, (list, dict)):
        return f"`{json.dumps(v, ensure_ascii=False)}`"
    if isinstance(v, str) and not v:
        return '`""`'
    return f"`{v}`"


GENERATED = ("<!-- Generated from the code by docs/gen_reference.py when the site is built; "
             "do not edit (there is no file to edit). -->\n\n")


def params_page() -> str:
    rows = params_rows()
    repo = params_yaml_values()
    keys = [r for r in rows if r.type != "section"]
    out = [GENERATED, "# params.yaml keys\n\n",
           f"Every one of the {len(keys)} params keys, generated from `pseudovad.config` (the one place a key "
           "is described). *default* is the code's default, the papers' GPU settings; *params.yaml* is the "
           "repository's CPU profile on the synthetic footage, where it differs. Set a key in a params file "
           "(`-P FILE`), on the command line (`-p key=value`, YAML values), in a DVC experiment "
           "(`dvc exp run -S key=value`) or through a Kubeflow parameter. Unknown keys, wrong types and "
           "out-of-range values are refused before any work, with one line naming the key (exit code 2).\n"]
    header = "| key | type | default | params.yaml | description |\n|---|---|---|---|---|\n"
    table_open = False
    for r in rows:
        if r.type == "section":
            depth = r.key.count(".")
            out.append(f"\n{'#' * (2 + depth)} `{r.key}`\n\n{r.description}\n\n")
            table_open = False
            continue
        if not table_open:
            if "." not in r.key:
                out.append("\n## Top level\n\n")
            out.append(header)
            table_open = True
        here = repo.get(r.key, r.default)
        kind = r.type + (": " + ", ".join(f"`{c}`" for c in r.choices) if r.choices else "")
        out.append(f"| `{r.key}` | {_cell(kind)} | {_value(r.default)} | "
                   f"{_value(here) if here != r.default else ''} | {_cell(r.description)} |\n")
    return "".join(out)


def _flags(a: argparse.Action) -> str:
    return ", ".join(a.option_strings) if a.option_strings else (a.metavar or a.dest).upper()


def _help(a: argparse.Action) -> str:
    text = a.help or ""
    if text == argparse.SUPPRESS:
        return ""
    if "%(" in text:
        text = text % {"default": a.default, "prog": "", "choices": a.choices}
    return " ".join(text.split())


def _takes(a: argparse.Action) -> str:
    if a.nargs == 0:
        return ""
    if a.choices:
        return " \\| ".join(f"`{c}`" for c in a.choices)
    name = a.metavar or (a.dest.upper() if a.option_strings else a.dest)
    if isinstance(name, tuple):
        name = " ".join(name)
    return f"`{name}`" + (" …" if a.nargs in ("*", "+") else "")


def _default(a: argparse.Action) -> str:
    if a.default in (None, argparse.SUPPRESS, False, []) or a.nargs == 0:
        return "required" if a.required else ""
    return _value(a.default)


def _options_table(acts: list[argparse.Action]) -> str:
    rows = ["| option | value | default | description |\n|---|---|---|---|\n"]
    for a in acts:
        rows.append(f"| `{_flags(a)}` | {_takes(a)} | {_default(a)} | {_cell(_help(a))} |\n")
    return "".join(rows)


def _shared(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, list[str]]]:
    """Options that several subcommands take alike (same flags, same help): listed once."""
    seen: dict[tuple[str, str], tuple[argparse.Action, list[str]]] = {}
    for name, _, sub in commands(parser):
        for a in options(sub):
            if a.option_strings:
                seen.setdefault((_flags(a), _help(a)), (a, []))[1].append(name)
    return {flags: (a, names) for (flags, _), (a, names) in seen.items() if len(names) > 1}


def cli_page() -> str:
    out = [GENERATED, "# Command line\n\n",
           "Every command and option of `pseudovad` (the stages) and `pseudovad-kfp` (Kubeflow), generated "
           "from their argument parsers; `--help` on any command prints the same. Bad input is one line "
           "naming the file or option, exit code 2.\n"]
    for prog, parser in parsers().items():
        out.append(f"\n## `{prog}`\n\n{_cell(parser.description or '')}\n\n")
        mine = options(parser)
        if mine:
            out.append(f"Options of `{prog}` itself:\n\n{_options_table(mine)}\n")
        shared = _shared(parser)
        if shared:
            out.append(f"\nOptions several `{prog}` commands take:\n\n"
                       "| option | value | default | commands | description |\n|---|---|---|---|---|\n")
            for flags, (a, names) in shared.items():
                out.append(f"| `{flags}` | {_takes(a)} | {_default(a)} | {', '.join(names)} | {_cell(_help(a))} |\n")
        for name, summary, sub in commands(parser):
            out.append(f"\n### `{prog} {name}`\n\n{_cell(summary)}\n\n")
            acts = [a for a in options(sub) if _flags(a) not in shared]
            also = [f"`{_flags(a)}`" for a in options(sub) if _flags(a) in shared]
            out.append(_options_table(acts) if acts else "No options of its own.\n")
            if also:
                out.append(f"\nAnd {', '.join(also)} (above).\n")
    return "".join(out)


# Site path → the function that writes it.
PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/params.md": params_page,
}


# With this variable set, the build also writes what it generated to that JSON file (for the tests).
DUMP = "PSEUDOVAD_REFERENCE_DUMP"


def on_files(files, config):
    """MkDocs hook: add the generated pages to the site."""
    from mkdocs.structure.files import File

    pipelines()
    pages = {path: make() for path, make in PAGES.items()}
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    if os.environ.get(DUMP):
        Path(os.environ[DUMP]).write_text(json.dumps({
            "pages": pages, "undescribed": undescribed(),
            "inputs": {name: list(p.component_spec.inputs) for name, p in pipelines().items()}}))
    return files
