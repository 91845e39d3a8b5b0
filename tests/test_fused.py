"""The profiles' output parametrisations (LTGPA motion, MAE change) and the fused score."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from pseudovad import config as config_mod
from pseudovad.data.store import FrameStore
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation import floor, fused, protocol, streaming
from pseudovad.models import build_model
from pseudovad.models.autoencoder3d import VideoAutoencoder
from pseudovad.models.mae import MAEPredictor
from pseudovad.models.model_file import load_model, model_meta
from pseudovad.stages import extract, synthesize, train
from tests.conftest import tiny_cfg


def _zero_last_layer(module: torch.nn.Module) -> None:
    last = [m for m in module.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d, torch.nn.Linear))][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)


def test_ltgpa_motion_adds_the_temporal_mean_back_and_keeps_the_frame_fast_path_exact():
    torch.manual_seed(0)
    net = VideoAutoencoder(1, [4, 4, 4, 4], reconstruct="motion").eval()
    x = torch.rand(2, 1, 16, 32, 32) * 2 - 1
    with torch.no_grad():
        full = net(x)
        assert torch.allclose(net.reconstruct_frame(x, 8), full[:, :, 8])   # the frame path is the full pass
        _zero_last_layer(net.decoder)                   # a decoder that writes nothing: the output is the mean
        out = net(x)
    assert torch.allclose(out, x.mean(2, keepdim=True).expand_as(x))
    static = torch.full((1, 1, 16, 32, 32), 0.3)
    with torch.no_grad():       # a static scene is reconstructed exactly whatever F codes of "no motion"
        assert torch.allclose(net(static), static)


def test_mae_change_adds_the_decoder_output_to_the_last_input_frame():
    torch.manual_seed(0)
    net = MAEPredictor(1, in_frames=4, img_size=(32, 32), patch_size=8, embed_dim=16, depth=1, heads=2,
                       predict="change").eval()
    _zero_last_layer(net)
    frames = torch.rand(2, 1, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(net(frames), frames[:, :, -1])


@pytest.mark.parametrize("method,key,value,says", [
    ("ltgpa", "model.ltgpa.reconstruct", "residual", "must be clip or motion"),
    ("mae_nct", "model.mae.predict", "delta", "must be frame or change"),
])
def test_unknown_parametrisation_is_refused_naming_the_key(method, key, value, says):
    with pytest.raises(ConfigError, match=f"{key}.*{says}"):
        config_mod.load(None, [f"model.method={method}", f"{key}={value}"])


def test_motion_reconstruction_needs_the_video_variant():
    with pytest.raises(ConfigError, match="model.ltgpa.reconstruct.*video variant"):
        config_mod.load(None, ["model.ltgpa.reconstruct=motion", "model.ltgpa.variant=image"])


def test_fused_is_the_sum_of_the_two_standardised_scores():
    calib = {"psnr_mean": 30.0, "psnr_std": 2.0, "motion": {"kind": "residual", "psnr_mean": 40.0, "psnr_std": 4.0}}
    model, motion = np.array([30.0, 26.0, 32.0]), np.array([40.0, 44.0, 32.0])
    # z_model = (30 − p)/2 = 0, 2, −1; z_motion = (40 − r)/4 = 0, −1, 2 → fused = 0, 1, 1; returned negated
    assert fused.fused_psnr(model, motion, calib) == pytest.approx([0.0, -1.0, -1.0])


def test_motion_calibration_is_the_residual_on_exactly_the_given_frames():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (10, 8, 8), dtype=np.uint8), rng.integers(0, 255, (12, 8, 8), dtype=np.uint8)
    got = fused.motion_calibration([(a, range(3, 7)), (b, range(0, 0)), (b, range(5, 9))])
    want = np.concatenate([floor.frame_psnr(a)["residual"][3:7], floor.frame_psnr(b)["residual"][5:9]])
    assert got["n"] == 8 and got["psnr_mean"] == pytest.approx(want.mean()) and got["psnr_std"] == pytest.approx(want.std())
    assert fused.motion_calibration([(a, range(0))]) is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fused")
    cfg = tiny_cfg(tmp, model={"ltgpa": {"width": [4, 4, 4, 4], "g_width": [4, 4, 4], "reconstruct": "motion"}},
                   pseudo={"kind": "none"}, train={"out": str(tmp / "train"), "epochs": 1, "max_steps": 2, "val_fraction": 0.5},
                   evaluate={"out": str(tmp / "eval"), "bootstrap": 0})
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    train.run(cfg, progress=False)
    return cfg, tmp


def test_train_stores_the_motion_statistics_of_its_validation_frames(trained):
    cfg, tmp = trained
    meta = torch.load(tmp / "train" / "model.pt", map_location="cpu", weights_only=False)["meta"]
    cal = meta["calibration"]
    assert cal["source"] == "validation" and cal["motion"]["kind"] == "residual"
    assert cal["motion"]["n"] == cal["n"]          # the same frames the model's PSNR statistics are over
    assert meta["config"]["model"]["ltgpa"]["reconstruct"] == "motion"


def test_evaluate_fused_score_end_to_end_and_an_old_model_is_refused(trained, tmp_path):
    cfg, tmp = trained
    store = FrameStore(cfg.data.store)
    tests = store.videos("testing")
    det = streaming.Detector(*load_model(tmp / "train" / "model.pt", "cpu"))
    m = protocol.evaluate(det, store, tests, tmp_path / "f", dataset="synthetic", model_ref="m", fingerprint="f",
                          score="fused", bootstrap=0)
    assert 0.0 <= m["fused_auc_micro"] <= 1.0 and "fused_auc_macro" in m
    rows = list(csv.DictReader((tmp_path / "f" / "scores.csv").open()))
    cal = det.meta["calibration"]
    e = tests[0]
    vid = [r for r in rows if r["video"] == e.id]
    g = det.geometry
    counted = slice(g.first_scored, g.first_scored + len(g.starts(e.frames)))
    want = fused.fused_psnr(np.array([float(r["psnr"]) for r in vid]), floor.frame_psnr(store.array(e))["residual"], cal)
    lo, hi = want[counted].min(), want[counted].max()
    got = np.array([float(r["score"]) for r in vid])[counted]
    assert got == pytest.approx(1.0 - (want[counted] - lo) / (hi - lo), abs=1e-3)   # score: fused → the files show it
    # a model without motion statistics (trained before them) cannot give a fused score: one clear line
    old = streaming.Detector(build_model(cfg), model_meta(cfg, calibration={"psnr_mean": 1.0, "psnr_std": 1.0}))
    with pytest.raises(DataError, match="no motion statistics.*evaluate.score=frame"):
        protocol.evaluate(old, store, tests, tmp_path / "o", dataset="synthetic", model_ref="old.pt",
                          fingerprint="f", score="fused", bootstrap=0)
    assert not (tmp_path / "o").exists()
    plain = protocol.evaluate(old, store, tests, tmp_path / "p", dataset="synthetic", model_ref="old.pt",
                              fingerprint="f", bootstrap=0)
    assert "fused_auc_micro" not in plain
