"""Evaluation protocol: PSNR, per-video normalisation, AUC / EER, edge frames, the evaluate and report stages."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from pseudovad.cli import main as cli_main
from pseudovad.data.store import FrameStore
from pseudovad import results
from pseudovad.data.versioning import evaluation_version
from pseudovad.errors import DataError
from pseudovad.evaluation import metrics, normalize, psnr, streaming
from pseudovad.files import sha256_file
from pseudovad.models import build_model
from pseudovad.models.model_file import model_meta, save_model
from pseudovad.stages import evaluate, extract, report, synthesize
from tests.conftest import tiny_cfg

SMALL_MODEL = {"ltgpa": {"width": [4, 4, 4, 4], "g_width": [4, 4, 4]}}


# ---------------------------------------------------------------------------------------------
# PSNR

def test_psnr_hand_computed_tanh_and_unit():
    # tanh range: 0 ↦ 0.5 and 1 ↦ 1.0 in [0, 1]; MSE = 0.25, PSNR = 10·log10(1/0.25) = 6.0206 dB
    pred, target = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    assert psnr.frame_psnr(pred, target, "tanh").item() == pytest.approx(6.020600, abs=1e-5)
    # unit range, half the pixels off by 0.1: MSE = 0.005, PSNR = 23.0103 dB
    t = torch.full((2, 3, 2, 2), 0.4)
    p = t.clone()
    p[0, :, 0, :] += 0.1
    p[1] += 0.1
    got = psnr.frame_psnr(p, t, "unit")
    assert got[0].item() == pytest.approx(23.0103, abs=1e-3)
    assert got[1].item() == pytest.approx(20.0, abs=1e-3)  # all pixels off by 0.1: MSE 0.01


def test_psnr_convention_offset_and_perfect_frame():
    pred, target = torch.rand(3, 1, 8, 8) * 2 - 1, torch.rand(3, 1, 8, 8) * 2 - 1
    ours = psnr.frame_psnr(pred, target, "tanh")
    peak1_on_tanh = 10 * torch.log10(1 / (pred - target).pow(2).flatten(1).mean(1))
    assert torch.allclose(ours - peak1_on_tanh, torch.full((3,), psnr.PEAK_ONE_ON_TANH_OFFSET_DB), atol=1e-4)
    assert psnr.PEAK_ONE_ON_TANH_OFFSET_DB == pytest.approx(6.0206, abs=1e-4)
    assert psnr.frame_psnr(target, target).tolist() == pytest.approx([100.0] * 3)  # clamped, finite


# ---------------------------------------------------------------------------------------------
# normalisation and metrics

def test_per_video_minmax_normalisation():
    assert normalize.anomaly_scores(np.array([20.0, 25.0, 30.0])).tolist() == [1.0, 0.5, 0.0]
    assert normalize.anomaly_scores(np.array([7.0, 7.0])).tolist() == [0.5, 0.5]  # constant video
    # each video is normalised on its own: a uniformly worse video still spans [0, 1]
    lab = {"a": np.array([0, 1, 0]), "b": np.array([0, 1, 1])}
    s = metrics.summarize(lab, {"a": np.array([40.0, 30.0, 39.0]), "b": np.array([12.0, 10.0, 11.0])})
    assert s["auc_micro"] == pytest.approx(1.0)
    assert s["auc_raw"] < 1.0  # raw −PSNR ranks every frame of b above every frame of a


def test_perfect_and_reversed_scores():
    y = np.array([0, 0, 1, 1, 0, 1])
    assert metrics.frame_auc(y, y.astype(float)) == 1.0
    assert metrics.frame_auc(y, 1.0 - y) == 0.0
    rate, _ = metrics.eer(y, y.astype(float))
    assert rate == 0.0
    # through the whole protocol: anomalous frames reconstructed worse → AUC 1 (low PSNR = anomalous)
    s = metrics.summarize({"v": y}, {"v": 30.0 - 5.0 * y})
    assert s["auc_micro"] == s["auc_raw"] == 1.0 and s["eer"] == 0.0
    s = metrics.summarize({"v": y}, {"v": 30.0 + 5.0 * y})
    assert s["auc_micro"] == 0.0 and s["eer"] == 1.0


def test_eer_interpolates_the_crossing():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])  # one normal above one anomalous
    rate, thr = metrics.eer(y, scores)
    assert rate == pytest.approx(0.25)
    assert 0.4 <= thr <= 0.6


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(DataError, match=r"test video 03: 10 frame labels but 9 frame scores"):
        metrics.summarize({"03": np.zeros(10, int)}, {"03": np.zeros(9)})
    with pytest.raises(DataError, match="07"):
        metrics.frame_auc({"07": np.array([0, 1])}, {"07": np.array([0.1, 0.2, 0.3])})


def test_single_class_video_is_excluded_from_macro_but_counted_in_micro():
    labels = {"01": np.array([0, 0, 1, 1]), "08": np.array([1, 1, 1, 1]), "02": np.array([0, 1, 0, 1])}
    psnr_ = {"01": np.array([30.0, 29.0, 20.0, 21.0]), "08": np.array([25.0, 24.0, 26.0, 27.0]),
             "02": np.array([30.0, 20.0, 25.0, 27.0])}  # 02: one anomalous frame has a normal-ish PSNR
    s = metrics.summarize(labels, psnr_)
    assert s["macro_excluded"] == ["08"] and s["macro_videos"] == 2 and s["videos"] == 3
    assert s["video_auc"]["08"] is None
    assert s["auc_macro"] == pytest.approx((1.0 + 0.75) / 2)
    assert s["frames"] == 12 and s["anomalous_frames"] == 8
    assert s["auc_micro"] == pytest.approx(metrics.frame_auc(labels, {v: normalize.anomaly_scores(p) for v, p in psnr_.items()}))
    only_one = metrics.summarize({"08": labels["08"], "09": np.zeros(4, int)}, {"08": psnr_["08"], "09": psnr_["01"]})
    assert only_one["auc_macro"] is None and only_one["macro_videos"] == 0


def test_all_one_class_overall_is_an_error():
    with pytest.raises(DataError, match="all 4 test frames are anomalous"):
        metrics.frame_auc(np.ones(4, int), np.arange(4.0))


# ---------------------------------------------------------------------------------------------
# clips → frames

class ZeroModel(nn.Module):
    """Reconstructs every clip as mid-grey, so a frame's PSNR is a known function of its content."""

    def forward(self, x):
        return torch.zeros_like(x)


def _expected_psnr(v: float) -> float:
    return 10 * math.log10(1 / (v / 255.0 - 0.5) ** 2)


@pytest.mark.parametrize("frame_step", [1, 2])
def test_every_frame_gets_its_scored_clip_and_edges_take_the_nearest(frame_step):
    n, clip_len, scored = 20, 4, 1
    values = np.linspace(0, 100, n)                      # frame f is uniformly `values[f]` grey
    frames = np.repeat(values.astype(np.uint8)[:, None, None], 8, 1).repeat(8, 2)
    meta = {"method": "ltgpa", "clip_len": clip_len, "scored_index": scored, "frame_step": frame_step,
            "value_range": "tanh", "size": [8, 8], "channels": 1}
    got = streaming.score_video(ZeroModel(), meta, frames, "cpu", batch_size=3)
    first = scored * frame_step
    last = n - 1 - (clip_len - 1 - scored) * frame_step
    want = [_expected_psnr(float(frames[min(max(f, first), last), 0, 0])) for f in range(n)]
    assert got.shape == (n,)
    assert np.allclose(got, want, atol=1e-3)
    assert got[0] == got[first] and got[-1] == got[last] and got[first] != got[first + 1]


def test_training_free_floor_by_hand_on_a_tiny_video():
    """Frame difference: the mean of the MSEs to the previous and next frame; temporal residual:
    the MSE to the mean of both. Frames 1–3 are one frame shown three times: frame 2 equals its
    neighbours (a score of exactly 0 is undefined) and takes frame 1's value, as the first and
    last frames (one neighbour) take their nearest frame's."""
    from pseudovad.evaluation import floor

    px = [(0, 0), (51, 0), (51, 0), (51, 0), (153, 51), (153, 204)]   # 51/255 = 0.2, 153/255 = 0.6 …
    frames = np.array(px, dtype=np.uint8)[:, None, :]                  # (6, 1, 2)
    mse = floor.frame_mse(frames)
    assert mse["framediff"] == pytest.approx([0.01, 0.01, 0.01, 0.05, 0.14, 0.14], rel=1e-5)
    assert mse["residual"] == pytest.approx([0.005, 0.005, 0.005, 0.025, 0.04, 0.04], rel=1e-5)
    p = floor.frame_psnr(frames)
    assert p["framediff"][3] == pytest.approx(10 * math.log10(1 / 0.05), rel=1e-6)
    labels = {"v": np.array([0, 1, 0, 1, 1, 0])}
    per = {k: {"v": p[k]} for k in floor.KINDS}
    # pairs (anomalous, normal) ranked right, ties half: 5.5 of 9 for both
    got = floor.aucs(labels, per)
    assert got["auc_floor_framediff"] == pytest.approx(5.5 / 9) == got["auc_floor_residual"] == got["auc_floor"]
    inner = floor.aucs(labels, per, {"v": slice(1, 5)})                # only frames 1–4 counted
    assert inner["auc_floor_framediff"] == pytest.approx(2.5 / 3) == inner["auc_floor_residual"]
    # normalised over the counted frames (PSNR 20, 20, 13.01, 8.54 dB), the others clipped into [0, 1]
    assert floor.scores(p["framediff"], slice(1, 5)).tolist() == pytest.approx([0, 0, 0, 0.6099, 1, 1], abs=1e-3)


def test_fill_edges_and_too_short_video():
    assert streaming.fill_edges(6, 2, np.array([5.0, 6.0, 7.0])).tolist() == [5, 5, 5, 6, 7, 7]
    meta = {"method": "ltgpa", "clip_len": 8, "scored_index": 4, "value_range": "tanh", "size": [8, 8], "channels": 1}
    with pytest.raises(DataError, match="test video x: 5 frames, too short"):
        streaming.score_video(ZeroModel(), meta, np.zeros((5, 8, 8), np.uint8), "cpu", video="x")


# ---------------------------------------------------------------------------------------------
# the stages, end to end on tiny synthetic footage

@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    cfg = tiny_cfg(tmp, model=SMALL_MODEL, train={"out": str(tmp / "train")},
                   evaluate={"out": str(tmp / "eval"), "top_k": 2})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    torch.manual_seed(0)
    save_model(tmp / "train" / "model.pt", build_model(cfg), model_meta(cfg))
    return cfg, tmp, evaluate.run(cfg)


def test_evaluate_end_to_end_outputs(evaluated):
    cfg, tmp, result = evaluated
    out = tmp / "eval"
    m = results.read(out)
    for k in ("auc_micro", "auc_macro", "auc_raw", "eer", "frames", "anomalous_frames", "videos",
              "macro_videos", "fingerprint", "model", "method", "pseudo_kind", "variant", "dataset"):
        assert k in m, k
    assert m == json.loads(json.dumps(result))
    # metrics.json holds numbers only (a DVC metric); the texts are provenance.json, with the
    # sha256 of the model file that was scored (what the promotion gate checks)
    numbers = json.loads((out / "metrics.json").read_text())
    assert numbers["video_auc"].keys() == {"01", "02"} and all(results.is_metric(v) for v in numbers.values())
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["model_sha256"] == sha256_file(tmp / "train" / "model.pt") and prov["video_ids"] == ["01", "02"]
    assert {"fingerprint", "method", "psnr", "pseudovad_version", "git_commit"} <= prov.keys()
    assert not prov.keys() & numbers.keys()
    store = FrameStore(cfg.data.store)
    tests = store.videos("testing")
    span = result_geometry(cfg).span
    assert m["frames"] == sum(e.frames - span + 1 for e in tests) and m["videos"] == len(tests)
    assert m["frames"] + m["frames_left_out"] == sum(e.frames for e in tests) and m["protocol"] == "official"
    assert m["fingerprint"] == evaluation_version(store.root)   # the gate compares DVC evaluation versions
    assert (m["method"], m["pseudo_kind"], m["dataset"]) == ("ltgpa", "learned", "synthetic")
    assert 0.0 <= m["auc_micro"] <= 1.0 and 0.0 <= m["eer"] <= 1.0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == m["frames"] + m["frames_left_out"]          # every frame keeps a row and a score
    for e in tests:
        vid = [r for r in rows if r["video"] == e.id]
        assert [int(r["label"]) for r in vid] == store.labels(e).tolist()
        scores = [float(r["score"]) for r in vid]
        assert min(scores) == 0.0 and max(scores) == 1.0
    roc = list(csv.DictReader((out / "roc.csv").open()))
    assert float(roc[0]["fpr"]) == 0.0 and float(roc[-1]["tpr"]) == 1.0
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["roc.png", "timeline_01.png", "timeline_02.png", "topk.png"]
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def result_geometry(cfg):
    from pseudovad.geometry import ClipGeometry

    return ClipGeometry.from_config(cfg)


def _auc_of_rows(rows, column="score"):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score([int(r["label"]) for r in rows], [float(r[column]) for r in rows])


@pytest.mark.parametrize("method", ["ltgpa", "mae_nct"])
def test_official_protocol_counts_only_the_frames_a_clip_scores(evaluated, tmp_path, method):
    """LTGPA leaves out each video's first scored_index and last span − 1 − scored_index frames,
    MAE-NCT its first in_frames; the padded protocol (the old numbers) counts every frame."""
    from pseudovad.evaluation import protocol
    from pseudovad.geometry import ClipGeometry

    cfg, _, _ = evaluated
    store = FrameStore(cfg.data.store)
    tests = store.videos("testing")
    if method == "ltgpa":
        det = streaming.Detector(ZeroModel(), model_meta(cfg))
        left = (4, 3)                                   # 8-frame clips scored at index 4
    else:
        mae = tiny_cfg(tmp_path, data={"store": cfg.data.store}, pseudo={"mask_patch": 16},
                       model={"method": "mae_nct", "mae": {"patch_size": 8, "embed_dim": 16, "depth": 1, "heads": 2,
                                                           "in_frames": 3}})
        torch.manual_seed(0)
        det = streaming.Detector(build_model(mae), model_meta(mae))
        left = (3, 0)                                   # the first in_frames only serve as input
    g = det.geometry
    assert g == ClipGeometry.from_meta(det.meta) and (g.first_scored, g.span - 1 - g.first_scored) == left
    runs = {p: protocol.evaluate(det, store, tests, tmp_path / p, dataset="synthetic", model_ref="m", fingerprint="f",
                                 bootstrap=20, protocol=p) for p in protocol.PROTOCOLS}
    official, padded = runs["official"], runs["padded"]
    total = sum(e.frames for e in tests)
    assert official["frames"] == sum(len(g.starts(e.frames)) for e in tests) == total - len(tests) * sum(left)
    assert official["frames_left_out"] == len(tests) * sum(left)
    assert (padded["frames"], padded["frames_left_out"]) == (total, 0)
    for p, m in runs.items():
        rows = list(csv.DictReader((tmp_path / p / "scores.csv").open()))
        assert len(rows) == total                      # every frame keeps a row and a score
        counted = [r for r in rows if r["counted"] == "1"]
        assert len(counted) == m["frames"]
        if p == "official":
            for e in tests:
                marks = [r["counted"] for r in rows if r["video"] == e.id]
                assert marks == ["0"] * left[0] + ["1"] * (e.frames - sum(left)) + ["0"] * left[1]
        assert m["auc_micro"] == pytest.approx(_auc_of_rows(counted), abs=1e-6)
        assert m["auc_micro_ci_low"] <= m["auc_micro"] <= m["auc_micro_ci_high"]
        assert m["anomalous_frames"] == sum(int(r["label"]) for r in counted)
        # the training-free floor on the same frames: scores.csv's columns give the same AUCs
        for k in ("framediff", "residual"):
            assert m[f"auc_floor_{k}"] == pytest.approx(_auc_of_rows(counted, f"floor_{k}"), abs=1e-6)
        assert m["auc_floor"] == max(m["auc_floor_framediff"], m["auc_floor_residual"])
        assert m["auc_floor_margin"] == pytest.approx(m["auc_micro"] - m["auc_floor"])
    roc = list(csv.DictReader((tmp_path / "official" / "roc.csv").open()))
    assert float(roc[-1]["fpr"]) == 1.0


def test_evaluate_cli_model_path_video_subset_and_errors(evaluated, tmp_path, capsys):
    cfg, tmp, _ = evaluated
    args = ["-p", f"data.store={cfg.data.store}", "-p", "tracking.enabled=false", "--device", "cpu"]  # no MLflow in the repo
    rc = cli_main(["evaluate", *args, "--model", str(tmp / "train/model.pt"), "--out", str(tmp_path / "e"),
                   "--videos", "02"])
    assert rc == 0
    assert "micro AUC" in capsys.readouterr().out
    m = json.loads((tmp_path / "e/metrics.json").read_text())
    assert m["videos"] == 1 and m["video_auc"].keys() == {"02"}
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert cli_main(["evaluate", *args, "--model", str(bad), "--out", str(tmp_path / "f")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert not (tmp_path / "f" / "metrics.json").exists()
    assert cli_main(["evaluate", *args, "--model", str(tmp / "train/model.pt"), "--out", str(tmp_path / "g"),
                     "--videos", "99"]) == 2
    assert "99" in capsys.readouterr().err


def test_evaluate_refuses_a_store_of_another_frame_size(evaluated, tmp_path):
    cfg, tmp, _ = evaluated
    other = tiny_cfg(tmp_path, model=SMALL_MODEL, data={"size": [16, 16]})
    synthesize.run(other)
    extract.run(other, progress=False)
    with pytest.raises(DataError, match=r"16×16×1 but the model expects 32×32×1"):
        evaluate.run(other, model=tmp / "train/model.pt", out=tmp_path / "e")


def test_report_table_from_two_metrics_files(evaluated, tmp_path, capsys):
    _, tmp, result = evaluated
    second = {**result, "dataset": "ped2", "variant": "baseline", "pseudo_kind": "none", "auc_micro": 0.9249}
    (tmp_path / "b").mkdir()
    (tmp_path / "b/metrics.json").write_text(json.dumps(second))
    (tmp_path / "train.json").write_text(json.dumps({"loss": 1.0}))
    t = report.run(None, [str(tmp / "eval/metrics.json"), str(tmp_path / "*/metrics.json"), str(tmp_path / "*.json")])
    assert t["datasets"] == ["synthetic", "ped2"]
    rows = {r["row"]: r for r in t["rows"]}
    assert rows["ltgpa · learned"]["synthetic"] == f"{100 * result['auc_micro']:.2f}"
    assert rows["ltgpa · baseline"]["ped2"] == "92.49" and rows["ltgpa · baseline"]["synthetic"] == ""
    # the training-free floor, a row of its own: one figure per dataset, or its range across the files
    floor_row = t["rows"][-1]
    assert floor_row["row"] == "training-free floor (frame difference / temporal residual)"
    assert floor_row["synthetic"] == f"{100 * result['auc_floor']:.2f}" and floor_row["ped2 paper"] == ""
    third = {**second, "auc_floor": second["auc_floor"] - 0.05, "seed": 7}
    (tmp_path / "c").mkdir()
    (tmp_path / "c/metrics.json").write_text(json.dumps(third))
    ped2 = report.run(None, [str(tmp_path / "*/metrics.json")])["rows"][-1]["ped2"]
    assert ped2 == f"{100 * third['auc_floor']:.2f}–{100 * second['auc_floor']:.2f}"
    (tmp_path / "c/metrics.json").unlink()
    md = tmp_path / "table.md"
    assert cli_main(["report", str(tmp / "eval/metrics.json"), str(tmp_path / "b/metrics.json"), "--markdown", str(md)]) == 0
    text = md.read_text()
    # the paper's figure beside ours where a paper reports one (LTGPA's baseline on Ped2: 92.49)
    assert text.startswith("| method · variant | synthetic | ped2 | ped2 paper |")
    assert "| ltgpa · baseline |  | 92.49 | 92.49 |" in text
    assert "92.49" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "train.json")]) == 2  # named explicitly: must be evaluate metrics


def test_rows_are_labelled_by_method_and_variant():
    from pseudovad.evaluation.report import describe_model

    cfg = lambda **p: {"model": {"method": "ltgpa", "ltgpa": {"variant": "video"}}, "pseudo": {"p": 0.5, **p}}  # noqa: E731
    assert describe_model(cfg(kind="none"))["variant"] == "baseline"
    assert describe_model(cfg(kind="learned", p=0.0))["variant"] == "baseline"
    assert describe_model(cfg(kind="gaussian", sigma=0.5)) == {"method": "ltgpa", "pseudo_kind": "gaussian",
                                                                "variant": "gaussian σ=0.5"}
    mae = describe_model({"model": {"method": "mae_nct"}, "pseudo": {"mode": "nct"}})
    assert mae == {"method": "mae_nct", "pseudo_kind": "nct", "variant": "nct"}


def test_unquoted_numeric_video_ids_get_a_hint(evaluated, tmp_path):
    cfg, tmp, _ = evaluated
    with pytest.raises(DataError, match=r"no testing video\(s\) 2 .*quote video ids"):
        evaluate.run(cfg, out=tmp_path / "e", videos=["2"])


def test_evaluate_mae_nct_scores_the_predicted_frame(evaluated, tmp_path):
    cfg, _, _ = evaluated
    mae = tiny_cfg(tmp_path, data={"store": cfg.data.store},
                   model={"method": "mae_nct", "mae": {"patch_size": 8, "embed_dim": 16, "depth": 1, "heads": 2,
                                                       "in_frames": 2}},
                   pseudo={"mask_patch": 16}, evaluate={"top_k": 1})
    torch.manual_seed(0)
    save_model(tmp_path / "mae.pt", build_model(mae), model_meta(mae))
    m = evaluate.run(mae, model=tmp_path / "mae.pt", out=tmp_path / "e")
    assert (m["method"], m["variant"]) == ("mae_nct", "nct")
    rows = [r for r in csv.DictReader((tmp_path / "e/scores.csv").open()) if r["video"] == "01"]
    psnr_ = [r["psnr"] for r in rows]
    # frames 0 and 1 only ever serve as input: they carry frame 2's score (the first predicted frame);
    # the last frame is predicted, so nothing is filled at the end
    assert psnr_[0] == psnr_[1] == psnr_[2] and psnr_[-1] != psnr_[-2]


# ---------------------------------------------------------------------------------------------
# beyond the papers: region score, pixel AUC, bootstrap intervals (evaluation.protocol)

def test_region_score_pixel_auc_and_intervals_end_to_end(evaluated, tmp_path):
    from sklearn.metrics import roc_auc_score

    from pseudovad.evaluation import protocol
    from pseudovad.evaluation.regions import region_psnr

    cfg, tmp, _ = evaluated
    store = FrameStore(cfg.data.store)
    tests = store.videos("testing")
    # masks at twice the model's size (64×64 for a 32×32 model): each model pixel covers 2×2
    small = {e.id: store.array(e) > np.median(store.array(e)) for e in tests}
    big = np.concatenate([np.kron(small[e.id], np.ones((1, 2, 2), dtype=bool)) for e in tests])
    masks = tmp_path / "masks.npz"
    np.savez(masks, packed=np.packbits(big, axis=-1), shape=np.array(big.shape),
             video_lengths=np.array([e.frames for e in tests]))
    det = streaming.Detector(ZeroModel(), model_meta(cfg))     # error map = (x/255 − 0.5)², known
    m = protocol.evaluate(det, store, tests, tmp_path / "out", dataset="synthetic", model_ref="zero",
                          fingerprint="f", score="region", region_grid=(4, 4), pixel_masks=masks, bootstrap=200)
    g = det.geometry
    first, n = g.first_scored, tests[0].frames - g.span + 1
    # the model's arithmetic (float32 [-1, 1] → [0, 1]), so intensities tied in exact arithmetic stay tied
    err = {e.id: ((((torch.from_numpy(np.array(store.array(e))).float() / 127.5 - 1.0) + 1.0) / 2.0 - 0.5) ** 2).numpy()
           for e in tests}
    y = np.concatenate([small[e.id][first:first + n].ravel() for e in tests])
    s = np.concatenate([err[e.id][first:first + n].ravel() for e in tests])
    assert m["pixel_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    rows = list(csv.DictReader((tmp_path / "out" / "scores.csv").open()))
    v0 = [r for r in rows if r["video"] == tests[0].id]
    assert float(v0[first]["region_psnr"]) == pytest.approx(float(region_psnr(err[tests[0].id][first], (4, 4))), abs=1e-3)
    assert v0[0]["region_psnr"] == v0[first]["region_psnr"]      # edge frames carry the first scored frame's
    assert v0[first]["score"] == v0[first]["region_score"]       # score: region → the files show it
    assert m["region_auc_micro"] != m["auc_micro"]
    for k in ("auc_micro", "auc_raw", "region_auc_micro", "pixel_auc"):
        assert m[f"{k}_ci_low"] <= m[k] <= m[f"{k}_ci_high"], k
    assert m["bootstrap_resamples"] == 200
    assert all(isinstance(v, (int, float)) for k, v in m.items() if "_ci_" in k or k.startswith(("region_", "pixel_")))


def test_frame_score_files_and_no_bootstrap_by_request(evaluated, tmp_path):
    from pseudovad.evaluation import protocol

    cfg, tmp, _ = evaluated
    store = FrameStore(cfg.data.store)
    det = streaming.Detector(ZeroModel(), model_meta(cfg))
    m = protocol.evaluate(det, store, store.videos("testing"), tmp_path / "o", dataset="synthetic", model_ref="z",
                          fingerprint="f", bootstrap=0)
    rows = list(csv.DictReader((tmp_path / "o" / "scores.csv").open()))
    for e in store.videos("testing"):     # score: frame (the default) → the files show 1 − normalised frame PSNR
        vid = [r for r in rows if r["video"] == e.id]
        assert [float(r["score"]) for r in vid] == pytest.approx(
            normalize.anomaly_scores(np.array([float(r["psnr"]) for r in vid])).tolist(), abs=1e-3)
    assert "auc_micro_ci_low" not in m and "pixel_auc" not in m and m["bootstrap_resamples"] == 0
    # frame PSNR from the map-keeping pass is Detector.score_video's, value for value
    e = store.videos("testing")[0]
    assert [float(r["psnr"]) for r in rows if r["video"] == e.id] == pytest.approx(
        det.score_video(store.array(e)).tolist(), abs=1e-4)


def test_bad_pixel_masks_file_is_one_line_exit_2(evaluated, tmp_path, capsys):
    cfg, tmp, _ = evaluated
    bad = tmp_path / "masks.npz"
    np.savez(bad, packed=np.zeros((3, 32, 4), np.uint8), shape=np.array([3, 32, 32]), video_lengths=np.array([3]))
    args = ["-p", f"data.store={cfg.data.store}", "-p", "tracking.enabled=false", "-p", f"data.pixel_masks={bad}",
            "--device", "cpu"]
    assert cli_main(["evaluate", *args, "--model", str(tmp / "train/model.pt"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.pixel_masks" in err[0] and "video_lengths [3]" in err[0]
    assert not (tmp_path / "e" / "metrics.json").exists()
