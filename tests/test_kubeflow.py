"""What the Kubeflow components rely on from the package: settings in layers, the ROC the KFP UI
stores, a step's reports, where checkpoints go."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_curve

from pseudovad import kubeflow
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation import metrics, report

PARAMS = yaml.safe_dump({"data": {"size": [32, 32]}, "pseudo": {"lam": 0.9, "p": 0.9, "sigma": 0.3},
                         "train": {"lr": 0.5, "epochs": 7}, "registry": {"model_name": "from-params"}})


def test_layers_params_then_typed_then_tuned_then_overrides(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = kubeflow.from_layers(PARAMS, {"pseudo.lam": 0.2, "pseudo.p": 0.25, "train.lr": 0.1},
                                  ["train.lr=0.003"], tuned={"pseudo.lam": 0.37, "train.lr": 0.002})
    assert cfg.data.size == [32, 32]        # params beat the code defaults
    assert cfg.pseudo.sigma == 0.3          # params kept where no layer above sets the key
    assert cfg.pseudo.p == 0.25             # typed beats params
    assert cfg.pseudo.lam == 0.37           # tuned beats typed
    assert cfg.train.lr == 0.003            # overrides beat everything
    assert cfg.train.epochs == 7


def test_only_typed_parameters_the_user_set_reach_the_settings(monkeypatch):
    """Unset is -1 / "" / [] (a value the key never takes); 0, 0.0 and false are real settings."""
    monkeypatch.setattr(os, "environ", os.environ.copy())
    args = {"lam": -1.0, "p": 0.0, "jumps": [], "epochs": 3, "method": "", "warm_start": "false",
            "patch_max_move": 0, "tune_samples": -1, "videos": ["01"], "run_id": ""}
    assert kubeflow.typed_values(args) == {"pseudo.p": 0.0, "train.epochs": 3, "ingest.warm_start": False,
                                           "pseudo.patch_max_move": 0}
    cfg = kubeflow.step_config({**args, "params": PARAMS})
    assert (cfg.pseudo.lam, cfg.pseudo.p, cfg.train.epochs, cfg.ingest.warm_start) == (0.9, 0.0, 3, False)
    assert json.loads(os.environ["PSEUDOVAD_KFP_PARAMETERS_SET"]) == {"p": 0.0, "epochs": 3, "warm_start": False,
                                                                      "patch_max_move": 0}
    assert kubeflow.parameters_set({"mlflow_uri": "http://u:pw@mlflow:5000"}) == {"mlflow_uri": "http://***@mlflow:5000"}


def test_empty_typed_values_keep_the_params_value_and_the_mlflow_uri_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://pod-env:5000")
    cfg = kubeflow.from_layers(PARAMS, {"registry.model_name": "", "ingest.quarantine": None},
                                  mlflow_uri="http://mlflow:5000")
    assert cfg.registry.model_name == "from-params"
    assert cfg.tracking.uri == "http://mlflow:5000"
    # exported: MLflow calls made without the config (models:/ URIs) use the pipeline's server too
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_layers_validate_and_name_the_bad_input():
    assert kubeflow.from_layers().model.method == "ltgpa"          # nothing given: code defaults
    with pytest.raises(ConfigError, match="params: expected a mapping"):
        kubeflow.from_layers("- a list\n- not params\n")
    with pytest.raises(ConfigError, match="params: not valid YAML"):
        kubeflow.from_layers("data: {size: [32\n")
    with pytest.raises(ConfigError, match="pseudo.p"):
        kubeflow.from_layers(PARAMS, {"pseudo.p": 1.5})


def test_tuned_values_come_from_tunes_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"best_config": {"pseudo.lam": 0.4}, "trials": 2}))
    assert kubeflow.tuned_values(tmp_path) == {"pseudo.lam": 0.4}
    with pytest.raises(DataError, match="not a tune output folder"):
        kubeflow.tuned_values(tmp_path / "missing")
    (tmp_path / "metrics.json").write_text(json.dumps({"best_config": None}))
    with pytest.raises(DataError, match="no best_config"):
        kubeflow.tuned_values(tmp_path)


def test_checkpoints_on_the_volume_are_per_run_so_a_retry_resumes(tmp_path):
    a = kubeflow.work_dir("/mnt/ckpt", "job-1", "train", str(tmp_path / "model"))
    assert a == Path("/mnt/ckpt/job-1/train") == kubeflow.work_dir("/mnt/ckpt", "job-1", "train", "other")
    assert kubeflow.work_dir("", "job-1", "tune", str(tmp_path / "best")) == tmp_path / "best.work"


def test_publish_tuning_copies_the_verdict_and_drops_the_trials(tmp_path):
    work = tmp_path / "work"
    (work / "trial_0").mkdir(parents=True)
    for name in kubeflow.TUNE_RESULTS:
        (work / name).write_text(name)
    kubeflow.publish_tuning(work, tmp_path / "best")
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == sorted(kubeflow.TUNE_RESULTS)
    assert not work.exists()


def test_numbers_are_what_a_metrics_artifact_can_hold():
    s = {"auc_micro": 0.9, "auc_macro": None, "frames": 80, "resumed": True, "method": "ltgpa"}
    assert kubeflow.numbers(s) == {"auc_micro": 0.9, "frames": 80}
    assert kubeflow.numbers(s, ("frames", "auc_macro", "absent")) == {"frames": 80}


def test_step_reports_are_markdown():
    text = kubeflow.markdown("register: models:/m/2", "kept: does not beat v1", {"version": "2"},
                                log=["line one"])
    assert text == "## register: models:/m/2\n\nkept: does not beat v1\n\n    line one\n\n```yaml\nversion: '2'\n```\n"


def _roc(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return roc_curve(y, rng.random(n) + 0.3 * y)


def test_thinned_roc_keeps_both_ends_and_only_finite_thresholds():
    fpr, tpr, thr = _roc()
    assert np.isinf(thr[0]) and len(thr) > 100
    f, t, h = metrics.thin_roc(fpr, tpr, thr, points=50)
    assert 40 <= len(f) <= 51 and len(f) == len(t) == len(h)
    assert (f[0], t[0]) == (fpr[0], tpr[0]) and (f[-1], t[-1]) == (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert all(math.isfinite(x) for x in h) and h[0] > max(thr[1:])   # still flags nothing
    assert json.loads(json.dumps(h)) == h
    assert metrics.thin_roc(fpr[:3], tpr[:3], thr[:3], points=50)[0] == [float(x) for x in fpr[:3]]


def test_roc_csv_reads_back_what_evaluate_writes(tmp_path):
    from pseudovad.evaluation.protocol import roc_csv

    fpr, tpr, thr = _roc(50)
    (tmp_path / "roc.csv").write_text(roc_csv(fpr, tpr, thr))
    f, t, h = report.read_roc(tmp_path / "roc.csv")
    assert f == pytest.approx(fpr, abs=1e-6) and t == pytest.approx(tpr, abs=1e-6) and math.isinf(h[0])
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not an evaluate roc.csv"):
        report.read_roc(tmp_path / "bad.csv")


def test_evaluation_markdown_lists_the_numbers_and_every_video():
    text = report.evaluation_markdown({"method": "ltgpa", "dataset": "ped2", "auc_micro": 0.91234, "frames": 80,
                                       "video_auc": {"01": 0.5, "02": None}})
    assert text.startswith("## evaluate: ltgpa on ped2\n")
    assert "| auc_micro | 0.9123 |" in text and "| frames | 80 |" in text
    assert "| 01 | 0.5000 |" in text and "| 02 | n/a |" in text
