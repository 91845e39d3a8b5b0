"""The method registry: a method is one module, and nothing else knows its name.

A test-only third method (tests/tiny_method.py) is registered from here and runs through train,
evaluate, score and report, and shows in the config, the params reference, the Kubeflow layers
and tune's search space, with no other edit to the package.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from pseudovad import config as config_mod
from pseudovad.errors import ConfigError
from pseudovad.method_spec import MethodSpec, get_method, method_names, register_method, unregister_method

from tests.conftest import tiny_cfg

SRC = Path(__file__).resolve().parents[1] / "src" / "pseudovad"
BUILTIN = ("ltgpa", "mae_nct")


@pytest.fixture
def tiny_method():
    from tests import tiny_method

    register_method(tiny_method.TinyAESpec)       # again, if an earlier test removed it
    yield tiny_method.NAME
    unregister_method(tiny_method.NAME)


def test_the_builtin_methods_are_found_in_their_folder():
    assert set(BUILTIN) <= set(method_names())
    assert get_method("ltgpa").section == "ltgpa" and get_method("mae_nct").geometry(
        config_mod.from_dict({"model": {"method": "mae_nct", "mae": {"in_frames": 3}}})) == (4, 3)


def test_no_code_outside_a_methods_own_modules_names_a_method():
    """A string equal to a method's name, anywhere outside `methods/` and the method's own update
    rule (`training/<name>.py`), is a branch on the method that the registry should answer."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        # method_spec.py names the default method (`model.method` when params name none), nothing else
        if rel.startswith("methods/") or rel in {"method_spec.py", *(f"training/{m}.py" for m in BUILTIN)}:
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Constant) and node.value in BUILTIN:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert found == []


def test_an_unknown_method_is_one_line_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"^model\.method: must be one of ltgpa, mae_nct.*got 'mem_ae'"):
        config_mod.from_dict({"model": {"method": "mem_ae"}})


def test_a_name_is_registered_once():
    class Other(MethodSpec):
        name = "ltgpa"

    with pytest.raises(ValueError, match="registered twice"):
        register_method(Other)


def test_a_registered_method_is_in_the_config_the_reference_kubeflow_and_tune(tiny_method):
    from pseudovad import kubeflow
    from pseudovad.tune import space as search_space

    cfg = config_mod.from_dict({"model": {"method": tiny_method, "tinyae": {"width": 2}}})
    assert cfg.model.method == tiny_method and cfg.model.tinyae.width == 2
    assert config_mod.lr_schedule(cfg) == "constant"
    with pytest.raises(ConfigError, match=r"^model\.tinyae\.width: must be ≥ 1, got 0$"):
        config_mod.from_dict({"model": {"method": tiny_method, "tinyae": {"width": 0}}})
    docs = {k.key: k for k in config_mod.documented_keys()}
    assert tiny_method in docs["model.method"].choices and set(BUILTIN) <= set(docs["model.method"].choices)
    assert docs["model.tinyae"].type == "section" and docs["model.tinyae.width"].description == "hidden channels of the autoencoder"
    step = kubeflow.from_layers("", {"model.method": tiny_method}, ["model.tinyae.width=8"])
    assert step.model.method == tiny_method and step.model.tinyae.width == 8
    assert list(search_space.parse_space(cfg)) == ["model.tinyae.width", "train.lr"]


def test_a_registered_method_trains_evaluates_scores_and_reports(tmp_path, tiny_method):
    from pseudovad.models.model_file import load_model
    from pseudovad.stages import evaluate, extract, report, score, synthesize, train

    cfg = tiny_cfg(tmp_path, model={"method": tiny_method}, pseudo={"p": 0.0},
                   train={"epochs": 1, "max_steps": 3, "out": str(tmp_path / "train")},
                   evaluate={"out": str(tmp_path / "evaluate"), "bootstrap": 0, "top_k": 0})
    synthesize.run(cfg)
    extract.run(cfg)
    res = train.run(cfg, progress=False)
    assert res["method"] == tiny_method and res["steps"] == 3
    net, meta = load_model(tmp_path / "train" / "model.pt")
    assert type(net).__name__ == "TinyAE" and net.enc.out_channels == 4 and meta["method"] == tiny_method
    assert (meta["clip_len"], meta["scored_index"]) == (cfg.data.clip_len, cfg.data.scored_index)

    metrics = evaluate.run(cfg)
    assert metrics["method"] == tiny_method and metrics["variant"] == "baseline"
    assert 0.0 <= metrics["auc_micro"] <= 1.0 and "auc_floor" in metrics

    video = next((tmp_path / "synthetic" / "testing").rglob("*.avi"), None) or next(
        p for p in (tmp_path / "synthetic" / "testing" / "frames").iterdir() if p.is_dir())
    out = score.run(cfg, video, model=tmp_path / "train" / "model.pt", out=tmp_path / "score", progress=False)
    summary = json.loads((tmp_path / "score" / "summary.json").read_text())
    assert summary["frames"] > 0 and out["frames"] == summary["frames"]

    t = report.run(cfg, [str(tmp_path / "evaluate" / "metrics.json")])
    assert [r["row"] for r in t["rows"]][0] == f"{tiny_method} · baseline"
