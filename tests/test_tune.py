"""`tune`: the search space checks, the validation split, and one real search.

A second one runs a 2-trial search on a real two-node Ray cluster (tests/ray_cluster.py) through
`tune.address`, with Ray Client (ray://), as on KubeRay.

The integration test runs a 4-trial grid search on tiny synthetic footage with a real local Ray
(one session for the module, 2 CPUs, one trial at a time) and a real `mlflow server`:
- lr 1e-3 and 3e-4 train normally;
- lr 1.0 is deliberately bad (its first-epoch validation AUC is near 0): ASHA (grace 1, max_t 2,
  reduction factor 2) must stop it at its first rung;
- lr −1 is an invalid value: that trial raises ConfigError, is retried once and reported, and
  the search goes on.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.errors import ConfigError
from pseudovad.tune import session
from pseudovad.tune import space as search_space
from tests.conftest import tiny_cfg
from tests.mlflow_server import mlflow_server  # noqa: F401  (module-scoped fixture)

ROOT = Path(__file__).parents[1]
SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}, "synthetic": {"test_videos": 3}}
LRS = [1e-3, 1.0, -1.0, 3e-4]


def cfg_with(tmp_path, **sections):
    return tiny_cfg(tmp_path, **config_mod.deep_merge(SMALL, sections))


# ----------------------------------------------------------------------------------------------
# The space and the split (no Ray)

def test_unknown_space_key_is_named():
    for key, msg in (("pseudo.lamda", "tune.space.pseudo.lamda: unknown params key"),
                     ("pseudo", "tune.space.pseudo: is a section"),
                     ("train.epochs", "tune.space.train.epochs: cannot be searched"),
                     ("tune.num_samples", "tune.space.tune.num_samples: cannot be searched")):
        cfg = config_mod.from_dict({"tune": {"space": {key: {"type": "uniform", "low": 0.1, "high": 0.5}}}})
        with pytest.raises(ConfigError, match=msg):
            search_space.parse_space(cfg)


@pytest.mark.parametrize("spec,msg", [
    ({"type": "gaussian", "low": 0, "high": 1}, "pseudo.p.type: must be one of"),
    ({"type": "uniform", "low": 0.5, "high": 0.1}, r"low \(0.5\) must be < high \(0.1\)"),
    ({"type": "loguniform", "low": 0.0, "high": 0.5}, "loguniform needs low > 0"),
    ({"type": "uniform", "low": 0.1, "hi": 0.5}, "unknown field"),
    ({"type": "choice", "values": []}, "pseudo.p.values: expected a non-empty list"),
    ({"type": "randint", "low": 1, "high": 3}, "randint is for integer keys"),
])
def test_bad_specs_are_named(spec, msg):
    cfg = config_mod.from_dict({"tune": {"space": {"pseudo.p": spec}}})
    with pytest.raises(ConfigError, match=msg):
        search_space.parse_space(cfg)


def test_real_ranges_on_integer_keys_and_grid_search_of_ranges_are_refused():
    cfg = config_mod.from_dict({"tune": {"space": {"train.batch_size": {"type": "uniform", "low": 2, "high": 8}}}})
    with pytest.raises(ConfigError, match="train.batch_size: uniform draws real numbers"):
        search_space.parse_space(cfg)
    cfg = config_mod.from_dict({"tune": {"search": "grid", "space": {
        "pseudo.p": {"type": "grid", "values": [0.25, 0.5]}, "train.lr": {"type": "loguniform", "low": 1e-5, "high": 1e-3}}}})
    with pytest.raises(ConfigError, match="tune.space.train.lr: tune.search=grid needs values"):
        search_space.parse_space(cfg)


def test_default_space_follows_method_and_pseudo_kind():
    keys = lambda **s: set(search_space.parse_space(config_mod.from_dict(s)))  # noqa: E731
    assert keys(pseudo={"kind": "learned"}) == {"pseudo.lam", "pseudo.p", "train.lr"}
    assert keys(pseudo={"kind": "gaussian"}) == {"pseudo.p", "pseudo.sigma", "train.lr"}
    assert keys(pseudo={"kind": "none"}) == {"train.lr"}
    mae = {"model": {"method": "mae_nct", "mae": {"patch_size": 16}}, "pseudo": {"mask_patch": 32}}
    assert keys(**mae) == {"pseudo.mask_ratio", "pseudo.lambda_cst", "train.lr"}


def test_space_translates_to_ray_samplers():
    from ray.tune.search.sample import Categorical, Float, Integer

    cfg = config_mod.from_dict({"tune": {"space": {
        "pseudo.lam": {"type": "loguniform", "low": 0.01, "high": 1.0},
        "pseudo.p": {"type": "grid", "values": [0.25, 0.75]},
        "pseudo.kind": {"type": "choice", "values": ["gaussian", "learned"]},
        "train.batch_size": {"type": "randint", "low": 2, "high": 4}}}})
    space = search_space.to_ray(search_space.parse_space(cfg), "random")
    lam = space["pseudo.lam"]
    assert isinstance(lam, Float) and lam.lower == 0.01 and lam.upper == 1.0 and "LogUniform" in type(lam.sampler).__name__
    assert space["pseudo.p"] == {"grid_search": [0.25, 0.75]}
    assert isinstance(space["pseudo.kind"], Categorical) and space["pseudo.kind"].categories == ["gaussian", "learned"]
    bs = space["train.batch_size"]
    assert isinstance(bs, Integer) and (bs.lower, bs.upper) == (2, 5)   # Ray's upper bound is exclusive
    # grid search walks every choice too
    assert search_space.to_ray({"pseudo.kind": search_space.parse_dim("pseudo.kind", {"type": "choice", "values": ["a"]})},
                               "grid") == {"pseudo.kind": {"grid_search": ["a"]}}


def test_missing_search_library_is_a_config_error():
    from pseudovad.tune import session

    for name in ("optuna", "hyperopt"):
        try:
            __import__(name)
            continue
        except ImportError:
            pass
        with pytest.raises(ConfigError, match=f"tune.search: {name} needs the {name} package"):
            session.make_searcher(config_mod.from_dict({"tune": {"search": name}}))


def test_trial_outcomes_from_tune_statuses_and_best_json(tmp_path):
    """completed / stopped_early / error / unfinished (an interrupted search), best epoch from best.json."""
    from types import SimpleNamespace

    from pseudovad.tune.results import trial_rows

    dims = search_space.parse_space(config_mod.from_dict({"tune": {"space": {"train.lr": {"type": "grid", "values": [1]}}}}))
    (tmp_path / "a_1").mkdir()
    (tmp_path / "a_1" / "best.json").write_text(json.dumps({"val_auc": 0.9, "epoch": 2}))

    def result(name, epoch=None, error=None):
        metrics = {"trial_id": name, "val_auc": 0.8, "epoch": epoch} if epoch else {"trial_id": name}
        return SimpleNamespace(metrics=metrics, config={"train.lr": 0.1}, error=error, path=f"/x/trial_{name}_0")

    statuses = {f"trial_{n}_0": (n, s) for n, s in
                (("a_1", "TERMINATED"), ("a_2", "TERMINATED"), ("a_3", "ERROR"), ("a_4", "PENDING"))}
    rows = trial_rows([result("a_4"), result("a_3", error=ValueError("boom")), result("a_2", 1), result("a_1", 3)],
                      dims, 3, statuses, tmp_path)
    assert [(r["trial_id"], r["outcome"]) for r in rows] == [
        ("a_1", "completed"), ("a_2", "stopped_early"), ("a_3", "error"), ("a_4", "unfinished")]
    assert (rows[0]["best_val_auc"], rows[0]["best_epoch"], rows[0]["val_auc"]) == (0.9, 2, 0.8)
    assert rows[2]["error"] == "ValueError: boom" and rows[1]["best_val_auc"] is None


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from pseudovad.stages import extract, synthesize

    root = tmp_path_factory.mktemp("tune-data")
    cfg = cfg_with(root)
    synthesize.run(cfg)
    extract.run(cfg)
    return root


def test_ray_client_connection_is_retried_only_when_the_server_failed_to_start(monkeypatch):
    import ray

    from pseudovad.tune import session as stage

    calls = []

    def init(address=None, **kw):
        calls.append(address)
        if len(calls) == 1:
            raise ConnectionError("Initialization failure from server: Traceback ... Starting Ray client server failed")
        if address == "ray://unreachable:10001":
            raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(stage, "CLIENT_RETRY_S", 0.0)
    with stage.ray_session(config_mod.from_dict({"tune": {"address": "ray://head:10001"}})):
        pass
    assert calls == ["ray://head:10001"] * 2
    calls.clear()
    calls.append("first call already made")     # the next failure is not a server start failure
    with pytest.raises(ConfigError, match=r"^tune.address: cannot connect to Ray at ray://unreachable:10001 "
                                          r"\(ray client connection timeout\)$"):
        with stage.ray_session(config_mod.from_dict({"tune": {"address": "ray://unreachable:10001"}})):
            pass
    assert calls == ["first call already made", "ray://unreachable:10001"]


def test_validation_split_is_checked(data):
    from pseudovad.data.store import FrameStore
    from pseudovad.tune.inputs import split_videos

    fs = FrameStore(data / "store")
    for val, msg in (([], "tune.val_videos: empty"), (["09"], "no test video.s. 09"),
                     (["01", "02", "03"], "lists every test video")):
        with pytest.raises(ConfigError, match=msg):
            split_videos(cfg_with(data, tune={"val_videos": val}), fs)
    val, held = split_videos(cfg_with(data, tune={"val_videos": ["02"]}), fs)
    assert [e.id for e in val] == ["02"] and [e.id for e in held] == ["01", "03"]


def test_plain_dvc_repro_leaves_tune_out(tmp_path, monkeypatch):
    """`dvc repro` plans exactly as DVC's own reproduce(): the root dvc.yaml and its upstream only."""
    import shutil
    import subprocess

    from dvc.repo import Repo
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    for f in ("dvc.yaml", "params.yaml", "tune/dvc.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / f, tmp_path / f)
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)                        # targets are resolved from the working folder
    repo = Repo(str(tmp_path))

    def plan(targets):
        return [s.addressing for s in plan_repro(get_active_graph(repo.index.graph), collect_stages(repo, targets))]

    default = plan(["dvc.yaml"])                     # what plain `dvc repro` collects
    assert "extract" in default and not any("tune" in s for s in default)
    opt_in = plan(["tune/dvc.yaml"])
    assert opt_in[-1] == "tune/dvc.yaml:tune" and "extract" in opt_in
    stage = repo.stage.collect("tune/dvc.yaml:tune")[0]
    assert Path(stage.wdir) == tmp_path.resolve()      # runs in the root, with the root params.yaml


# ----------------------------------------------------------------------------------------------
# One real search: local Ray + MLflow server

@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # bind to 127.0.0.1
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(session.THREAD_TIMEOUT_S))  # as ray_session does
    import ray

    started = not ray.is_initialized()
    if started:
        # "local": never join a cluster `ray start` left on this machine (tests/ray_cluster.py)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=True)
    yield
    if started:
        ray.shutdown()


def search_params(data: Path, uri: str) -> dict:
    return config_mod.deep_merge(cfg_with(data).to_dict(), {
        "tracking": {"enabled": True, "uri": uri, "experiment": "pv-tune-test"},
        "train": {"max_clips_per_epoch": 16},
        "tune": {"val_videos": ["02"], "max_epochs": 2, "grace_period": 1, "reduction_factor": 2,
                 "scheduler": "asha", "search": "grid", "cpus_per_trial": 2, "max_failures": 1,
                 "space": {"train.lr": {"type": "grid", "values": LRS}}, "out": str(data / "tune")}})


@pytest.fixture(scope="module")
def searched(data, ray_local, mlflow_server):  # noqa: F811
    from pseudovad.cli import main as cli_main

    params = data / "tune-params.yaml"
    params.write_text(yaml.safe_dump(search_params(data, mlflow_server)))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli_main(["tune", "-P", str(params)])
    out = data / "tune"
    return {"rc": rc, "stdout": buf.getvalue(), "out": out, "params": params,
            "metrics": results.read(out),
            "rows": list(csv.DictReader((out / "results.csv").open()))}


def test_search_runs_every_trial_and_reports_the_failing_one(searched):
    assert searched["rc"] == 0
    rows = {float(r["train.lr"]): r for r in searched["rows"]}
    assert sorted(rows) == sorted(LRS)
    bad = rows[-1.0]
    assert bad["outcome"] == "error" and "ConfigError: train.lr: must be > 0" in bad["error"]
    assert "failed: ConfigError: train.lr: must be > 0, got -1.0" in searched["stdout"]
    m = searched["metrics"]
    assert m["errored"] == 1 and m["trials"] == 4 and m["errors"][0]["trial_id"] == bad["trial_id"]
    for lr in (1e-3, 3e-4):
        assert rows[lr]["outcome"] == "completed" and int(rows[lr]["epochs"]) == 2
        # each trial trains on exactly the CPUs Ray reserved for it (tune.cpus_per_trial: 2); the
        # trial's own metrics.json is not there (Tune ends a trial at its last report)
        assert (int(rows[lr]["threads"]), int(rows[lr]["num_workers"])) == (2, 0)


def test_asha_stops_the_bad_trial_at_its_first_rung(searched):
    rows = {float(r["train.lr"]): r for r in searched["rows"]}
    stopped = rows[1.0]
    assert stopped["outcome"] == "stopped_early" and int(stopped["epochs"]) == 1
    assert float(stopped["val_auc"]) < min(float(rows[lr]["best_val_auc"]) for lr in (1e-3, 3e-4))
    assert searched["metrics"]["stopped_early"] == 1


def test_best_params_are_the_best_trial_and_train_accepts_them(searched, tmp_path):
    from pseudovad.cli import main as cli_main

    m = searched["metrics"]
    scored = [r for r in searched["rows"] if r["best_val_auc"]]
    best = max(scored, key=lambda r: float(r["best_val_auc"]))
    assert m["best_val_auc"] == pytest.approx(float(best["best_val_auc"]))
    assert m["best_config"] == {"train.lr": float(m["best_config"]["train.lr"])} and m["best_config"]["train.lr"] in (1e-3, 3e-4)

    path = searched["out"] / "best_params.yaml"
    cfg = config_mod.load(path)
    base = config_mod.load(searched["params"])
    assert cfg.train.lr == m["best_config"]["train.lr"]
    assert cfg.train.epochs == base.train.epochs and cfg.pseudo == base.pseudo and cfg.data == base.data
    rc = cli_main(["train", "-P", str(path), "-p", "train.epochs=1", "-p", "tracking.enabled=false",
                   "-p", f"train.out={tmp_path / 'train'}"])
    assert rc == 0 and (tmp_path / "train" / "model.pt").is_file()


def test_test_auc_is_the_best_model_on_held_out_videos_only(searched, data, tmp_path):
    from pseudovad.stages import evaluate

    m = searched["metrics"]
    assert m["val_videos"] == ["02"] and m["test_videos"] == ["01", "03"]
    cfg = cfg_with(data)
    ev = evaluate.run(cfg, model=searched["out"] / "best_model.pt", out=tmp_path / "ev", videos=["01", "03"])
    assert m["test_auc"] == pytest.approx(ev["auc_micro"])
    from pseudovad.models.model_file import read_model_file

    meta = read_model_file(searched["out"] / "best_model.pt")["meta"]
    assert meta["tune"]["trial_id"] == m["best_trial"] and meta["tune"]["val_videos"] == ["02"]
    assert meta["tune"]["epoch"] == m["best_epoch"]


def test_trials_are_child_runs_of_one_parent(searched, mlflow_server):  # noqa: F811
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server)
    m = searched["metrics"]
    parent = c.get_run(m["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["pseudovad.stage"] == "tune"
    assert parent.data.metrics["test_auc"] == pytest.approx(m["test_auc"])
    assert json.loads(parent.data.tags["best.train.lr"]) == m["best_config"]["train.lr"]
    assert {"best_params.yaml", "results.csv", "metrics.json"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}

    children = c.search_runs([parent.info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    rows = {r["trial_id"]: r for r in searched["rows"]}
    # every trial that got as far as training has one child run; the invalid one never had a config
    trained = {tid for tid, r in rows.items() if r["outcome"] != "error"}
    assert {ch.data.tags["tune.trial_id"] for ch in children} == trained and len(children) == 3
    for ch in children:
        row = rows[ch.data.tags["tune.trial_id"]]
        assert ch.info.status == "FINISHED" and ch.data.tags["tune.outcome"] == row["outcome"]
        assert float(ch.data.params["train.lr"]) == float(row["train.lr"])
        hist = c.get_metric_history(ch.info.run_id, "val_auc")
        assert [h.step for h in hist] == list(range(1, int(row["epochs"]) + 1))
        assert hist[-1].value == pytest.approx(float(row["val_auc"]))


def test_rerun_restores_the_finished_search(searched, data):
    """Same params, same tune.out: Tune's experiment is restored, no trial trains again."""
    from pseudovad.stages import tune as stage

    out = searched["out"]
    before = {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/history.json")}
    cfg = config_mod.load(searched["params"], ["tracking.enabled=false"])
    s = stage.run(cfg)
    assert s["restored"] is True
    assert {r["trial_id"] for r in searched["rows"]} == {r["trial_id"] for r in csv.DictReader((out / "results.csv").open())}
    assert {p: p.stat().st_mtime_ns for p in (out / "trials").glob("*/history.json")} == before
    assert s["best_trial"] == searched["metrics"]["best_trial"] and s["test_auc"] == pytest.approx(searched["metrics"]["test_auc"])


# ----------------------------------------------------------------------------------------------
# A real two-node Ray cluster: `ray start --head` + `ray start --address`, on 127.0.0.1

@pytest.fixture(scope="module")
def cluster():
    from tests import ray_cluster

    c = ray_cluster.start()
    try:
        yield c
    finally:
        assert ray_cluster.stop(c) == [], "Ray node processes survived their stop"


def test_search_on_a_two_node_cluster_uses_both_nodes_and_brings_results_back(cluster, data, tmp_path):
    """`pseudovad tune` through `tune.address` (Ray Client): one trial per node (each has 1 CPU,
    each trial asks for 1), the node each trial ran on in results.csv, the best model here."""
    from pseudovad.models.model_file import read_model_file

    out = tmp_path / "tune"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(config_mod.deep_merge(cfg_with(data).to_dict(), {
        "train": {"max_clips_per_epoch": 8},
        "tune": {"val_videos": ["02"], "max_epochs": 1, "scheduler": "fifo", "search": "grid", "cpus_per_trial": 1,
                 "space": {"train.lr": {"type": "grid", "values": [1e-3, 3e-4]}}, "out": str(out),
                 "address": cluster.client_address}})))
    exe = Path(sys.executable).with_name("pseudovad")
    r = subprocess.run([str(exe), "tune", "-P", str(params)], capture_output=True, text=True, cwd=tmp_path,
                       env=cluster.env(), timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:] + cluster.logs()

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["outcome"] for row in rows] == ["completed", "completed"]
    assert {row["node_id"] for row in rows} == {cluster.nodes["head"], cluster.nodes["worker"]}
    for row in rows:   # the trial's own record agrees with what Tune reported
        assert json.loads((out / "trials" / row["trial_id"] / "trial.json").read_text())["node_id"] == row["node_id"]
    m = results.read(out)
    assert m["trials"] == 2 and m["completed"] == 2 and m["test_videos"] == ["01", "03"]
    meta = read_model_file(out / "best_model.pt")["meta"]
    assert meta["tune"]["trial_id"] == m["best_trial"]
    assert f"validation AUC {m['best_val_auc']:.4f}" in r.stdout


def test_local_search_never_joins_a_cluster_started_on_this_machine(cluster, tmp_path):
    """With no tune.address and no RAY_ADDRESS the session is a fresh local Ray, even where a plain
    `ray.init()` would find the address `ray start` wrote (here: RAY_TMPDIR = the cluster's)."""
    script = (
        "import json, ray\n"
        "from pseudovad import config\n"
        "from pseudovad.tune.session import ray_session\n"
        "with ray_session(config.from_dict({})):\n"
        "    print(json.dumps([n['NodeID'] for n in ray.nodes()]))\n")
    env = {**cluster.env(), "RAY_TMPDIR": str(cluster.root)}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    nodes = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(nodes) == 1 and nodes[0] not in cluster.nodes.values()
