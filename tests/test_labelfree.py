"""Normal footage only: the time split, anomalies injected with their masks, the label-free check
in `evaluate`, the operating point's events and false alarms, and the promotion gate deciding on
label-free evidence (refusing a candidate that raises false alarms)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pseudovad import results
from pseudovad.cli import main as cli_main
from pseudovad.data.inject import KINDS, inject, resembled
from pseudovad.data.split import split_video
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.data.synthetic import render_video
from pseudovad.errors import ConfigError
from pseudovad.evaluation import alarms
from pseudovad.gate import LabelFree, decide_label_free
from pseudovad.models.model_file import load_model, save_model
from pseudovad.stages import evaluate, extract, register, synthesize, train
from tests.conftest import tiny_cfg

SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}}
# 40-frame videos, 8-frame clips: [train 20 | validation 10 | held out 10]
SPLIT = {"val_fraction": 0.25, "holdout_fraction": 0.25}


def _entry(frames: int) -> VideoEntry:
    return VideoEntry("v", "training", frames, 8, 8, 1, "src", "sum", "training/v.npy")


# ----------------------------------------------------------------------------------------------
# The split by time and the injected anomalies

def test_each_training_video_is_split_by_time_and_too_short_parts_are_left_out():
    s = split_video(_entry(100), 0.2, 0.1, 8)
    assert (s.train, s.validation, s.held_out) == ((0, 70), (70, 90), (90, 100))   # the end is held out
    s = split_video(_entry(40), 0.1, 0.1, 8)           # 4-frame tails: shorter than a clip, so none
    assert (s.train, s.validation, s.held_out) == ((0, 40), (40, 40), (40, 40))
    s = split_video(_entry(100), 0.2, 0.0, 8)          # no held-out end: as before this split existed
    assert (s.train, s.validation, s.held_out) == ((0, 80), (80, 100), (100, 100))


@pytest.mark.parametrize("channels", [1, 3])
def test_injected_anomalies_are_where_their_masks_say_of_the_kind_asked_and_the_same_per_seed(channels):
    cfg = tiny_cfg(Path("."), synthetic={"frames": 60, "height": 64, "width": 96})
    frames = np.stack(render_video(cfg.synthetic, "training", 0)[0])              # (T, H, W) of a street
    if channels == 3:
        frames = np.stack([frames, frames // 2 + 60, 255 - frames], axis=-1)
    window = (8, 52)
    for kind in KINDS:
        got = inject(frames, kind, seed=3, key="01@20", window=window)
        assert got.kind == kind and got.frames.shape == frames.shape and got.frames.dtype == np.uint8
        changed = got.frames != frames
        changed = changed.any(-1) if channels == 3 else changed
        assert not (changed & ~got.mask).any(), kind          # every changed pixel is inside the mask
        on = np.flatnonzero(got.mask.any(axis=(1, 2)))
        assert on.tolist() == np.flatnonzero(got.labels()).tolist(), kind    # the mask is on exactly the event frames
        assert window[0] <= on.min() and on.max() < window[1], kind
        share = changed[got.mask].mean()
        assert share > (0.05 if kind == "speed" else 0.5), (kind, share)     # the mask is not mostly untouched pixels
        h = got.mask.any(axis=2).sum(axis=1).max()
        assert 0.15 * frames.shape[1] <= h <= 0.4 * frames.shape[1], (kind, h)   # about a person's height
        again = inject(frames, kind, seed=3, key="01@20", window=window)
        assert np.array_equal(again.frames, got.frames) and np.array_equal(again.mask, got.mask)
        assert again.events == got.events
        other = inject(frames, kind, seed=4, key="01@20", window=window)
        assert not np.array_equal(other.mask, got.mask), kind
    # each kind changes something the others do not: motion only, appearance and motion, appearance only
    obj, fast, look = (inject(frames, k, seed=3, key="01@20", window=window) for k in ("object", "speed", "appearance"))
    assert fast.events[0]["speed"] == 3 and "shift" in look.events[0] and "to" in obj.events[0]


def test_an_unknown_kind_is_refused_where_it_is_named():
    with pytest.raises(ConfigError, match=r"evaluate.inject: unknown kind 'fire' \(known: object, speed, appearance\)"):
        tiny_cfg(Path("."), evaluate={"inject": ["object", "fire"]})
    with pytest.raises(ConfigError, match="unknown kind 'fire'"):
        inject(np.zeros((10, 16, 16), np.uint8), "fire", 0, "k")


def test_kinds_that_resemble_a_models_own_pseudo_anomalies_are_named():
    assert resembled("ltgpa", "patch", 0.5) == "object" and resembled("ltgpa", "skip", 0.5) == "speed"
    assert resembled("mae_nct", "nct") == "appearance"
    assert resembled("ltgpa", "none", 0.5) is None and resembled("ltgpa", "patch", 0.0) is None


# ----------------------------------------------------------------------------------------------
# The operating point: events found and false alarms, as `score` flags them

def test_events_found_and_false_alarms_at_the_operating_point_by_hand():
    #          frame: 0    1    2    3    4    5    6    7    8    9   10   11
    labels = np.array([0,   0,   1,   1,   1,   0,   0,   0,   0,   1,   0,   0])
    scores = np.array([.1, .995, .999, .2, .999, .1, .995, .996, .999, .1, .1, .999])
    # alarms (≥ 0.99 for ≥ 2 frames): [1, 3) overlaps event [2, 5); [6, 9) overlaps nothing; 4 and 11 too short
    out = alarms.at_operating_point({"a": scores}, {"a": labels}, 0.99, 2, {"a": 2.0})
    assert out["events"] == 2 and out["events_found"] == 1 and out["event_recall"] == 0.5
    assert out["false_alarms"] == 1 and out["normal_frames"] == 8
    assert out["flagged_share"] == pytest.approx(4 / 8)        # frames 1, 6, 7, 8 of the 8 normal ones
    assert out["normal_hours"] == pytest.approx(8 / 2.0 / 3600) and out["false_alarms_per_hour"] == pytest.approx(900.0)
    assert alarms.at_operating_point({"a": scores}, {"a": labels}, 0.99, 2, {"a": None})["false_alarms_per_hour"] is None


# ----------------------------------------------------------------------------------------------
# The gate on label-free evidence, as a pure function

def test_label_free_gate_refuses_more_false_alarms_or_worse_detection_and_promotes_the_rest():
    champ = LabelFree(0.010, 0.80, 2.0)
    d = decide_label_free("2", LabelFree(0.030, 0.90), "1", champ, "1", 0.01, 0.02)
    assert not d.promote and "champion v1 kept: raises false alarms: +2.00 points" in d.reason
    d = decide_label_free("2", LabelFree(0.010, 0.75), "1", champ, "1", 0.01, 0.02)
    assert not d.promote and "finds injected anomalies worse: AUC -0.0500" in d.reason
    d = decide_label_free("2", LabelFree(0.015, 0.79), "1", champ, "1", 0.01, 0.02)     # within both tolerances
    assert d.promote and d.reason.startswith("promoted: label-free: false alarms +0.50 points")
    assert decide_label_free("2", LabelFree(0.015, 0.10), "1", champ, "1", 0.01, None).promote   # AUC check off
    d = decide_label_free("3", LabelFree(0.0, 0.99), "2", champ, "1", 0.01, 0.02)   # numbers of another champion
    assert not d.promote and "champion v2 was not scored on the same held-out footage (evaluate scored v1" in d.reason
    assert decide_label_free("1", LabelFree(0.5, 0.5), None, None, None, 0.01, 0.02).promote   # the first champion
    d = decide_label_free("2", LabelFree(0.030, 0.90), "1", champ, "1", 0.01, 0.02, force=True, user="ann")
    assert d.promote and d.forced and d.reason.startswith("forced by ann (gate: raises false alarms")


# ----------------------------------------------------------------------------------------------
# Unlabelled footage end to end: train, evaluate (label-free), register (the gate decides)

@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """Normal footage only (no test split), a model trained on it with a held-out end, its
    label-free evaluation and a local MLflow store."""
    tmp = tmp_path_factory.mktemp("camera")

    def cfg_for(tag: str, **extra):
        return tiny_cfg(tmp, **SMALL, synthetic={"test_videos": 0},
                        train={"out": str(tmp / tag / "train"), "epochs": 1, "max_steps": 6, "batch_size": 2,
                               "lr": 2e-3, **SPLIT},
                        evaluate={"out": str(tmp / tag / "evaluate"), "top_k": 0, "fps": 10.0},
                        tracking={"enabled": True, "uri": f"sqlite:///{tmp / 'mlflow.db'}",
                                  "artifact_location": str(tmp / "mlruns")},
                        registry={"model_name": "pv-camera", "out": str(tmp / tag / "register")}, **extra)
    cfg = cfg_for("a")
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    assert FrameStore(cfg.data.store).videos("testing") == []
    train.run(cfg, progress=False)
    return {"tmp": tmp, "cfg": cfg, "cfg_for": cfg_for}


@pytest.mark.integration
def test_label_free_evaluation_register_and_a_candidate_that_raises_false_alarms_is_refused(camera, capsys):
    cfg, tmp = camera["cfg"], camera["tmp"]
    assert cli_main(["evaluate", "-P", _params(cfg, tmp / "a.yaml"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "label-free (no labelled test videos), on 14 held-out normal frames of 2 training video(s)" in printed
    m = results.read(Path(cfg.evaluate.out))
    # the held-out ends: frames [30, 40) of each 40-frame video; an 8-frame clip scores frames 4 … 36 of a video
    # (reading frames 26–29 of validation footage as context), so frames 30–36 of each: 7 + 7 … of 10 + 10
    assert m["evidence"] == "label-free" and m["holdout_video_ids"] == ["01", "02"] and m["holdout_frames"] == 14
    assert m["holdout_hours"] == pytest.approx(14 / 10 / 3600)
    assert m["inject_kinds"] == list(KINDS) and m["inject_resembles"] == "appearance"   # LTGPA's learned noise
    for k in KINDS:
        assert 0.0 <= m[f"synthetic_auc_{k}"] <= 1.0 and m[f"synthetic_events_{k}"] == 2
    assert m["synthetic_auc"] == pytest.approx(np.mean([m[f"synthetic_auc_{k}"] for k in KINDS]))
    assert 0.0 <= m["holdout_flagged_share"] <= 1.0 and m["operating_threshold"] == 0.99
    assert m["fingerprint"] == m["labelfree_fingerprint"] and "auc_micro" not in m
    assert "baseline_version" not in m                   # no champion yet: nothing scored beside it
    rows = list(csv.DictReader((Path(cfg.evaluate.out) / "scores.csv").open()))
    assert {r["copy"] for r in rows} == {"clean", *KINDS} and len(rows) == 14 * 4
    assert sum(int(r["label"]) for r in rows if r["copy"] == "clean") == 0
    assert sorted(p.name for p in (Path(cfg.evaluate.out) / "plots").iterdir()) == \
        ["labelfree_injected.png", "labelfree_roc.png", "labelfree_timeline.png"]

    first = register.run(cfg)
    assert first["promoted"] and first["evidence"] == "label-free" and "first champion (label-free" in first["reason"]

    # a candidate whose calibration says every frame is far worse than normal: every frame flagged
    noisy = camera["cfg_for"]("b")
    model, meta = load_model(Path(cfg.train.out) / "model.pt")
    meta = {**meta, "calibration": {k: (v + 60.0 if k.startswith("psnr_") and k != "psnr_std" else v)
                                    for k, v in meta["calibration"].items()}}
    Path(noisy.train.out).mkdir(parents=True)
    save_model(Path(noisy.train.out) / "model.pt", model, meta)
    ev = evaluate.run(noisy)
    assert ev["baseline_version"] == "1" and ev["holdout_flagged_share"] == 1.0
    assert ev["baseline_holdout_flagged_share"] == pytest.approx(m["holdout_flagged_share"])
    assert ev["baseline_synthetic_auc"] == pytest.approx(m["synthetic_auc"])     # same footage, same anomalies
    assert ev["synthetic_auc"] == pytest.approx(m["synthetic_auc"])              # same network: AUC unchanged
    assert cli_main(["register", "-P", _params(noisy, tmp / "b.yaml")]) == 0
    assert "champion v1; champion v1 kept: raises false alarms" in capsys.readouterr().out
    decision = json.loads((Path(noisy.registry.out) / "decision.json").read_text())
    assert decision["promoted"] is False and decision["evidence"] == "label-free"

    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=cfg.tracking.uri)
    v2 = c.get_model_version("pv-camera", "2")
    assert v2.tags["gate.decision"] == "kept" and v2.tags["gate.evidence"] == "label-free"
    assert float(v2.tags["holdout_flagged_share"]) == 1.0
    assert "Evidence: **label-free**" in v2.description and "champion v1 (same footage)" in v2.description
    assert str(c.get_registered_model("pv-camera").aliases["champion"]) == "1"


def _params(cfg, path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(path)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written

def test_footage_too_short_to_hold_out_is_one_line_exit_2(tiny_store, tmp_path, capsys):
    cfg = tiny_cfg(tiny_store, **SMALL, train={"out": str(tmp_path / "t"), "holdout_fraction": 0.1, "max_steps": 2})
    assert cli_main(["train", "-P", _params(cfg, tmp_path / "p.yaml"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training footage too short to hold out train.holdout_fraction 0.1" in err
    assert "the longest video has 40 frames, and a video needs 75 for a held-out end of one 8-frame clip span" in err
    assert not (tmp_path / "t" / "model.pt").exists() and not (tmp_path / "t" / "metrics.json").exists()


def test_an_unknown_kind_on_the_command_line_is_one_line_exit_2(tiny_store, tmp_path, capsys):
    cfg = tiny_cfg(tiny_store, **SMALL)
    rc = cli_main(["evaluate", "-P", _params(cfg, tmp_path / "p.yaml"), "-p", "evaluate.inject=[object,fire]",
                   "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "evaluate.inject: unknown kind 'fire'" in err
    assert not (tmp_path / "e").exists()


def test_no_normal_footage_left_after_the_split_is_one_line_exit_2(tmp_path, capsys):
    """Unlabelled footage and a model that held nothing out: nothing to evaluate on."""
    cfg = tiny_cfg(tmp_path, **SMALL, synthetic={"test_videos": 0},
                   train={"out": str(tmp_path / "t"), "epochs": 1, "max_steps": 1, "batch_size": 2})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    train.run(cfg, progress=False)
    params = _params(cfg, tmp_path / "p.yaml")
    assert cli_main(["evaluate", "-P", params, "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing to evaluate on: no labelled test videos, and no held-out normal footage" in err
    assert not (tmp_path / "e").exists()
    # a retraining round is refused before anything is fetched or trained, MLflow never asked
    db = tmp_path / "never.db"
    assert cli_main(["retrain", "-P", params, "-p", f"tracking.uri=sqlite:///{db}", "-p", "tracking.enabled=true",
                     "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no labelled test videos to evaluate on, and train.holdout_fraction is 0" in err
    assert not db.exists()
