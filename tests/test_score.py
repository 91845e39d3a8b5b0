"""`score` on new footage: streaming scores, calibration, segments, outputs (no MLflow needed)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pseudovad import calibration
from pseudovad.cli import main as cli_main
from pseudovad.data.synthetic import render_video, write_video
from pseudovad.errors import DataError
from pseudovad.evaluation.segments import Segments, Timeline
from pseudovad.evaluation.streaming import Detector, score_video
from pseudovad.models import build_model
from pseudovad.models.model_file import model_meta, save_model
from pseudovad.stages import score
from tests.conftest import tiny_cfg, write_frame_folder

SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny random LTGPA model with a calibration, and a synthetic test video (40 frames, 10 fps)."""
    root = tmp_path_factory.mktemp("score")
    cfg = tiny_cfg(root, **SMALL)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    frames, labels = render_video(cfg.synthetic, "testing", 0)
    video = root / "cam.avi"
    write_video(video, frames, cfg.synthetic.fps)
    # calibrate on a normal training video, as train does on its validation tail
    normal, _ = render_video(cfg.synthetic, "training", 0)
    from pseudovad.data.sources import convert

    small = np.stack([convert(f, tuple(cfg.data.size), 1) for f in normal])
    meta = model_meta(cfg)
    psnr = score_video(net, meta, small, "cpu", 4)
    model = root / "model.pt"
    save_model(model, net, model_meta(cfg, calibration=calibration.calibrate(psnr)))
    return cfg, net, meta, model, video, root


def read_scores(path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(the `# key: value` provenance lines, the rows) of a scores.csv."""
    head, body = {}, []
    for line in open(path):
        if line.startswith("# "):
            k, _, v = line[2:].rstrip("\n").partition(": ")
            head[k] = v
        else:
            body.append(line)
    return head, list(csv.DictReader(body))


def _frames(video: Path, cfg) -> np.ndarray:
    from pseudovad.data.sources import read_video

    return np.stack(list(read_video(video, tuple(cfg.data.size), cfg.data.channels)))


@pytest.mark.parametrize("batch,frame_step", [(1, 1), (3, 1), (4, 2)])
def test_stream_matches_evaluate_scores_with_bounded_lookahead(setup, batch, frame_step):
    cfg, net, meta, _, video, _ = setup
    meta = {**meta, "frame_step": frame_step}
    frames = _frames(video, cfg)
    expected = score_video(net, meta, frames, "cpu", 5)
    read = 0

    def source():
        nonlocal read
        for f in frames:
            read += 1
            yield f

    span = (meta["clip_len"] - 1) * frame_step + 1
    got = []
    for s in Detector(net, meta, "cpu", batch).stream(source()):
        # constant memory: never more than one batch of clips read ahead of what is yielded
        assert read - s.index <= span + batch - 1
        assert np.array_equal(s.frame, frames[s.index])
        got.append((s.index, s.psnr))
    assert [i for i, _ in got] == list(range(len(frames)))
    np.testing.assert_allclose([p for _, p in got], expected, rtol=1e-5)


def test_stream_rejects_footage_shorter_than_a_clip(setup):
    cfg, net, meta, _, video, _ = setup
    frames = _frames(video, cfg)[: meta["clip_len"] - 1]
    with pytest.raises(DataError, match="too short"):
        list(Detector(net, meta, "cpu", 2).stream(iter(frames)))


def test_segments_drop_short_runs_and_flag_long_ones():
    scores = [0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]
    seg = Segments(0.5, 3)
    out = []
    for i, s in enumerate(scores):
        out += seg.push(i, i, float(s))
    out += seg.close()
    assert [i for i, _ in out] == list(range(len(scores)))       # every frame once, in order
    assert [int(f) for _, f in out] == [0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1]
    assert [(g["start_frame"], g["end_frame"], g["frames"]) for g in seg.found] == [(4, 7, 4), (9, 11, 3)]
    # a score exactly at the threshold is flagged; no threshold flags nothing
    seg = Segments(0.5, 1)
    assert seg.push("a", 0, 0.5) == [("a", True)]
    seg = Segments(None, 1)
    assert seg.push("a", 0, 1.0) == [("a", False)]


def test_timeline_keeps_bounded_bins_and_the_exact_mean():
    tl = Timeline(bins=64)
    rng = np.random.default_rng(0)
    values = rng.random(10_001)
    for v in values:
        tl.add(float(v))
    x, lo, mean, hi = tl.arrays()
    assert len(x) <= 64 and sum(tl.n) == len(values)
    assert np.isclose(np.sum(mean * np.asarray(tl.n)) / len(values), values.mean())
    assert lo.min() == values.min() and hi.max() == values.max() and np.all(np.diff(x) > 0)


def test_calibrated_score_is_the_normal_tail_share():
    psnr = np.random.default_rng(1).normal(30.0, 2.0, 5000)
    cal = calibration.calibrate(psnr)
    assert calibration.check(cal) is cal
    # at the stored quantiles the score is exactly 1 − level
    for level, key in calibration.LEVELS:
        assert calibration.to_score(cal[key], cal) == pytest.approx(1.0 - level)
    assert calibration.to_score(cal["psnr_min"] - 5, cal) == 1.0
    assert calibration.to_score(cal["psnr_max"] + 5, cal) == 0.0
    grid = np.linspace(20, 40, 200)
    assert np.all(np.diff(calibration.to_score(grid, cal)) <= 0)      # lower PSNR, higher score
    # the default threshold flags about 1 % of normal frames
    assert np.mean(calibration.to_score(psnr, cal) >= calibration.DEFAULT_THRESHOLD) == pytest.approx(0.01, abs=0.003)
    with pytest.raises(DataError, match="no PSNR calibration"):
        calibration.check(None, "m.pt")


def test_score_video_writes_csv_timeline_summary_and_annotated_video(setup, tmp_path):
    cfg, _, _, model, video, _ = setup
    out = tmp_path / "out"
    ann = tmp_path / "annotated.mp4"
    s = score.run(cfg, video, model, out, threshold=0.5, video=ann, progress=False)
    _, rows = read_scores(out / "scores.csv")
    assert [int(r["frame"]) for r in rows] == list(range(40)) and s["frames"] == 40
    assert float(rows[10]["time_s"]) == pytest.approx(1.0)                       # 10 fps video
    sc = np.array([float(r["score"]) for r in rows])
    assert np.all((sc >= 0) & (sc <= 1))
    flagged = np.array([int(r["flagged"]) for r in rows])
    assert flagged.sum() == s["flagged_frames"] == sum(g["frames"] for g in s["segments"])
    for g in s["segments"]:
        assert g["frames"] >= cfg.score.min_segment
        assert np.all(flagged[g["start_frame"]:g["end_frame"] + 1] == 1)
        assert np.all(sc[g["start_frame"]:g["end_frame"] + 1] >= 0.5)
        assert g["start_s"] == pytest.approx(g["start_frame"] / 10)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["normalization"]["kind"] == "calibrated" and s["threshold"] == 0.5
    assert cv2.imread(str(out / "timeline.png")) is not None
    cap = cv2.VideoCapture(str(ann))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 40


def test_score_frame_folder_minmax_without_fps(setup, tmp_path):
    cfg, _, _, model, _, _ = setup
    folder = tmp_path / "frames"
    write_frame_folder(folder, 20, size=(48, 64))
    cfg = tiny_cfg(tmp_path, **SMALL, score={"normalization": "minmax", "min_segment": 1})
    s = score.run(cfg, folder, model, tmp_path / "out", progress=False)
    _, rows = read_scores(tmp_path / "out" / "scores.csv")
    assert len(rows) == 20 and all(r["time_s"] == "" for r in rows) and s["fps"] is None
    sc = np.array([float(r["score"]) for r in rows])
    assert sc.min() == pytest.approx(0.0) and sc.max() == pytest.approx(1.0)    # per-video min-max
    assert s["threshold"] is None and s["segments"] == [] and s["normalization"]["kind"] == "minmax"


def test_score_needs_a_calibration_for_calibrated_scores(setup, tmp_path):
    cfg, net, _, _, video, _ = setup
    bare = tmp_path / "bare.pt"
    save_model(bare, net, model_meta(cfg))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="no PSNR calibration"):
        score.run(cfg, video, bare, out, progress=False)
    assert not out.exists()


def test_score_cli_errors_are_one_line(setup, tmp_path, capsys):
    cfg, _, _, model, video, _ = setup
    params = tmp_path / "params.yaml"
    from pseudovad import config as config_mod

    params.write_text(config_mod.dump(cfg))
    cases = [
        ([str(tmp_path / "missing.avi"), "--model", str(model)], "no such video file or frame folder"),
        ([str(video), "--model", str(tmp_path / "nope.pt")], "model file not found"),
        ([str(video), "--model", str(model), "--threshold", "1.5"], "--threshold: must be in [0, 1]"),
        ([str(video), "--model", "s3://bucket/model.pt"], "s3://bucket/model.pt"),
    ]
    for args, msg in cases:
        assert cli_main(["score", "-P", str(params), *args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, err


def test_score_with_a_model_file_never_touches_mlflow_and_without_one_says_how_to_pass_it(setup, tmp_path, capsys,
                                                                                           monkeypatch):
    """Outside a project folder: `--model FILE` creates no mlflow.db; the registered champion, when
    nothing is registered there, is a one-line error naming `--model`, and creates none either."""
    cfg, _, _, model, video, _ = setup
    from pseudovad import config as config_mod

    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(config_mod.with_values(cfg, {"tracking.enabled": True,
                                                                  "tracking.uri": "sqlite:///mlflow.db"})))
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    assert cli_main(["score", "-P", str(params), str(video), "--model", str(model), "--out", "a"]) == 0
    assert not (work / "mlflow.db").exists() and not (work / "mlruns").exists()
    capsys.readouterr()
    assert cli_main(["score", "-P", str(params), str(video), "--out", "b"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing is registered here: no MLflow store mlflow.db" in err, err
    assert "to score with a trained model file instead: pseudovad score" in err and "--model runs/train/model.pt" in err
    assert not (work / "mlflow.db").exists() and not (work / "b").exists()


# ----------------------------------------------------------------------------------------------
# The annotated video, where outputs go, provenance, domain shift

def test_annotated_video_is_h264_at_the_source_size_and_fps_inside_out(setup, tmp_path):
    """--video inside --out is committed with the folder (it used to vanish when the folder was
    swapped in); the video has the camera's 64×48 at 10 fps, not the model's 32×32, and decodes."""
    cfg, _, _, model, video, _ = setup
    out = tmp_path / "out"
    s = score.run(cfg, video, model, out, threshold=0.5, video=out / "annotated.mp4", progress=False)
    path = out / "annotated.mp4"
    assert path.is_file() and s["outputs"]["video"] == str(path)
    cap = cv2.VideoCapture(str(path))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc in ("avc1", "h264"), fourcc
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 40 and frames[0].shape == (48, 64, 3)
    assert s["video"] == {"path": str(path), "codec": "h264", "width": 64, "height": 48, "fps": 10.0,
                          "fps_assumed": False, "frames": 40}
    # the red border is on exactly the flagged frames
    _, rows = read_scores(out / "scores.csv")
    red = [bool(f[1, :, 2].mean() > 150 and f[1, :, 1].mean() < 100) for f in frames]
    assert red == [r["flagged"] == "1" for r in rows]


def test_annotator_overlays_only_where_the_error_is_high_and_marks_anomalies():
    from pseudovad.scoring.annotate import Annotator, timestamp

    frame = np.full((240, 360, 3), 90, np.uint8)
    ann = Annotator((240, 360), 0.9, (0.1, 0.4))
    err = np.zeros((64, 96), np.float32)
    err[20:30, 40:50] = 0.5 ** 2                           # |error| 0.5 in one block of the model's frame
    img = ann.draw(frame, err, 0.3, False, timestamp(3723.456))
    changed = np.any(img != frame, axis=2)
    block = np.zeros((240, 360), bool)
    block[int(20 * 240 / 64) - 8:int(30 * 240 / 64) + 8, int(40 * 360 / 96) - 8:int(50 * 360 / 96) + 8] = True
    middle = np.zeros_like(block)
    middle[40:180, 10:300] = True                          # away from the labels, legend and bar
    assert changed[middle & block].mean() > 0.5 and not changed[middle & ~block].any()
    assert img[100, 170, 2] > img[100, 170, 0] + 60        # red-dominant where the error is highest
    assert not np.any(img[0, :] != frame[0, :]) or not np.all(img[0, :, 2] > 200)   # no border on a normal frame
    flagged = ann.draw(frame, None, 0.95, True, "00:00:01.00")
    assert np.all(flagged[0, :, 2] > 200) and np.all(flagged[-1, :, 2] > 200 - 1)   # red border while flagged
    assert timestamp(3723.456) == "01:02:03.46" and timestamp(0.049) == "00:00:00.05"


@pytest.mark.parametrize("codec,suffix,fourccs", [("vp9", ".webm", ("vp09", "VP90")), ("mjpg", ".avi", ("MJPG",))])
def test_other_video_codecs_beside_out(setup, tmp_path, codec, suffix, fourccs):
    cfg, _, _, model, video, _ = setup
    path = tmp_path / f"annotated{suffix}"                  # beside --out: committed together with it
    score.run(cfg, video, model, tmp_path / "out", video=path, video_codec=codec, progress=False)
    cap = cv2.VideoCapture(str(path))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (64, 48)
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode() in fourccs
    assert cap.read()[0]


def test_outputs_the_stage_would_overwrite_are_refused_with_one_line(setup, tmp_path, capsys):
    cfg, _, _, model, video, _ = setup
    params = tmp_path / "params.yaml"
    from pseudovad import config as config_mod

    params.write_text(config_mod.dump(cfg))
    out = tmp_path / "o"
    inside = tmp_path / "o2"
    inside.mkdir()
    import shutil

    shutil.copy(video, inside / "cam.avi")
    cases = [
        (["--out", str(out), "--video", str(out / "scores.csv")], "score writes its own scores.csv"),
        (["--out", str(out), "--video", str(out)], "is the output folder"),
        (["--out", str(out), "--video", str(video)], "is the input"),
        (["--out", str(out), "--video", str(tmp_path / "elsewhere" / "deep" / "a.mp4")], "inside or beside --out"),
        (["--out", str(out), "--video", str(tmp_path / "a.mp4"), "--video-codec", "mjpg"], "codec mjpg goes in .avi"),
        (["--out", str(out), "--video", str(tmp_path / "a.gif")], "unknown video suffix"),
    ]
    for extra, msg in cases:
        assert cli_main(["score", "-P", str(params), str(video), "--model", str(model), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, err
        assert not out.exists()
    # an input inside --out that committing would replace (the folder goes as a whole when the
    # video is beside it; or the input is named like an output) is refused; otherwise it stays
    args = ["score", "-P", str(params), str(inside / "cam.avi"), "--model", str(model), "--out", str(inside)]
    assert cli_main([*args, "--video", str(tmp_path / "beside.mp4")]) == 2
    err = capsys.readouterr().err
    assert "holds the input" in err and (inside / "cam.avi").is_file()
    assert cli_main(args) == 0 and (inside / "cam.avi").is_file() and (inside / "summary.json").is_file()
    assert video.is_file()


def _another_scene(path: Path, n: int = 40) -> None:
    """Another camera: a high-contrast tiled facade, nothing like the synthetic street."""
    rng = np.random.default_rng(3)
    tiles = cv2.resize(rng.integers(0, 255, (12, 16)).astype(np.uint8), (64, 48), interpolation=cv2.INTER_NEAREST)
    frames = [cv2.cvtColor(np.clip(tiles + rng.normal(0, 4, tiles.shape), 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
              for _ in range(n)]
    write_video(path, frames, 10)


def test_domain_shift_warns_on_another_scene_not_on_the_training_scenes_test_videos(setup, tmp_path, capsys):
    cfg, _, _, model, _, _ = setup
    from pseudovad import config as config_mod

    params = tmp_path / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    # the training scene's test videos, anomalies included: no warning, exit 0 even with --strict
    for i in range(cfg.synthetic.test_videos):
        frames, labels = render_video(cfg.synthetic, "testing", i)
        assert labels.any()
        v = tmp_path / f"test{i}.avi"
        write_video(v, frames, cfg.synthetic.fps)
        assert cli_main(["score", "-P", str(params), str(v), "--model", str(model), "--out", str(tmp_path / f"t{i}"),
                         "--strict"]) == 0
        err = capsys.readouterr().err
        assert "domain shift" not in err, err
        s = json.loads((tmp_path / f"t{i}" / "summary.json").read_text())
        assert s["domain_shift"]["shift"] is False and s["domain_shift"]["frames"] == len(frames)
    # another scene: one warning line with the numbers; recorded; exit 3 under --strict only
    other = tmp_path / "other.avi"
    _another_scene(other)
    assert cli_main(["score", "-P", str(params), str(other), "--model", str(model), "--out", str(tmp_path / "x")]) == 0
    err = capsys.readouterr().err
    warn = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "domain shift" in warn[0] and "retrain on this camera's normal footage" in warn[0]
    s = json.loads((tmp_path / "x" / "summary.json").read_text())
    d = s["domain_shift"]
    assert d["shift"] and d["share_below"] >= cfg.score.shift_share and d["message"] in warn[0]
    assert d["psnr_median"] < d["limit_low_db"] < s["normalization"]["calibration"]["psnr_min"]
    assert f"{d['share_below']:.0%}" in warn[0]
    assert cli_main(["score", "-P", str(params), str(other), "--model", str(model), "--out", str(tmp_path / "x"),
                     "--strict"]) == score.EXIT_DOMAIN_SHIFT
    assert (tmp_path / "x" / "summary.json").is_file()       # the outputs are written all the same


def test_shift_rule_margin_and_share():
    from pseudovad.scoring.shift import ShiftCheck

    cal = calibration.calibrate(np.random.default_rng(0).normal(30.0, 1.0, 2000))
    margin = cal["psnr_q95"] - cal["psnr_q05"]
    assert margin > 3.0                               # wide normal range: the margin is its width
    low = cal["psnr_min"] - margin
    chk = ShiftCheck(cal, 0.5)
    for p in [low - 0.1] * 50 + [low + 0.1] * 50:     # half just beyond the limit, half just inside
        chk.add(p)
    r = chk.result()
    assert r["shift"] and r["share_below"] == 0.5 and r["limit_low_db"] == pytest.approx(low, abs=1e-3)
    chk = ShiftCheck(cal, 0.5)
    for p in [low - 0.1] * 49 + [low + 0.1] * 51:
        chk.add(p)
    assert not chk.result()["shift"]
    narrow = calibration.calibrate(np.random.default_rng(0).normal(30.0, 0.1, 50))   # a short validation tail
    chk = ShiftCheck(narrow, 0.5)
    assert chk.result()["limit_low_db"] == pytest.approx(narrow["psnr_min"] - 3.0, abs=1e-3)   # at least 3 dB
    for _ in range(10):
        chk.add(narrow["psnr_min"] - 2.0)                # 2 dB below the worst normal frame: an anomaly, not a scene
    assert not chk.result()["shift"]
    chk = ShiftCheck(cal, 0.5)
    for _ in range(10):
        chk.add(float("inf"))                        # a blank picture reconstructs perfectly: above
    assert chk.result()["shift"] and chk.result()["share_above"] == 1.0


def test_a_failed_run_leaves_the_previous_outputs_and_video_whole(setup, tmp_path):
    cfg, _, _, model, _, _ = setup
    folder = tmp_path / "frames"
    write_frame_folder(folder, 20, size=(48, 64))
    out = tmp_path / "out"
    first = score.run(cfg, folder, model, out, fps=10, video=out / "annotated.mp4", progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert set(before) == {"scores.csv", "timeline.png", "summary.json", "annotated.mp4"}
    (folder / "15.png").write_bytes(b"not an image")          # the second run fails mid-stream
    with pytest.raises(DataError, match="15.png: unreadable image"):
        score.run(cfg, folder, model, out, fps=10, video=out / "annotated.mp4", progress=False)
    after = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert after == before and json.loads(before["summary.json"])["frames"] == first["frames"] == 20
