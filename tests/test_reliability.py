"""Nothing wrong passes silently (issue #15): outputs that commit together, truncated footage refused
everywhere, a registry that recognises the same model, strict inputs, no late failure, no run left
RUNNING, and tests that never write into the checkout. Kill -9 loops: tests/test_faults.py."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pseudovad import config as config_mod
from pseudovad import kubeflow
from pseudovad.cli import main as cli_main
from pseudovad.data.synthetic import render_video, write_video
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation import plots
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import sha256_file
from pseudovad.models import build_model
from pseudovad.models.model_file import model_meta, save_model
from pseudovad.stages import evaluate, extract, register, synthesize, train
from tests.conftest import tiny_cfg, write_frame_folder

REPO = Path(__file__).resolve().parents[1]

SMALL_MODEL = {"ltgpa": {"width": [4, 4, 4, 4], "g_width": [4, 4, 4]}}


def params_file(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def evaluated(tmp_path):
    """Tiny store, an untrained model, one complete evaluation in tmp/eval."""
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL, train={"out": str(tmp_path / "train")},
                   evaluate={"out": str(tmp_path / "eval"), "top_k": 0})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    torch.manual_seed(0)
    save_model(tmp_path / "train" / "model.pt", build_model(cfg), model_meta(cfg))
    evaluate.run(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# 2. A stage's outputs commit together; a crashed run's leftovers are cleaned at the next start

def test_evaluate_failing_midway_keeps_the_previous_outputs_whole(evaluated, tmp_path, monkeypatch):
    cfg, out = evaluated, tmp_path / "eval"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (out / ".plots.ab12cd34.tmp").mkdir()           # what a run killed by an older version left
    (out / ".plots.ab12cd34.tmp" / "roc.png").write_bytes(b"half")
    torch.manual_seed(1)
    save_model(tmp_path / "other.pt", build_model(cfg), model_meta(cfg))

    def broken(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(plots, "timeline_plot", broken)    # scores.csv and roc.csv are written by then
    with pytest.raises(OSError):
        evaluate.run(cfg, model=tmp_path / "other.pt")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".pseudovad.lock"]


def test_a_train_killed_mid_commit_is_completed_before_its_model_is_read(tmp_path):
    """A reader (here evaluate, reading model.pt) replays the journal a killed train left."""
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL, train={"out": str(tmp_path / "train")},
                   evaluate={"out": str(tmp_path / "eval"), "top_k": 0})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    folder = tmp_path / "train"
    stage = folder / ".staging-killed01"
    stage.mkdir(parents=True)
    torch.manual_seed(0)
    save_model(stage / "model.pt", build_model(cfg), model_meta(cfg, steps=7))
    (stage / "metrics.json").write_text(json.dumps({"steps": 7}))
    (stage / ".commit.json").write_text(json.dumps({"members": ["metrics.json", "model.pt"]}))
    os.replace(stage / "metrics.json", folder / "metrics.json")      # killed after the first rename
    assert evaluate.run(cfg)["frames"] > 0
    assert not stage.exists() and (folder / "model.pt").is_file()


# ----------------------------------------------------------------------------------------------
# 3. Truncated footage: one decoding check for extract, score and ingest

def _cut_video(path: Path, cfg, frames: int = 120) -> Path:
    syn = cfg.synthetic.__class__(**{**cfg.synthetic.__dict__, "frames": frames})
    video, _ = render_video(syn, "training", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, video, syn.fps)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 4 // 10])
    return path


def test_truncated_video_is_an_error_in_extract_and_score_unless_allowed(evaluated, tmp_path, capsys, caplog):
    cfg = evaluated
    root = tmp_path / "cams"
    cut = _cut_video(root / "training" / "videos" / "cam1.avi", cfg)
    store = tmp_path / "cam-store"
    params = params_file(tiny_cfg(tmp_path, data={"root": str(root), "store": str(store)}), tmp_path / "p.yaml")
    assert cli_main(["extract", "-P", str(params)]) == 2
    err = one_line_error(capsys)
    assert "cam1.avi: truncated: decoded" in err and "of the 120 frames the container declares" in err
    assert not store.exists()
    with caplog.at_level(logging.WARNING):
        assert cli_main(["extract", "-P", str(params), "--allow-truncated"]) == 0
    assert "cam1.avi: truncated" in caplog.text
    n = json.loads((store / "manifest.json").read_text())["videos"][0]["frames"]
    assert 0 < n < 100

    model = str(tmp_path / "train" / "model.pt")                  # untrained: no calibration, min-max scores
    score = ["score", "-P", str(params), "-p", "score.normalization=minmax", str(cut), "--model", model]
    assert cli_main([*score, "--out", str(tmp_path / "s")]) == 2
    assert f"truncated: decoded {n} of the 120 frames" in one_line_error(capsys)
    assert not (tmp_path / "s").exists()
    assert cli_main([*score, "--out", str(tmp_path / "s"), "--allow-truncated"]) == 0
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["frames"] == n


def test_half_decoded_jpeg_frame_is_an_error(tmp_path, capsys):
    root = tmp_path / "root"
    write_frame_folder(root / "training" / "frames" / "01", 12, ext=".jpg")
    frame = root / "training" / "frames" / "01" / "7.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 2])          # OpenCV still decodes it, the bottom half grey
    params = params_file(tiny_cfg(tmp_path, data={"root": str(root)}), tmp_path / "p.yaml")
    assert cli_main(["extract", "-P", str(params)]) == 2
    assert "7.jpg: truncated JPEG" in one_line_error(capsys)


# ----------------------------------------------------------------------------------------------
# 4. The registry recognises the same model

def test_model_file_bytes_are_a_function_of_its_content(tmp_path):
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL)
    torch.manual_seed(0)
    net = build_model(cfg)
    save_model(tmp_path / "a" / "model.pt", net, model_meta(cfg))
    save_model(tmp_path / "b" / "best_model.pt", net, model_meta(cfg))
    assert sha256_file(tmp_path / "a" / "model.pt") == sha256_file(tmp_path / "b" / "best_model.pt")


def test_a_finished_train_run_again_rewrites_nothing(tmp_path):
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL,
                   train={"out": str(tmp_path / "train"), "epochs": 1, "max_steps": 2, "batch_size": 2})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    train.run(cfg, progress=False)
    out = tmp_path / "train"
    before = {n: ((out / n).read_bytes(), (out / n).stat().st_mtime_ns) for n in ("model.pt", "metrics.json")}
    again = train.run(cfg, progress=False)
    assert {n: ((out / n).read_bytes(), (out / n).stat().st_mtime_ns) for n in before} == before
    assert again["seconds"] == json.loads(before["metrics.json"][0])["seconds"]


def _registered(tmp_path: Path):
    """A trained + evaluated tiny model and a params file pointing at a local sqlite store."""
    db = tmp_path / "mlflow.db"
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL,
                   train={"out": str(tmp_path / "train"), "epochs": 1, "max_steps": 2, "batch_size": 2},
                   evaluate={"out": str(tmp_path / "eval"), "top_k": 0},
                   registry={"model_name": "pv-race", "out": str(tmp_path / "reg")},
                   tracking={"enabled": True, "uri": f"sqlite:///{db}",
                             "artifact_location": str(tmp_path / "mlruns")})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    off = config_mod.with_values(cfg, {"tracking.enabled": False})
    train.run(off, progress=False)
    evaluate.run(off)
    from pseudovad import tracking

    tracking.configure(cfg)
    tracking.experiment_id(cfg)       # the store exists, as it does once anything was logged
    return cfg, params_file(cfg, tmp_path / "p.yaml")


def _versions(cfg) -> list[str]:
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=cfg.tracking.uri)
    return sorted(str(v.version) for v in c.search_model_versions(f"name = '{cfg.registry.model_name}'"))


def test_two_registers_of_one_file_at_once_make_one_version(tmp_path):
    """A local store: registrations of one model name are serialised by a lock beside it."""
    cfg, params = _registered(tmp_path)
    cmd = [sys.executable, "-m", "pseudovad", "register", "-P", str(params)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"reg{i}")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert _versions(cfg) == ["1"]
    decisions = [json.loads((tmp_path / f"reg{i}" / "decision.json").read_text()) for i in (1, 2)]
    assert {d["version"] for d in decisions} == {"1"} and sorted(d["reused_version"] for d in decisions) == [False, True]


def test_a_register_racing_another_on_a_server_keeps_the_first_version(tmp_path, monkeypatch):
    """On a server there is no lock: a version the other register created meanwhile wins, ours goes."""
    from pseudovad.registry import promote as registry

    cfg, _ = _registered(tmp_path)
    monkeypatch.setattr(registry, "_store_folder", lambda uri: None, raising=False)   # as on a server
    real = registry._create_version

    def racing(c, name, source, tags):
        real(c, name, source, tags)                  # the other register, a moment earlier
        return real(c, name, source, tags)
    monkeypatch.setattr(registry, "_create_version", racing)
    d = register.run(cfg)
    assert d["version"] == "1" and d["reused_version"] is True
    assert _versions(cfg) == ["1"]


# ----------------------------------------------------------------------------------------------
# 5. Inputs accepted wrongly

def test_a_params_section_written_twice_is_refused_naming_both_lines(tmp_path, capsys):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 0.001\ndata:\n  size: [32, 32]\ntrain:\n  epochs: 3\n")
    assert cli_main(["train", "-P", str(p)]) == 2
    assert f"{p}:5: key 'train' is written twice (first on line 1)" in one_line_error(capsys)
    p.write_text("train:\n  lr: 0.001\n  epochs: 2\n  lr: 0.01\n")
    with pytest.raises(ConfigError, match=r":4: key 'lr' is written twice \(first on line 2\)"):
        config_mod.load(p)
    with pytest.raises(ConfigError, match=r"params:2: key 'seed' is written twice"):   # a Kubeflow step's params
        kubeflow.from_layers("seed: 1\nseed: 2\n")
    base = "base: &b {lr: 0.1}\ntrain:\n  <<: *b\n  lr: 0.2\n"       # a merge key overrides on purpose
    assert config_mod.parse_yaml(base, "p")["train"]["lr"] == 0.2


def test_non_utf8_or_folder_params_are_one_line(tmp_path, capsys):
    p = tmp_path / "params.yaml"
    p.write_bytes("train:\n  lr: 0.001  # \u00e9t\u00e9\n".encode("latin-1"))
    assert cli_main(["train", "-P", str(p)]) == 2
    assert f"{p}: not UTF-8 text (byte 0xe9" in one_line_error(capsys)
    assert cli_main(["train", "-P", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder, not a params file" in one_line_error(capsys)


def test_labels_csv_conflicting_rows_and_non_utf8_are_refused(tmp_path, capsys):
    from pseudovad.data.labels import read_labels

    f = tmp_path / "labels.csv"
    f.write_text("video,frame,label\n01,0,0\n01,1,1\n01,1,1\n")           # a repeated identical row is harmless
    assert read_labels(f, {"01": 2})["01"].tolist() == [0, 1]
    f.write_text("video,frame,label\n01,0,0\n01,1,1\n01,0,1\n")
    with pytest.raises(DataError, match=r"labels.csv:4: video 01 frame 0 labelled 1, but 0 on line 2"):
        read_labels(f, {"01": 2})
    root = tmp_path / "root"
    write_frame_folder(root / "training" / "frames" / "01", 10)
    write_frame_folder(root / "testing" / "frames" / "01", 10)
    (root / "testing" / "labels.csv").write_bytes(("video,frame,label\n" + "".join(
        f"01,{i},0\n" for i in range(10)) + "# caf\u00e9\n").encode("cp1252"))
    params = params_file(tiny_cfg(tmp_path, data={"root": str(root)}), tmp_path / "p.yaml")
    assert cli_main(["extract", "-P", str(params)]) == 2
    assert "labels.csv: not UTF-8 text (byte 0xe9" in one_line_error(capsys)


# ----------------------------------------------------------------------------------------------
# 6. Late failure

def test_evaluate_refuses_a_too_short_test_video_before_scoring_anything(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_frame_folder(root / "training" / "frames" / "01", 20)
    write_frame_folder(root / "testing" / "frames" / "01", 20, seed=1)
    write_frame_folder(root / "testing" / "frames" / "02", 1, seed=2)          # one frame
    (root / "testing" / "labels.csv").write_text("video,frame,label\n" + "".join(
        f"01,{i},{int(i > 10)}\n" for i in range(20)) + "02,0,1\n")
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL, data={"root": str(root)},
                   train={"out": str(tmp_path / "train")}, evaluate={"out": str(tmp_path / "eval")})
    extract.run(cfg, progress=False)
    save_model(tmp_path / "train" / "model.pt", build_model(cfg), model_meta(cfg))

    def no_scoring(*a, **k):
        raise AssertionError("frames were scored before the check")
    monkeypatch.setattr(Detector, "stream", no_scoring)
    with pytest.raises(DataError, match=r"test video\(s\) 02 \(1 frame\) shorter than one 8-frame clip"):
        evaluate.run(cfg)


# ----------------------------------------------------------------------------------------------
# 7. Runs left RUNNING

def _runs(uri: str, parents: bool = False) -> dict[str, tuple[str, dict]]:
    """The stage runs (or, `parents`, the pipeline runs they are children of) by id: (status, tags)."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in c.search_experiments()]
    return {r.info.run_id: (r.info.status, r.data.tags) for r in c.search_runs(exps)
            if (r.data.tags.get("pseudovad.stage") == "pipeline") == parents}


def _wait(what, pred, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_killed_train_never_leaves_its_run_running(tmp_path):
    """SIGKILL: the next train in the folder closes the run; SIGTERM: the run closes itself KILLED."""
    db = tmp_path / "mlflow.db"
    cfg = tiny_cfg(tmp_path, model=SMALL_MODEL,
                   train={"out": str(tmp_path / "train"), "epochs": 1000, "batch_size": 2, "checkpoint_every": 1},
                   tracking={"enabled": True, "uri": f"sqlite:///{db}", "artifact_location": str(tmp_path / "mlruns")})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    params = params_file(cfg, tmp_path / "p.yaml")
    ckpt = tmp_path / "train" / "checkpoints" / "last.pt"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    def start():
        return subprocess.Popen([sys.executable, "-m", "pseudovad", "train", "-P", str(params)], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    first = start()
    _wait("the first checkpoint", ckpt.exists)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (killed,) = _runs(cfg.tracking.uri)
    mtime = ckpt.stat().st_mtime_ns
    second = start()       # resumes from the checkpoint
    _wait("the resumed training", lambda: ckpt.stat().st_mtime_ns != mtime)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=120) == 128 + signal.SIGTERM, second.stderr.read()
    runs = _runs(cfg.tracking.uri)
    assert len(runs) == 2
    assert runs[killed][0] == "KILLED" and "pseudovad.closed" in runs[killed][1]
    (other,) = set(runs) - {killed}
    assert runs[other][0] == "KILLED" and "pseudovad.closed" not in runs[other][1]
    # each train started a pipeline run of its own (no pipeline key): neither is left RUNNING,
    # the SIGKILLed one's closed by the next train, the SIGTERMed one's closed by itself
    parents = _runs(cfg.tracking.uri, parents=True)
    assert {runs[r][1]["mlflow.parentRunId"] for r in runs} == set(parents)
    assert {status for status, _ in parents.values()} == {"KILLED"}, parents


# ----------------------------------------------------------------------------------------------
# 8. Tests never write outside their tmp dirs

def test_tests_run_outside_the_checkout_and_a_write_into_it_is_seen(tmp_path):
    from tests import conftest

    assert REPO not in [Path.cwd(), *Path.cwd().parents]
    assert "MLFLOW_TRACKING_URI" not in os.environ
    fake = tmp_path / "checkout"
    (fake / ".venv").mkdir(parents=True)
    (fake / "mlflow.db").write_bytes(b"runs")
    before = conftest._tree(fake)
    (fake / ".venv" / "cache").write_text("ignored")
    assert conftest._tree(fake) == before
    (fake / "mlflow.db").write_bytes(b"runs + one more")       # an ignored file git would not see change
    (fake / "runs").mkdir()
    after = conftest._tree(fake)
    assert after.keys() - before.keys() == {"runs"} and after["mlflow.db"] != before["mlflow.db"]
