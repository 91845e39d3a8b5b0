"""Model registry and promotion gate: the pure gate, and train → evaluate → register against a
real `mlflow server` (SQLite backend) on 127.0.0.1, then `score` with models:/NAME@champion."""
from __future__ import annotations

import csv
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest

from pseudovad import config as config_mod
from pseudovad import registry, results, tracking
from pseudovad.cli import main as cli_main
from pseudovad.data.synthetic import render_video, write_video
from pseudovad.data.versioning import dvc_hash
from pseudovad.files import sha256_file
from pseudovad.registry import load_model
from pseudovad.stages import evaluate, extract, register, synthesize, train
from pseudovad.gate import Entry, beats, decide
from tests.conftest import tiny_cfg
from tests.mlflow_server import free_port, mlflow_server  # noqa: F401  (module-scoped fixture)

NAME = "pv-test"
SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}}


# ----------------------------------------------------------------------------------------------
# The gate as a pure function

def test_first_version_becomes_champion():
    d = decide(Entry("1", 0.6, "fp"), None, 0.01)
    assert d.promote and not d.forced and "first champion" in d.reason


def test_worse_or_equal_model_keeps_the_champion():
    champ = Entry("1", 0.80, "fp")
    d = decide(Entry("2", 0.75, "fp"), champ, 0.0)
    assert not d.promote and "champion v1 kept" in d.reason and "does not beat" in d.reason
    d = decide(Entry("2", 0.80, "fp"), champ, 0.0)            # a tie never promotes
    assert not d.promote


def test_min_delta_boundary():
    champ = Entry("1", 0.80, "fp")
    # exactly min_delta better is enough, even though 0.85 − 0.80 = 0.04999… in floating point
    assert 0.85 - 0.80 < 0.05 and beats(0.85, 0.80, 0.05)
    assert decide(Entry("2", 0.85, "fp"), champ, 0.05).promote
    d = decide(Entry("2", 0.8499, "fp"), champ, 0.05)
    assert not d.promote and "by only +0.0499 < min_delta 0.05" in d.reason
    assert decide(Entry("2", 0.8000001, "fp"), champ, 0.0).promote   # any real improvement with min_delta 0


def test_different_evaluation_set_keeps_the_champion():
    d = decide(Entry("2", 0.99, "fp-new"), Entry("1", 0.5, "fp-old"), 0.0)
    assert not d.promote and "different test set" in d.reason


def test_force_promotes_and_says_who_and_what_the_gate_said():
    d = decide(Entry("2", 0.5, "fp"), Entry("1", 0.8, "fp"), 0.0, force=True, user="alice")
    assert d.promote and d.forced and d.reason.startswith("forced by alice") and "does not beat" in d.reason
    d = decide(Entry("1", 0.8, "fp"), Entry("1", 0.8, "fp"), 0.0, force=True, user="alice")
    assert not d.promote and "already the champion" in d.reason


def test_below_floor_candidate_is_refused_whatever_the_champion():
    """A model that does not beat frame differencing on its own test frames is never promoted."""
    d = decide(Entry("1", 0.80, "fp", floor=0.85), None, 0.0)                 # no champion yet
    assert not d.promote and d.reason.startswith("v1 not promoted (no champion yet): auc_micro 0.8000 does "
                                                 "not beat its training-free floor 0.8500")
    d = decide(Entry("2", 0.80, "fp", floor=0.85), Entry("1", 0.60, "fp"), 0.0)   # beats a weak champion
    assert not d.promote and "champion v1 kept" in d.reason and "training-free floor" in d.reason
    assert not decide(Entry("1", 0.85, "fp", floor=0.85), None, 0.0).promote    # equal does not beat it
    assert decide(Entry("2", 0.86, "fp", floor=0.85), Entry("1", 0.60, "fp"), 0.0).promote
    assert decide(Entry("1", 0.80, "fp"), None, 0.0).promote                    # no labels, no floor: no rule
    d = decide(Entry("2", 0.80, "fp", floor=0.85), Entry("1", 0.60, "fp"), 0.0, force=True, user="bob")
    assert d.promote and d.forced and "training-free floor" in d.reason


def test_params_never_carry_secrets(tmp_path):
    cfg = tiny_cfg(tmp_path, storage={"endpoint_url": "http://minio:9000", "bucket": "b"},
                   tracking={"uri": "https://user:pa55@mlflow.example.com"})
    p = tracking.params(cfg)
    assert p["train.lr"] == str(cfg.train.lr) and p["data.size"] == "[32, 32]"
    assert "pa55" not in json.dumps(p) and "***@mlflow.example.com" in p["tracking.uri"]
    assert not any(tracking.runs._secret_key(k) for k in p)
    assert tracking.runs._secret_key("storage.secret_access_key") and tracking.runs._secret_key("x.api_token")
    assert not tracking.runs._secret_key("model.mae.patch_size")


def test_configured_uri_does_not_leak_into_the_next_stage(tmp_path, monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; it must not override the next cfg."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = tiny_cfg(tmp_path, tracking={"uri": f"sqlite:///{tmp_path / 'a.db'}"})
    b = tiny_cfg(tmp_path, tracking={"uri": f"sqlite:///{tmp_path / 'b.db'}"})
    tracking.configure(a)
    assert tracking.tracking_uri(b) == b.tracking.uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")     # the user's override wins
    assert tracking.configure(b) == "http://127.0.0.1:1" and tracking.tracking_uri(a) == "http://127.0.0.1:1"


# ----------------------------------------------------------------------------------------------
# Against a real server

@pytest.fixture(scope="module")
def world(tmp_path_factory, mlflow_server):  # noqa: F811
    """Tiny footage, three differently good models, each evaluated on the full test split."""
    root = tmp_path_factory.mktemp("registry")

    def cfg_for(tag: str, tracked: bool, **train_kw):
        return tiny_cfg(root, **SMALL,
                        train={"out": str(root / tag / "train"), "epochs": 2, "batch_size": 2, "lr": 2e-3,
                               "val_fraction": 0.25, **train_kw},
                        evaluate={"out": str(root / tag / "evaluate"), "top_k": 1, "bootstrap": 0},
                        tracking={"enabled": tracked, "uri": mlflow_server},
                        # tiny models never beat frame differencing on tiny footage: the floor rule
                        # (test_below_floor_…) is off where these tests exercise the champion rules
                        registry={"model_name": NAME, "out": str(root / tag / "register"), "beat_floor": False})

    base = cfg_for("a", True)
    synthesize.run(base)
    extract.run(base, progress=False)
    models = {}
    for tag, kw in {"a": {}, "b": {"epochs": 1, "max_steps": 1}, "c": {"epochs": 1, "max_steps": 2}}.items():
        cfg = cfg_for(tag, tag == "a", **kw)
        cfg.seed = {"a": 0, "b": 1, "c": 2}[tag]
        train.run(cfg, progress=False)
        cfg.tracking.enabled = True
        m = evaluate.run(cfg)
        models[tag] = {"cfg": cfg, "auc": m["auc_micro"], "model": Path(cfg.train.out) / "model.pt",
                       "metrics": Path(cfg.evaluate.out) / "metrics.json"}
    aucs = sorted(models.values(), key=lambda m: m["auc"])
    assert aucs[0]["auc"] < aucs[1]["auc"] < aucs[2]["auc"], [m["auc"] for m in aucs]
    return {"root": root, "uri": mlflow_server, "worst": aucs[0], "mid": aucs[1], "best": aucs[2],
            "trained": models["a"]}


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _register(m, **kw):
    return register.run(m["cfg"], **kw)


def test_train_and_evaluate_runs_are_tracked(world):
    c = _client(world["uri"])
    cfg = world["trained"]["cfg"]
    exp = c.get_experiment_by_name(cfg.experiment_name)
    runs = c.search_runs([exp.experiment_id], "tags.`pseudovad.stage` = 'train'")
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED"
    assert r.data.params["pseudo.kind"] == cfg.pseudo.kind and r.data.params["train.epochs"] == "2"
    assert r.data.tags["data.fingerprint"] == results.read(cfg.train.out)["fingerprint"]
    assert r.data.tags.get("git.commit")
    history = c.get_metric_history(r.info.run_id, "loss_f_normal")
    assert [h.step for h in history] == [1, 2]
    assert len(c.get_metric_history(r.info.run_id, "noise_norm")) == 2
    assert {a.path for a in c.list_artifacts(r.info.run_id)} >= {"metrics.json", "provenance.json", "history.json"}
    logged = [m for m in c.search_logged_models([exp.experiment_id]) if m.source_run_id == r.info.run_id]
    assert len(logged) == 1 and logged[0].tags["model_sha256"] == sha256_file(world["trained"]["model"])

    ev = c.search_runs([exp.experiment_id], "tags.`pseudovad.stage` = 'evaluate'")
    assert len(ev) == 3 and all(r.info.status == "FINISHED" for r in ev)
    mine = [r for r in ev if r.data.tags["model"] == str(world["trained"]["model"])]
    assert len(mine) == 1
    metrics = results.read(world["trained"]["metrics"])
    assert mine[0].data.metrics["auc_micro"] == pytest.approx(metrics["auc_micro"])
    # beside the papers' AUC, what an operator gets at the default threshold of the calibrated score
    assert metrics["operating_threshold"] == 0.99 and metrics["events"] >= 2
    assert 0 <= metrics["events_found"] <= metrics["events"] and 0.0 <= metrics["flagged_share"] <= 1.0
    assert metrics["false_alarms_per_hour"] is not None          # the test videos' frame rate is known
    assert mine[0].data.metrics["event_recall"] == pytest.approx(metrics["event_recall"])
    assert mine[0].data.tags["data.fingerprint"] == metrics["fingerprint"]
    arts = {a.path for a in c.list_artifacts(mine[0].info.run_id, "plots")}
    assert "plots/roc.png" in arts and any(a.startswith("plots/timeline_") for a in arts)


def test_register_gate_against_a_real_server(world, tmp_path, capfd):
    c = _client(world["uri"])
    mid, worst, best = world["mid"], world["worst"], world["best"]

    capfd.readouterr()
    d1 = _register(mid)
    assert d1["promoted"] and d1["version"] == "1" and d1["champion_before"] is None
    # a new registered model gets its first version without MLflow's "… already exists" on the way
    assert "already exists" not in capfd.readouterr().err
    logged = c.get_logged_model(c.get_model_version(NAME, "1").source.removeprefix("models:/"))
    listed = json.loads(logged.tags["mlflow.modelVersions"])
    assert [(e["name"], str(e["version"])) for e in listed] == [(NAME, "1")]   # the logged model names it, once
    assert json.loads((Path(mid["cfg"].registry.out) / "decision.json").read_text()) == d1

    d2 = _register(worst)
    assert not d2["promoted"] and d2["champion_after"] == "1" and d2["version"] == "2"
    v2 = c.get_model_version(NAME, "2")
    assert v2.tags["gate.decision"] == "kept" and "does not beat" in v2.tags["gate.reason"]
    assert float(v2.tags["auc_micro"]) == worst["auc"] and v2.tags["eval_fingerprint"] == d1["fingerprint"]
    assert v2.tags["data_version"] == dvc_hash(worst["cfg"].data.store)     # the store it was trained on, as dvc.lock names it

    # a better AUC on a different test set is not comparable: the champion stays
    sub = best["cfg"]
    only = evaluate.run(sub, out=tmp_path / "subset", videos=[sub_video(sub)])
    d3 = register.run(sub, metrics=tmp_path / "subset" / "metrics.json")
    assert not d3["promoted"] and "different test set" in d3["reason"] and only["fingerprint"] != d1["fingerprint"]

    d4 = _register(best)
    assert d4["promoted"] and d4["champion_before"] == "1" and d4["champion_after"] == d4["version"] == "4"
    rm = c.get_registered_model(NAME)
    assert rm.aliases == {"champion": "4", "challenger": "4"}
    assert c.get_model_version(NAME, "4").tags["gate.decision"] == "promoted"

    # the champion is what score and warm starts load
    tracking.configure(uri=world["uri"])
    net, meta = load_model(f"models:/{NAME}@champion")
    assert sha256_file(registry.fetch_model_file(f"models:/{NAME}@champion")) == sha256_file(best["model"])
    assert meta["calibration"]["n"] > 0
    # the MLflow flavour (torch.export) serves any batch size with the logged signature
    import mlflow.pytorch
    import torch

    exported = mlflow.pytorch.load_model(f"models:/{NAME}/4")
    x = torch.zeros(3, 1, 8, 32, 32)
    assert torch.allclose(exported(x), net(x), atol=1e-5)
    mi = mlflow.models.get_model_info(f"models:/{NAME}/4")
    assert list(mi.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 32, 32]

    # a human overrides the gate: recorded as forced, same file + test set reuses its version
    d5 = _register(worst, force=True)
    assert d5["promoted"] and d5["forced"] and d5["version"] == "2" and d5["reused_version"]
    v2 = c.get_model_version(NAME, "2")
    assert v2.tags["gate.decision"] == "forced" and v2.tags["gate.forced_by"] == d5["forced_by"]
    assert c.get_registered_model(NAME).aliases["champion"] == "2"
    assert len(c.search_model_versions(f"name = '{NAME}'")) == 4          # nothing deleted, nothing duplicated


def test_version_page_decides(world):
    """What a reviewer sees on a version page: the decision and Δ against the champion it was compared
    with, the numbers on the version's logged model, a link to the evaluate run (and its ROC) that
    resolves, the test set as a dataset input; the runs of one pipeline run share one parent."""
    import re
    import urllib.request

    c = _client(world["uri"])
    best, worst = world["best"], world["worst"]
    v2 = c.get_model_version(NAME, "2")                       # forced over champion v4 (best)
    assert v2.description.startswith("**Gate: forced.** forced by ")
    assert f"Δ auc_micro vs champion v4: **{worst['auc'] - best['auc']:+.4f}**" in v2.description
    assert c.get_model_version(NAME, "4").description.startswith("**Gate: promoted.** promoted: auc_micro")
    assert f"`{results.read(worst['metrics'])['fingerprint'][:16]}`" in v2.description
    assert "pseudo.lam=" in v2.description and "**Method**: ltgpa" in v2.description
    v1 = c.get_model_version(NAME, "1")
    assert v1.description.startswith("**Gate: promoted.**") and "no champion before this version" in v1.description

    # the numbers on the version's logged model (MLflow 3: the version page's metrics)
    # (the OSS registry keeps the logged model as the version's source, models:/<model_id>)
    model_id = v2.model_id or v2.source.removeprefix("models:/")
    logged = {m.key: m for m in c.get_logged_model(model_id).metrics}
    assert logged["auc_micro"].value == pytest.approx(worst["auc"])
    assert logged["eer"].value == pytest.approx(results.read(worst["metrics"])["eer"])

    # the link to the evaluate run resolves: the run evaluated this very file; its ROC downloads
    exp_id, run_id = re.search(r"\]\(#/experiments/(\d+)/runs/([0-9a-f]+)\)", v2.description).groups()
    ev = c.get_run(run_id)
    assert ev.info.experiment_id == exp_id and ev.data.tags["pseudovad.stage"] == "evaluate"
    assert ev.data.tags["model_sha256"] == sha256_file(worst["model"]) == v2.tags["model_sha256"]
    roc = re.search(rf"\(#/experiments/{exp_id}/runs/{run_id}/artifacts/(plots/roc\.png)\)", v2.description).group(1)
    with urllib.request.urlopen(f"{world['uri']}/get-artifact?path={roc}&run_uuid={run_id}", timeout=30) as r:
        assert r.status == 200 and r.read(8) == b"\x89PNG\r\n\x1a\n"

    # the test set is a dataset input of the evaluate run, with its fingerprint (and the git commit)
    fp = results.read(worst["metrics"])["fingerprint"]
    inputs = ev.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [fp[:16]]
    assert json.loads(inputs[0].dataset.profile)["fingerprint"] == fp
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "testing"

    # one pipeline run, one parent: evaluate and register of this model file are its children
    reg = c.get_run(v2.tags["register_run_id"])
    parent = ev.data.tags["mlflow.parentRunId"]
    assert reg.data.tags["mlflow.parentRunId"] == parent
    p = c.get_run(parent)
    assert p.data.tags["pseudovad.stage"] == "pipeline" and p.info.run_name == "ltgpa-learned-λ0.1-p0.5"
    assert p.info.status == "FINISHED" and reg.info.run_name == "register-ltgpa-learned-λ0.1-p0.5"
    # train (tracked for model "a") and its evaluation share theirs too
    exp = c.get_experiment_by_name(world["trained"]["cfg"].experiment_name)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"     # the UI opens on runs
    tr = c.search_runs([exp.experiment_id], "tags.`pseudovad.stage` = 'train'")[0]
    ev_a = c.search_runs([exp.experiment_id], "tags.`pseudovad.stage` = 'evaluate' and "
                         f"tags.model_sha256 = '{sha256_file(world['trained']['model'])}'")[0]
    assert tr.data.tags["mlflow.parentRunId"] == ev_a.data.tags["mlflow.parentRunId"]
    assert [i.dataset.digest for i in tr.inputs.dataset_inputs] == [results.read(world["trained"]["cfg"].train.out)["fingerprint"][:16]]


def test_runs_of_one_pipeline_run_share_one_parent(world, monkeypatch):
    """The stages `dvc exp run` runs for one experiment (DVC_EXP_NAME), or those given one
    PSEUDOVAD_PIPELINE_RUN (e.g. a Kubeflow run id), are children of one parent run, named after
    the method and its settings (and the experiment); another key, another parent."""
    c = _client(world["uri"])
    cfg = config_mod.with_values(world["best"]["cfg"], {"pseudo.lam": 0.25})
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-pump")
    with tracking.run(cfg, "train") as a:
        pass
    with tracking.run(cfg, "evaluate") as b:
        pass
    ra, rb = c.get_run(a.info.run_id), c.get_run(b.info.run_id)
    parent = ra.data.tags["mlflow.parentRunId"]
    assert rb.data.tags["mlflow.parentRunId"] == parent and rb.data.tags["dvc.exp_name"] == "brisk-pump"
    assert (ra.info.run_name, rb.info.run_name) == ("train-ltgpa-learned-λ0.25-p0.5", "evaluate-ltgpa-learned-λ0.25-p0.5")
    p = c.get_run(parent)
    assert p.info.run_name == "ltgpa-learned-λ0.25-p0.5 (brisk-pump)" and p.info.status == "FINISHED"
    assert p.data.tags["pseudovad.pipeline_run"] == "dvc-exp-brisk-pump"
    monkeypatch.setenv(tracking.PIPELINE_ENV, "kfp-run-7")
    with tracking.run(cfg, "register") as r:
        pass
    other = c.get_run(r.info.run_id).data.tags["mlflow.parentRunId"]
    assert other != parent and c.get_run(other).data.tags["pseudovad.pipeline_run"] == "kfp-run-7"


def sub_video(cfg) -> str:
    from pseudovad.data.store import FrameStore

    return FrameStore(cfg.data.store).videos("testing")[0].id


def test_score_champion_from_the_registry(world, tmp_path, capsys):
    """score pins what `@champion` meant when it ran: the version, its run, the file's hash."""
    from pseudovad.files import sha256_file
    from tests.test_score import read_scores

    cfg = world["best"]["cfg"]
    frames, _ = render_video(cfg.synthetic, "testing", 1)
    video = tmp_path / "camera.avi"
    write_video(video, frames, cfg.synthetic.fps)
    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    out = tmp_path / "scored"
    c = _client(world["uri"])
    if c.search_registered_models(f"name = '{NAME}'") == [] or not c.get_registered_model(NAME).aliases.get("champion"):
        _register(world["best"])                     # this test run alone: nothing registered yet
    version = c.get_registered_model(NAME).aliases.get("champion")
    assert version
    mv = c.get_model_version(NAME, version)
    code = cli_main(["score", "-P", str(params), str(video), "--out", str(out),
                     "--video", str(tmp_path / "annotated.mp4")])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    m = summary["model"]
    assert m["ref"] == f"models:/{NAME}@champion" and m["alias"] == "champion"
    assert (m["name"], m["version"], m["uri"]) == (NAME, str(version), f"models:/{NAME}/{version}")   # the version, not the alias
    assert m["run_id"] == mv.run_id and m["run_id"]
    assert m["sha256"] == mv.tags["model_sha256"] == sha256_file(m["file"])
    prov = summary["provenance"]
    assert prov["input"]["sha256"] == sha256_file(video) and prov["input"]["hashed"] == "the video file"
    assert prov["pseudovad_version"] == importlib.metadata.version("pseudovad")
    assert prov["calibration"] == summary["normalization"]["calibration"] and prov["calibration"]["psnr_min"]
    assert summary["frames"] == len(frames)
    assert summary["normalization"]["kind"] == "calibrated" and summary["threshold"] == 0.99
    head, rows = read_scores(out / "scores.csv")
    assert head["model_version"] == str(version) and head["model_run_id"] == mv.run_id
    assert head["model_sha256"] == m["sha256"] and head["input_sha256"] == sha256_file(video)
    assert head["model"] == f"models:/{NAME}@champion" and head["pseudovad_version"] == prov["pseudovad_version"]
    assert head["calibration"].startswith("validation n=")
    assert len(rows) == len(frames)
    assert np.all([0 <= float(r["score"]) <= 1 for r in rows])
    assert (out / "timeline.png").stat().st_size > 0 and (tmp_path / "annotated.mp4").stat().st_size > 0
    assert summary["outputs"]["video"] == str(tmp_path / "annotated.mp4")


def test_bad_model_uris_fail_with_one_line(world, tmp_path, capsys):
    cfg = world["best"]["cfg"]
    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    frames, _ = render_video(cfg.synthetic, "testing", 0)
    video = tmp_path / "v.avi"
    write_video(video, frames[:20], cfg.synthetic.fps)
    cases = {
        "models:/": "not a valid model URI",
        f"models:/{NAME}/latest/extra": "not a valid model URI",
        f"models:/{NAME}@no-such-alias": f"registered model '{NAME}' has no alias 'no-such-alias'",
        "models:/no-such-model@champion": "no registered model 'no-such-model'",
        f"models:/{NAME}/99": "has no version 99",
        "runs:/0123456789abcdef/model": "runs:/0123456789abcdef/model",
    }
    for uri, msg in cases.items():
        code = cli_main(["score", "-P", str(params), str(video), "--model", uri, "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and msg in err, (uri, err)
    assert not (tmp_path / "o").exists()


def test_unreachable_tracking_server_fails_fast_with_one_line(world, tmp_path, capsys, monkeypatch):
    cfg = world["best"]["cfg"]
    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)              # the environment overrides params
    code = cli_main(["register", "-P", str(params), "--out", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"tracking server {dead} is unreachable" in err, err
    assert not (tmp_path / "reg").exists()
    frames, _ = render_video(cfg.synthetic, "testing", 0)
    write_video(tmp_path / "v.avi", frames[:20], cfg.synthetic.fps)
    code = cli_main(["score", "-P", str(params), str(tmp_path / "v.avi"), "--model", f"models:/{NAME}@champion"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"tracking server {dead} is unreachable" in err, err


def test_runs_outside_a_checkout_carry_the_commit_baked_into_the_image(tmp_path, monkeypatch):
    """An image has no .git: its build's PSEUDOVAD_GIT_COMMIT (docker/Dockerfile) tags the runs."""
    from pseudovad import build, tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))   # no repository above either
    monkeypatch.setattr(build, "_git", lambda *a: None)   # as in the image: no checkout under the package
    cfg = config_mod.from_dict({})
    monkeypatch.delenv("PSEUDOVAD_GIT_COMMIT", raising=False)
    assert "git.commit" not in tracking.run_tags(cfg, "train")
    monkeypatch.setenv("PSEUDOVAD_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("PSEUDOVAD_GIT_DIRTY", "false")
    tags = tracking.run_tags(cfg, "train")
    assert tags["git.commit"] == "0123456789abcdef0123456789abcdef01234567" and tags["git.dirty"] == "false"
    monkeypatch.setenv("PSEUDOVAD_GIT_COMMIT", "unknown")                  # a build without GIT_COMMIT
    assert "git.commit" not in tracking.run_tags(cfg, "train")


def test_runs_outside_a_checkout_carry_the_commit_pseudovad_is_installed_from(tmp_path, monkeypatch):
    """A user's own folder is no checkout: the runs still say which code ran (the editable install's)."""
    from pseudovad import build, tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    monkeypatch.delenv("PSEUDOVAD_GIT_COMMIT", raising=False)
    monkeypatch.setattr(build, "_git", lambda *a: "" if a[0] == "status" else "ab" * 20)
    tags = tracking.run_tags(config_mod.from_dict({}), "train")
    assert tags["git.commit"] == "ab" * 20 and tags["git.dirty"] == "false"


def test_runs_in_a_kubeflow_step_carry_its_run_pipeline_and_image(monkeypatch):
    from pseudovad import kubeflow, tracking

    for env in tracking.KFP_TAGS.values():   # set, then removed: undone at the end, also what step_config sets
        monkeypatch.setenv(env, "")
        monkeypatch.delenv(env)
    cfg = config_mod.from_dict({})
    assert not {k for k in tracking.run_tags(cfg, "train") if k.startswith("kfp.")}
    monkeypatch.setenv("PSEUDOVAD_KFP_PIPELINE", "pseudovad-training")     # set on the step at compile time
    monkeypatch.setenv("PSEUDOVAD_KFP_IMAGE", "reg.example/pseudovad:0123456789ab")
    kubeflow.step_config({"run_id": "3f2c1d9e-run", "params": "", "overrides": []})   # the step's start
    tags = tracking.run_tags(cfg, "train")
    assert (tags["kfp.run_id"], tags["kfp.pipeline"], tags["kfp.image"]) == \
        ("3f2c1d9e-run", "pseudovad-training", "reg.example/pseudovad:0123456789ab")


def test_register_refuses_another_models_metrics(world, tmp_path, capsys):
    """The gate reads the AUC of the model it registers: metrics.json is bound to the model file's
    sha256 (evaluate writes it into provenance.json), so a borrowed, higher AUC is refused."""
    worst, best = world["worst"], world["best"]
    assert worst["cfg"].model.method == best["cfg"].model.method   # only the file's hash tells them apart
    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(worst["cfg"]))
    before = len(_client(world["uri"]).search_model_versions(f"name = '{NAME}'"))
    code = cli_main(["register", "-P", str(params), "--model", str(worst["model"]), "--metrics", str(best["metrics"]),
                     "--out", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert str(best["metrics"]) in err and str(worst["model"]) in err and "another model's" in err
    # an evaluation that does not say which file it scored cannot be checked, so it is refused too
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "metrics.json").write_text(best["metrics"].read_text())
    prov = json.loads((best["metrics"].parent / "provenance.json").read_text())
    del prov["model_sha256"]
    (legacy / "provenance.json").write_text(json.dumps(prov))
    code = cli_main(["register", "-P", str(params), "--model", str(best["model"]), "--metrics",
                     str(legacy / "metrics.json"), "--out", str(tmp_path / "reg")])
    err = capsys.readouterr().err
    assert code == 2 and "no model_sha256" in err and err.count("\n") == 1, err
    assert not (tmp_path / "reg").exists()
    assert len(_client(world["uri"]).search_model_versions(f"name = '{NAME}'")) == before


def test_register_refuses_a_model_worse_than_frame_differencing(world, tmp_path):
    """A model that learned nothing (every frame reconstructed black: its PSNR tracks brightness,
    not motion) is worse than frame differencing on the same frames: with the floor rule on (the
    default) it does not even become the first champion, and its version page says why."""
    import torch

    from pseudovad.models import build_model
    from pseudovad.models.model_file import model_meta, save_model

    cfg = config_mod.with_values(world["best"]["cfg"], {
        "registry.model_name": "pv-floor", "registry.beat_floor": True, "registry.out": str(tmp_path / "reg"),
        "train.out": str(tmp_path / "train"), "evaluate.out": str(tmp_path / "evaluate")})
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        [*net.parameters()][-1].fill_(-5.0)      # the last layer's bias: tanh(−5) ≈ −1, black
    save_model(tmp_path / "train" / "model.pt", net, model_meta(cfg))
    ev = evaluate.run(cfg)
    assert ev["auc_micro"] < ev["auc_floor"] == max(ev["auc_floor_framediff"], ev["auc_floor_residual"])
    d = register.run(cfg)
    assert not d["promoted"] and d["champion_after"] is None and "training-free floor" in d["reason"]
    c = _client(world["uri"])
    v1 = c.get_model_version("pv-floor", d["version"])
    assert v1.tags["gate.decision"] == "kept" and float(v1.tags["auc_floor"]) == pytest.approx(ev["auc_floor"])
    assert v1.description.startswith("**Gate: kept.** v1 not promoted (no champion yet): auc_micro")
    assert "**Training-free floor** (the gate refuses a version that does not beat it)" in v1.description
    assert "champion" not in (c.get_registered_model("pv-floor").aliases or {})
