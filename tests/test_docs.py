"""The documentation: the site builds with `--strict` (a broken link, anchor or missing page fails),
offline, from the pinned MkDocs; the generated reference pages describe every params key, command
option and pipeline parameter; README stays short, its links resolve, its numbers are the ones in
benchmarks/RESULTS.md, and its shell blocks run as written on a fresh copy of the repository (the
blocks marked `runnable`) or at least parse (every other `pseudovad`, `pseudovad-kfp` and `make`
line)."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from pseudovad import config as config_mod

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = ROOT / "README.md"
GEN = ROOT / "docs" / "gen_reference.py"
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_MKDOCS_2_WARNING": "1",
       "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg"}
ENV.pop("MLFLOW_TRACKING_URI", None)

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """`mkdocs build --strict` of the site, and what its hook generated (docs/gen_reference.py)."""
    tmp = tmp_path_factory.mktemp("docs")
    dump = tmp / "generated.json"
    out = subprocess.run([BIN / "mkdocs", "build", "--strict", "-f", ROOT / "mkdocs.yml", "-d", tmp / "site"],
                         cwd=ROOT, env={**ENV, "PSEUDOVAD_REFERENCE_DUMP": str(dump)}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {"site": tmp / "site", **json.loads(dump.read_text())}


def _table_rows(page: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in page.splitlines()
            if line.startswith("| `")]


# ----------------------------------------------------------------------------------------------
# Generated reference pages

def test_every_key_option_and_parameter_has_a_description(built):
    assert built["undescribed"] == []


def test_params_page_lists_every_key_with_its_default(built):
    from pseudovad.config import Config, documented_keys

    rows = {r[0].strip("`"): r for r in _table_rows(built["pages"]["reference/params.md"])}
    flat = Config().flat()
    assert sorted(rows) == sorted(flat) and len(rows) == len(flat)
    assert rows["train.lr"][2] == "`0.0001`" and rows["train.lr"][3] == "`0.001`"    # code default, params.yaml
    assert rows["data.size"][2] == "`[256, 256]`" and rows["data.size"][3] == "`[64, 96]`"
    assert "`auto`, `cpu`, `cuda`" in rows["device"][1]
    described = {k.key: k.description for k in documented_keys()}
    assert rows["pseudo.lam"][4] == described["pseudo.lam"]


class _Section(pydantic.BaseModel):
    """A section."""

    described: int = pydantic.Field(1, description="has one")
    bare: int = 2


class _Root(pydantic.BaseModel):
    section: _Section = pydantic.Field(default_factory=_Section)


def test_a_key_without_description_is_reported_as_such(monkeypatch):
    """What the docs test refuses: the config's reader gives an undescribed key the description ''."""
    monkeypatch.setattr(config_mod, "Config", _Root)
    assert [(k.key, k.type, k.description) for k in config_mod.documented_keys()] == [
        ("section", "section", "A section."), ("section.described", "int", "has one"), ("section.bare", "int", "")]


def test_cli_page_lists_every_command_and_option(built):
    from pipelines import cli as kfp_cli
    from pseudovad import cli

    page = built["pages"]["reference/cli.md"]
    for prog, parser in (("pseudovad", cli.build_parser()[0]), ("pseudovad-kfp", kfp_cli.build_parser())):
        subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
        for name, sub in subs.items():
            assert f"### `{prog} {name}`" in page
            for action in sub._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        assert f"`{flag}" in page or f", {flag}" in page, (prog, name, flag)
    section = page.split("### `pseudovad extract`")[1].split("###")[0]
    assert "--device" not in section and "--threads" not in section      # extract runs no model


def test_pipeline_page_shows_every_parameter(built):
    """docs/deploy/parameters.md holds the generated tables (tests/test_kfp_params.py); the site shows
    every parameter of both pipelines."""
    page = (built["site"] / "deploy" / "parameters" / "index.html").read_text()
    for pipeline, inputs in built["inputs"].items():
        assert inputs and all(f"<code>{name}</code>" in page for name in inputs), pipeline


# ----------------------------------------------------------------------------------------------
# The site

def test_site_builds_strict_and_offline(built):
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert cfg["theme"]["font"] is False and cfg["plugins"] == ["search"]   # nothing fetched at build time
    site = built["site"]
    params = (site / "reference" / "params" / "index.html").read_text()
    assert "pseudo.patch_max_move" in params and "LNTRA β" in params
    assert "gpu_tolerations" in (site / "deploy" / "parameters" / "index.html").read_text()
    external = re.compile(r"""<(?:link|script|img)[^>]+(?:href|src)=["']?(?:https?:)?//""")
    for page in site.rglob("*.html"):
        assert not external.search(page.read_text()), f"{page}: loads something from the network"
    for image in re.findall(r"\]\((?:\.\./)*(images/[^)\s]+)\)", "".join(
            p.read_text() for p in (ROOT / "docs").rglob("*.md"))):
        assert (site / image).is_file(), image


# ----------------------------------------------------------------------------------------------
# README

def _blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced code block."""
    return re.findall(r"^```([^\n]*)\n(.*?)^```", text, flags=re.M | re.S)


def _commands(body: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments dropped, split at && ; |."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w in ("&&", ";", "|", "||"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-")
             for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        assert not link.startswith(("http://", "https://")), f"{link}: README links stay in the repository"
        path, _, anchor = link.partition("#")
        if path:
            assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
        elif anchor:
            assert anchor in slugs, f"README links to #{anchor}, which is no heading of it"


def test_readme_results_are_the_recorded_ones():
    text = README.read_text()
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    section = text.split("## Results that matter")[1].split("\n## ")[0]
    numbers = re.findall(r"\d+\.\d+(?: ± \d+\.\d+)?", section)
    assert len(numbers) >= 10
    missing = [n for n in numbers if n not in results]
    assert missing == [], f"README numbers not in benchmarks/RESULTS.md: {missing}"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The working tree as a fresh clone would have it (tracked and new files, nothing ignored), committed."""
    copy = tmp_path_factory.mktemp("readme") / "pseudovad"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (copy / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, copy / f)
    git = ["git", "-c", "user.name=readme", "-c", "user.email=readme@localhost", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=copy, check=True)
    return copy


def test_readme_runnable_blocks_run_on_a_fresh_copy(fresh_copy):
    runnable = [body for info, body in _blocks(README.read_text()) if info.split()[1:2] == ["runnable"]]
    assert runnable
    for body in runnable:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=fresh_copy, env=ENV,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"README block failed:\n{body}\n{out.stderr[-2000:]}"
    assert (fresh_copy / "training.yaml").is_file()          # the compile block's pipeline


def test_readme_other_commands_parse(fresh_copy, built, monkeypatch):
    """Blocks too slow to run here (make run, training, a cluster): each pseudovad, pseudovad-kfp and
    make command still parses as written, and its params keys and pipeline parameters exist."""
    from pipelines import cli as kfp_cli
    from pseudovad import cli

    monkeypatch.chdir(fresh_copy)
    checked = 0
    for info, body in _blocks(README.read_text()):
        if info.split()[:1] != ["bash"] or "runnable" in info.split():
            continue
        for cmd in _commands(body):
            if cmd[0] == "pseudovad":
                args = cli.build_parser([cmd[1]])[0].parse_args(cmd[1:])
                config_mod.load(getattr(args, "params", "params.yaml"), list(getattr(args, "set", []) or []))
            elif cmd[0] == "pseudovad-kfp":
                a = kfp_cli.build_parser().parse_args(cmd[1:])
                unknown = [x.split("=")[0] for x in a.arg if x.split("=")[0] not in built["inputs"][a.pipeline]]
                assert unknown == [], f"{' '.join(cmd)}: no pipeline parameter {unknown}"
            elif cmd[0] == "make":
                subprocess.run(["make", "-n", *cmd[1:]], cwd=fresh_copy, env=ENV, check=True, capture_output=True)
            else:
                continue
            checked += 1
    assert checked >= 8
