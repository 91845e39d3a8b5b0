"""Kubeflow runs what the user asked for (#27): the params file decides, a typed pipeline parameter
changes its key only when the user set it, and the parameter table is one table.

The acceptance tests read a compiled pipeline as the KFP backend does (each task's inputs: the
pipeline's arguments, constants, its component's defaults, through the dsl.If / dsl.Else DAGs),
resolve every step's settings as the step does (`pseudovad.kubeflow.step_config`) and compare
them, key for key, with what `pseudovad train -P FILE` resolves. The kfp.local runs, one per
method, are in tests/test_kfp.py (they share its MLflow server)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from pipelines import cli
from pipelines.retrain import retrain_pipeline
from pipelines.training import training_pipeline
from pseudovad import config as config_mod
from pseudovad import kubeflow
from pseudovad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILES = sorted((ROOT / "configs").glob("*.yaml")) + [ROOT / "params.yaml"]
PIPELINES = {"training": training_pipeline, "retrain": retrain_pipeline}
# each pipeline's required data arguments (not settings)
DATA_ARGS = {"training": ["dataset_uri=s3://datasets/ped2"], "retrain": ["source=s3://cams/footage/"]}
COMPONENTS = ("extract", "ingest", "tune", "train", "evaluate", "register")


@pytest.fixture(scope="module")
def irs(tmp_path_factory) -> dict:
    """Both pipelines compiled, as `pseudovad-kfp compile` writes them."""
    return {name: next(yaml.safe_load_all(cli.compile_pipeline(p, tmp_path_factory.mktemp(name) / "p.yaml").read_text()))
            for name, p in PIPELINES.items()}


def steps(ir: dict, arguments: dict) -> list[tuple[str, str, dict]]:
    """Every step of a compiled pipeline and the parameter values it receives for these run
    arguments: (task path, component, {input: value}), in every branch. Values produced at run
    time (task outputs) are left out; integers come back as KFP hands them to a step."""
    comps, out = ir["components"], []

    def visit(dag: dict, env: dict, path: tuple) -> None:
        for name, task in dag["dag"]["tasks"].items():
            ref = task["componentRef"]["name"]
            comp, args = comps[ref], {}
            for p, src in task.get("inputs", {}).get("parameters", {}).items():
                if "componentInputParameter" in src:
                    args[p] = env[src["componentInputParameter"]]
                elif "runtimeValue" in src:
                    args[p] = src["runtimeValue"]["constant"]
            specs = comp.get("inputDefinitions", {}).get("parameters", {})
            for p, spec in specs.items():
                if p not in args and "defaultValue" in spec:
                    args[p] = spec["defaultValue"]
                if spec["parameterType"] == "NUMBER_INTEGER" and isinstance(args.get(p), float):
                    args[p] = int(args[p])
            if "dag" in comp:
                visit(comp, args, (*path, name))
            else:
                out.append(("/".join((*path, name)), re.sub(r"-\d+$", "", ref.removeprefix("comp-")), args))

    root = ir["root"]["inputDefinitions"]["parameters"]
    visit(ir["root"], {p: arguments.get(p, spec.get("defaultValue")) for p, spec in root.items()}, ())
    return [s for s in out if s[1] in COMPONENTS]


@pytest.fixture
def step_env(monkeypatch):
    """A step sets environment variables (its run id, MLFLOW_TRACKING_URI): here, in a copy."""
    monkeypatch.setattr(os, "environ", os.environ.copy())


def resolved(args: dict) -> dict:
    return kubeflow.step_config(args).to_dict()


# ----------------------------------------------------------------------------------------------
# Acceptance: every step of a compiled pipeline trains with what `pseudovad train -P FILE` resolves

@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
@pytest.mark.parametrize("params", PARAMS_FILES, ids=lambda p: p.name)
def test_every_step_resolves_what_the_params_file_says(irs, pipeline, params, step_env):
    expected = config_mod.load(params)               # what `pseudovad train -P params` trains with
    # the pipeline requires mlflow_uri: given as the file's own tracking.uri
    arguments = cli.parse_arguments(PIPELINES[pipeline], [*DATA_ARGS[pipeline], f"mlflow_uri={expected.tracking.uri}"],
                                    str(params))
    found = steps(irs[pipeline], arguments)
    assert {s[1] for s in found} >= {"train", "evaluate", "register"}
    for path, component, args in found:
        got = resolved(args)
        diff = {k: (v, expected.flat()[k]) for k, v in config_mod.from_dict(got).flat().items() if v != expected.flat()[k]}
        assert got == expected.to_dict(), f"{pipeline} {path}: (step, file) differ on {diff}"


def test_a_typed_parameter_the_user_sets_wins_and_one_left_unset_does_not(tmp_path, step_env, capsys):
    """`-a lam=0.2` beats the file's λ in every step; the compiled pipeline file records it (its
    default) and the steps resolve the same from that file with no run arguments at all (the
    KFP UI's case); `mask_ratio`, not set, keeps the file's value."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": {"method": "mae_nct"}, "pseudo": {"lam": 0.7, "mask_ratio": 0.5},
                                      "train": {"epochs": 1}}))
    out = tmp_path / "training.yaml"
    assert cli.main(["compile", "training", "--allow-default-image", "-o", str(out), "-P", str(params),
                     "-a", "lam=0.2", "-a", "mlflow_uri=http://mlflow:5000", "-a", "dataset_uri=s3://d/ped2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"settings: {params}; typed parameters set: lam=0.2, mlflow_uri=http://mlflow:5000")
    ir = next(yaml.safe_load_all(out.read_text()))
    defaults = {k: v.get("defaultValue") for k, v in ir["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults["lam"] == 0.2 and defaults["params"] == params.read_text()
    assert defaults["mask_ratio"] == -1 and defaults["method"] == "" and defaults["epochs"] == -1   # unset
    assert out.read_text().startswith("# PIPELINE DEFINITION\n# Name: pseudovad-training\n"
                                      "# Compiled with: dataset_uri, lam, mlflow_uri, params\n")
    for path, _, args in steps(ir, {}):
        cfg = kubeflow.step_config(args)
        assert (cfg.pseudo.lam, cfg.pseudo.mask_ratio, cfg.model.method, cfg.train.epochs) == (0.2, 0.5, "mae_nct", 1), path
        assert os.environ["PSEUDOVAD_KFP_PARAMETERS_SET"] == '{"lam": 0.2, "mlflow_uri": "http://mlflow:5000"}'


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing sent

@pytest.mark.parametrize("argv,message", [
    (["-a", "lamda=0.2"], "argument 'lamda': not a parameter of pseudovad-training (known: accelerator_type, "),
    (["-a", "lam=abc"], "argument lam: expected float, got 'abc'"),
    (["-a", "epochs=2.5"], "argument epochs: expected integer, got '2.5'"),
    (["-a", "lam=-0.5"], "argument lam: pseudo.lam: must be ≥ 0, got -0.5"),
    (["-a", "overrides=[pseudo.lam=oops]"], "argument overrides: pseudo.lam: expected a number, got 'oops'"),
    (["-P", "{bad}"], "{bad}: pseudo.lamda: unknown key (known: "),
    (["-P", "{bad}", "-a", "lamda=1"], "argument 'lamda': not a parameter"),     # names are checked first
])
def test_bad_input_is_one_line_exit_2_and_nothing_is_sent(argv, message, tmp_path, capsys, monkeypatch):
    from tests.test_kfp import FakeKFP

    bad = tmp_path / "bad.yaml"
    bad.write_text("pseudo:\n  lamda: 0.2\n")
    argv = [a.replace("{bad}", str(bad)) for a in argv]
    monkeypatch.setenv("KFP_TOKEN", "t")
    with FakeKFP() as api:
        for command in (["run", "training", "--host", api.url], ["local", "training", "--root", str(tmp_path / "kfp")],
                        ["schedule", "training", "--host", api.url, "--cron", "0 3 * * *"],
                        ["compile", "training", "-o", str(tmp_path / "p.yaml")]):
            # no --image: the image check would refuse too, after the arguments
            rc = cli.main([*command, "-a", "dataset_uri=d", "-a", "mlflow_uri=m", *argv])
            err = capsys.readouterr().err
            assert rc == 2 and len(err.strip().splitlines()) == 1, (command, err)
            assert err.startswith(f"pseudovad-kfp {command[0]}: error: {message.replace('{bad}', str(bad))}"), err
    assert api.requests == [] and not (tmp_path / "kfp").exists() and not (tmp_path / "p.yaml").exists()


def test_warm_start_is_true_or_false_or_unset(step_env):
    pipeline = retrain_pipeline
    base = ["source=s3://cams/", "mlflow_uri=m"]
    assert cli.parse_arguments(pipeline, [*base, "warm_start=false"])["warm_start"] == "false"
    assert kubeflow.step_config({"warm_start": "false"}).ingest.warm_start is False
    assert kubeflow.step_config({"warm_start": "", "params": "ingest: {warm_start: false}"}).ingest.warm_start is False
    with pytest.raises(Exception, match="argument warm_start: expected true or false, got 'maybe'"):
        cli.parse_arguments(pipeline, [*base, "warm_start=maybe"])


# ----------------------------------------------------------------------------------------------
# One table: signatures, docs, --help

def test_signatures_follow_the_one_table():
    """Every component takes every typed parameter (so every step resolves the same settings: the
    register step names the model after the method the train step trained); in each component and
    pipeline a typed parameter has its table type and defaults to "unset". The table's keys are
    params keys of that type, and "unset" is a value no numeric or list key takes (the config
    refuses it), so it can never stand for a real setting."""
    import components
    from pseudovad.tune.space import _scalar, field_type

    kfp_type = {str: "String", int: "Integer", float: "Float", list: "List"}
    defaults = config_mod.Config().flat()
    for key, (name, kind, meaning) in kubeflow.TYPED.items():
        declared = _scalar(field_type(key))
        assert (getattr(declared, "__origin__", declared)) is kind, key
        assert key in defaults and meaning, key
        if kind in (int, float, list) or key in ("model.method", "pseudo.kind", "train.pseudo_loss"):
            with pytest.raises(ConfigError, match=key):
                kubeflow.from_layers("", tuned={key: kubeflow.UNSET[kind]})
    steps = [getattr(components, c) for c in components.__all__]
    for step in steps:
        assert set(kubeflow.PIPELINE_PARAMS) <= set(step.component_spec.inputs), step.name
    for obj in [*steps, *PIPELINES.values()]:
        for name, spec in (obj.component_spec.inputs or {}).items():
            if name not in kubeflow.PIPELINE_PARAMS:
                continue
            kind = kubeflow.TYPED[kubeflow.PIPELINE_PARAMS[name]][1]
            assert spec.type == kfp_type[kubeflow.SIGNATURE_TYPE[kind]], (obj.name, name)
            if name == "mlflow_uri" and obj in PIPELINES.values():
                assert spec.default is None and not spec.optional          # required
            else:
                assert spec.default == kubeflow.UNSET[kind], (obj.name, name, spec.default)


def test_the_docs_table_is_the_generated_one():
    from pipelines import parameters

    text = (ROOT / "docs" / "deploy" / "parameters.md").read_text()
    for name, pipeline in PIPELINES.items():
        start = f"<!-- parameters:{name} (pseudovad-kfp parameters {name} --markdown) -->\n"
        section = text.split(start, 1)[1].split(f"<!-- /parameters:{name} -->", 1)[0]
        assert section == parameters.table(pipeline), f"regenerate with: pseudovad-kfp parameters {name} --markdown"
        for row in parameters.rows(pipeline):
            assert row[2], (name, row)        # every parameter says what it means
    readme = (ROOT / "README.md").read_text()
    assert "The params file decides; a typed parameter changes its params key only when you set it." in readme
    assert "docs/deploy/parameters.md" in readme


def test_help_states_the_rule_and_lists_every_typed_parameter(capsys):
    flat = " ".join(cli.build_parser().format_help().split())
    assert "The params file decides; a typed parameter changes its params key only when you set it." in flat
    from pipelines.parameters import code_default, shown

    for key, (name, _, _) in kubeflow.TYPED.items():
        assert f"{name} {key} (code default {shown(code_default(key))})" in flat, name
    assert cli.main(["parameters", "retrain"]) == 0
    listing = capsys.readouterr().out
    assert "  warm_start = params (true)\n" in listing and "  source = required\n" in listing
