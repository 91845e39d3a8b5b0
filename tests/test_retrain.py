"""Scheduled retraining end to end: footage from a real S3 server, a real MLflow server, the
gate deciding, and nothing done (exit 0) when nothing is new; and the one plan both drivers use
(`pseudovad retrain` and the Kubeflow ingest step) on failed downloads and a store it cannot use."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from pseudovad.cli import main as cli_main
from pseudovad.retrain import already_learned
from pseudovad.stages import extract, retrain, synthesize
from tests.conftest import tiny_cfg
from tests.mlflow_server import mlflow_server  # noqa: F401  (module-scoped fixture)
from tests.s3_server import ACCESS_KEY, SECRET_KEY, make_bucket, s3_endpoint, s3_endpoint_session  # noqa: F401
from tests.test_ingest import footage

NAME = "pv-retrain"
SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}}


@pytest.mark.integration
def test_retrain_end_to_end(tmp_path, s3_endpoint, mlflow_server, capfd, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PSEUDOVAD_MODEL_CACHE", str(tmp_path / "model-cache"))
    client = make_bucket(s3_endpoint, "cams")
    cfg = tiny_cfg(tmp_path, **SMALL,
                   storage={"bucket": "cams", "prefix": "footage/"},
                   ingest={"quarantine": str(tmp_path / "quarantine"), "min_frames": 24},
                   train={"epochs": 1, "max_steps": 3, "batch_size": 2, "lr": 2e-3, "val_fraction": 0.25},
                   evaluate={"top_k": 0},
                   tracking={"enabled": True, "uri": mlflow_server, "artifact_location": str(tmp_path / "mlruns")},
                   # nothing can beat a champion by 1.0 AUC; tiny models never beat the floor (not gated here)
                   registry={"model_name": NAME, "min_delta": 1.0, "beat_floor": False})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    out = tmp_path / "retrain"

    # no champion yet: the first round bootstraps one from scratch
    first = retrain.run(cfg, out=out)
    assert first["status"] == "promoted" and first["warm_start"] is None and first["version"] == "1"
    assert first["ingested"] == []

    # nothing new: says so, exit 0, trains nothing
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    assert cli_main(["retrain", "-P", str(params), "--out", str(out)]) == 0
    assert "no new footage to learn from" in capfd.readouterr().out
    assert len(list(out.glob("*/retrain.json"))) == 1

    # new footage in the bucket (one file broken): ingest, warm start from the champion, the gate says no
    client.upload_file(str(footage(tmp_path / "u/1.avi", cfg, seed=71)), "cams", "footage/day2/a.avi")
    client.upload_file(str(footage(tmp_path / "u/2.avi", cfg, seed=72)), "cams", "footage/day2/b.avi")
    client.put_object(Bucket="cams", Key="footage/day2/c.avi", Body=b"partial upload")
    second = retrain.run(cfg, out=out)
    assert len(second["ingested"]) == 2 and second["quarantined"] == 1
    assert second["warm_start"] == f"models:/{NAME}/1"
    assert second["status"] == "kept" and second["version"] == "2" and second["champion_after"] == "1"
    assert "min_delta 1" in second["reason"] or "does not beat" in second["reason"]
    assert second["round"] != first["round"]
    decision = json.loads((out / second["round"] / "register/decision.json").read_text())
    assert decision["promoted"] is False and decision["auc_micro"] == second["auc_micro"]

    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=mlflow_server)
    assert c.get_registered_model(NAME).aliases == {"champion": "1", "challenger": "2"}
    assert c.get_model_version(NAME, "2").tags["gate.decision"] == "kept"
    exp = c.get_experiment_by_name(cfg.experiment_name)
    runs = c.search_runs([exp.experiment_id])
    trains = [r for r in runs if r.data.tags.get("pseudovad.stage") == "train"]
    assert sorted(r.data.params["train.init"] for r in trains) == [f"models:/{NAME}/1", "null"]
    parents = [r for r in runs if r.data.tags.get("pseudovad.stage") == "retrain"]
    assert sorted(r.data.tags["retrain.decision"] for r in parents) == ["kept", "promoted"]

    # the same data again: nothing to do, even though the champion never saw it
    third = retrain.run(cfg, out=out)
    assert third["status"] == "nothing-new" and "already done" in third["reason"]
    # the rule the KFP retraining pipeline shares: without the round folder the registry answers
    # (v2, which the gate kept, was trained on exactly this split); an unseen split trains
    skip, why = already_learned(cfg, second["train_fingerprint"])
    assert skip and why == f"{NAME} v2 was trained on exactly this training split"
    assert already_learned(cfg, "0" * 64)[0] is False

    # no credential anywhere: terminal, MLflow params and tags, registry tags, files written
    texts = [capfd.readouterr().out + capfd.readouterr().err]
    for r in runs:
        texts += [json.dumps(r.data.params), json.dumps(r.data.tags)]
    for mv in c.search_model_versions(f"name = '{NAME}'"):
        texts.append(json.dumps(mv.tags))
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*.json")]
    for text in texts:
        assert SECRET_KEY not in text and ACCESS_KEY not in text


def _ingest_step(cfg, store, tmp_path, **kw):
    """The Kubeflow retraining pipeline's ingest step, in-process: (returned learn, report, counts)."""
    from kfp.dsl import Artifact, Markdown, Metrics

    from components import ingest as component

    report, counts = Markdown(uri=str(tmp_path / "kfp" / "report")), Metrics(uri=str(tmp_path / "kfp" / "counts"))
    lock = Artifact(uri=str(tmp_path / "kfp" / "lock"))
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    learn = component.python_func(source="s3://cams/footage/", store_dir=str(store), report=report, counts=counts,
                                  lock=lock, params=yaml.safe_dump(cfg.to_dict()), **kw)
    return learn, report, counts


@pytest.mark.integration
def test_failed_downloads_train_on_what_arrived_on_both_paths(tmp_path, s3_endpoint, mlflow_server, capfd,  # noqa: F811
                                                              monkeypatch):
    from pseudovad.errors import StorageError
    from pseudovad.storage import S3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    # the Kubeflow step exports its mlflow_uri (kubeflow.from_layers); set here, it is undone afterwards
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("PSEUDOVAD_MODEL_CACHE", str(tmp_path / "model-cache"))
    client = make_bucket(s3_endpoint, "cams")
    name = "pv-retrain-partial"
    cfg = tiny_cfg(tmp_path, **SMALL, storage={"bucket": "cams", "prefix": "footage/"},
                   ingest={"quarantine": str(tmp_path / "quarantine"), "min_frames": 24},
                   train={"epochs": 1, "max_steps": 2, "batch_size": 2, "val_fraction": 0.25},
                   evaluate={"top_k": 0},
                   tracking={"enabled": True, "uri": mlflow_server, "artifact_location": str(tmp_path / "mlruns")},
                   registry={"model_name": name})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    kfp_store = tmp_path / "volume" / "store"
    shutil.copytree(cfg.data.store, kfp_store)
    client.upload_file(str(footage(tmp_path / "u/a.avi", cfg, seed=81)), "cams", "footage/a.avi")
    client.upload_file(str(footage(tmp_path / "u/b.avi", cfg, seed=82)), "cams", "footage/b.avi")
    real = S3.download

    def flaky(self, obj, dest, on_bytes=None):       # b.avi's connection keeps dropping
        key = obj if isinstance(obj, str) else obj.key
        if key.endswith("b.avi"):
            raise StorageError(f"s3://cams/{key}: download failed after 3 attempts (connection reset); rerun to resume")
        return real(self, obj, dest, on_bytes)
    monkeypatch.setattr(S3, "download", flaky)

    # Kubeflow: the ingest step lists the failure, keeps what arrived, and the round goes on to train
    learn, report, counts = _ingest_step(cfg, kfp_store, tmp_path, mlflow_uri=mlflow_server, model_name=name,
                                         quarantine_dir=str(tmp_path / "volume" / "quarantine"))
    assert learn is True
    assert (counts.metadata["ingested"], counts.metadata["failed"]) == (1, 1)
    assert "not downloaded (rerun resumes): s3://cams/footage/b.avi" in Path(report.path).read_text()
    assert [f["source"] for f in report.metadata["failed"]] == ["s3://cams/footage/b.avi"]

    # the CLI: the same round trains on a.avi, reports b.avi, and exits 1 at the end
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    out = tmp_path / "retrain"
    assert cli_main(["retrain", "-P", str(params), "--out", str(out)]) == 1
    printed = capfd.readouterr().out
    assert "retrain: not downloaded (the next run resumes): s3://cams/footage/b.avi" in printed
    last = json.loads((out / "last.json").read_text())
    assert last["status"] == "promoted" and len(last["ingested"]) == 1 and len(last["failed"]) == 1


def test_a_store_without_labelled_test_videos_is_refused_before_anything_is_fetched(tmp_path, capsys):
    from pseudovad.errors import DataError

    db = tmp_path / "never.db"
    cfg = tiny_cfg(tmp_path, storage={"bucket": "cams"}, tracking={"enabled": True, "uri": f"sqlite:///{db}"})
    synthesize.run(cfg)
    extract.run(cfg, splits=("training",), progress=False)          # no test split
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    assert cli_main(["retrain", "-P", str(params), "--out", str(tmp_path / "retrain")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no labelled test videos to evaluate on" in err
    with pytest.raises(DataError, match="no labelled test videos to evaluate on"):
        _ingest_step(cfg, cfg.data.store, tmp_path)
    with pytest.raises(DataError, match="no frame store here"):
        _ingest_step(cfg, tmp_path / "never-extracted", tmp_path)
    assert not db.exists() and not (tmp_path / "store-ingested").exists()    # neither MLflow nor S3 was asked
