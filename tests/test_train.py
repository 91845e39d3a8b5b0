"""LTGPA training: the equations, the layer lists, resumability and the NaN guard."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as Fn
from torch import nn

from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.errors import TrainingError
from pseudovad.models.autoencoder2d import ImageAutoencoder, ImageNoiseGenerator
from pseudovad.models.autoencoder3d import VideoAutoencoder, VideoNoiseGenerator
from pseudovad.models.model_file import load_model
from pseudovad.pseudo.noise import apply_noise
from pseudovad.stages import train
from pseudovad.training.ltgpa import LTGPAMethod
from tests.conftest import tiny_cfg

SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}, "data": {"clip_len": 8, "scored_index": 4}}


def method(kind="learned", p=1.0, **pseudo):
    cfg = config_mod.from_dict(config_mod.deep_merge(SMALL, {
        "data": {"size": [32, 32]}, "pseudo": {"kind": kind, "p": p, **pseudo}, "train": {"lr": 1e-3}}))
    torch.manual_seed(0)
    return LTGPAMethod(cfg, torch.device("cpu"))


def clip(seed=0):
    return torch.rand(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_noise_is_recomputed_after_clipping():
    x = torch.tensor([0.9, -0.9, 0.0])
    x_p, delta = apply_noise(x, torch.tensor([0.5, -0.5, 3.0]), "tanh")
    assert torch.allclose(x_p, torch.tensor([1.0, -1.0, 1.0]))
    assert torch.allclose(delta, torch.tensor([0.1, -0.1, 1.0]))
    x_p, delta = apply_noise(torch.tensor([0.2]), torch.tensor([-0.5]), "unit")
    assert torch.allclose(x_p, torch.tensor([0.0])) and torch.allclose(delta, torch.tensor([-0.2]))


def test_pseudo_f_step_targets_the_clean_clip():
    m = method("gaussian", p=1.0, sigma=0.5)
    x = clip()
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    gen = torch.Generator().manual_seed(7)
    rec = m.train_step(x, gen)
    # replay the same draws: the Bernoulli(p) decision of each sample, then the noise
    g = torch.Generator().manual_seed(7)
    assert (torch.rand(2, generator=g) < 1.0).all()
    x_p, _ = apply_noise(x, torch.randn(x.shape, generator=g) * 0.5, "tanh")
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    expected_clean = Fn.mse_loss(ref(x_p), x).item()
    ref.load_state_dict(F_before)
    expected_noisy = Fn.mse_loss(ref(x_p), x_p).item()
    assert rec["loss_f_pseudo"] == pytest.approx(expected_clean, rel=1e-5)
    assert rec["loss_f_pseudo"] != pytest.approx(expected_noisy, rel=1e-3)


def test_g_step_changes_g_and_leaves_f_bit_identical():
    m = method("learned", p=1.0, lam=0.1)
    x = clip()
    with torch.no_grad():
        m.F(x)  # make BN buffers non-trivial
    F_state = {k: v.clone() for k, v in m.F.state_dict().items()}
    G_state = {k: v.clone() for k, v in m.G.state_dict().items()}
    x_p, delta = m.noise.make(x, torch.Generator())
    loss, rec_loss = m.g_step(x_p, delta)
    for k, v in m.F.state_dict().items():
        assert torch.equal(v, F_state[k]), k
    changed = [k for k, v in m.G.named_parameters() if not torch.equal(v, G_state[k])]
    assert changed, "G did not move"
    assert loss == pytest.approx(rec_loss - 0.1 * delta.pow(2).mean().item(), rel=1e-5)
    assert all(p.requires_grad for p in m.F.parameters())


@pytest.mark.parametrize("kind", ["gaussian", "learned", "patch"])
def test_pseudo_or_normal_is_drawn_per_sample_and_f_trains_on_the_mixed_batch(kind):
    """LNTRA / STEAL draw pseudo or normal per sample: one batch mixes clean and pseudo clips, so
    BatchNorm normalises them together; each sample's loss is its own MSE to the clean clip."""
    m = method(kind, p=0.5, sigma=0.5)
    x = torch.rand(8, 1, 8, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    seen = []
    real = m.F_run

    def recording(inp):
        seen.append(inp.detach().clone())
        return real(inp)

    m.F_run = recording
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    rec = m.train_step(x, torch.Generator().manual_seed(11))
    pseudo = torch.rand(8, generator=torch.Generator().manual_seed(11)) < 0.5   # the same draw, replayed
    assert 0 < int(pseudo.sum()) < 8                        # this seed mixes both kinds
    x_in = seen[0]                                          # F's input of its own step
    clean = torch.tensor([torch.equal(x_in[b], x[b]) for b in range(8)])
    assert torch.equal(clean, ~pseudo)                      # the normal samples untouched, the pseudo ones not
    assert rec["n_pseudo"] == float(pseudo.sum())
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    per = (ref(x_in) - x).pow(2).flatten(1).mean(1).detach()   # target: the clean clip, every sample
    assert rec["loss_f_normal"] == pytest.approx(per[~pseudo].mean().item(), rel=1e-5)
    assert rec["loss_f_pseudo"] == pytest.approx(per[pseudo].mean().item(), rel=1e-5)


def test_g_steps_before_f_on_the_same_pseudo_clip():
    """The paper's Fig. 4: G adapts to F's boundary as F is (before F's update), then F learns
    the X^P G made before G's own update."""
    m = method("learned", p=1.0, lam=0.1)
    x = clip()
    F0 = {k: v.clone() for k, v in m.F.state_dict().items()}
    G0 = {k: v.clone() for k, v in m.G.state_dict().items()}
    rec = m.train_step(x, torch.Generator().manual_seed(7))
    refF, refG = VideoAutoencoder(1, [4, 6, 8, 8]), VideoNoiseGenerator(1, [4, 6, 8])
    refF.load_state_dict(F0)
    refG.load_state_dict(G0)
    refF.train(), refG.train()
    x_p, delta = apply_noise(x, refG(x), "tanh")
    for p in refF.parameters():
        p.requires_grad_(False)
    rec_loss = Fn.mse_loss(refF(x_p), x_p)                      # F before its update
    assert rec["loss_g_rec"] == pytest.approx(rec_loss.item(), rel=1e-5)
    opt_g = torch.optim.Adam(refG.parameters(), lr=1e-3)
    (rec_loss - 0.1 * delta.pow(2).mean()).backward()
    opt_g.step()
    for k, v in refG.state_dict().items():
        assert torch.allclose(m.G.state_dict()[k], v, atol=1e-6), k
    refF.load_state_dict(F0)                                    # BN statistics as before G's step
    for p in refF.parameters():
        p.requires_grad_(True)
    opt_f = torch.optim.Adam(refF.parameters(), lr=1e-3)
    Fn.mse_loss(refF(x_p.detach()), x).backward()               # the same X^P, G's before its update
    opt_f.step()
    for k, v in refF.state_dict().items():
        assert torch.allclose(m.F.state_dict()[k].float(), v.float(), atol=1e-6), k


def test_p_zero_never_builds_a_pseudo_batch():
    m = method("gaussian", p=0.0)

    def boom(*a, **k):
        raise AssertionError("pseudo batch built with p=0")

    m.noise.make = boom
    gen = torch.Generator().manual_seed(0)
    for i in range(20):
        assert set(m.train_step(clip(i), gen)) == {"loss_f_normal"}
    baseline = method("none", p=0.5)
    assert baseline.noise is None and baseline.G is None
    assert set(baseline.train_step(clip(), gen)) == {"loss_f_normal"}


def _layers(module: nn.Module, types):
    return [m for m in module.modules() if isinstance(m, types)]


def test_full_size_video_models_have_the_paper_layers():
    F = VideoAutoencoder(1)
    convs = _layers(F.encoder, nn.Conv3d)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 96, (3, 3, 3), (1, 2, 2)), (96, 128, (3, 3, 3), (2, 2, 2)),
        (128, 256, (3, 3, 3), (2, 2, 2)), (256, 256, (3, 3, 3), (2, 2, 2))]
    deconvs = _layers(F.decoder, nn.ConvTranspose3d)
    assert [(c.in_channels, c.out_channels, c.stride) for c in deconvs] == [
        (256, 256, (2, 2, 2)), (256, 128, (2, 2, 2)), (128, 96, (2, 2, 2)), (96, 1, (1, 2, 2))]
    assert len(_layers(F, nn.BatchNorm3d)) == 7
    assert all(a.negative_slope == 0.2 for a in _layers(F, nn.LeakyReLU))
    assert isinstance(F.out_act, nn.Tanh)
    G = VideoNoiseGenerator(1)
    assert [c.out_channels for c in _layers(G.encoder, nn.Conv3d)] == [96, 128, 256]
    assert [c.out_channels for c in _layers(G.decoder, nn.ConvTranspose3d)] == [128, 96, 1]
    x = torch.zeros(1, 1, 16, 256, 256)
    with torch.no_grad():
        F.eval(), G.eval()
        assert F(x).shape == x.shape and G(x).shape == x.shape
        G.decoder[-1].bias.fill_(10.0)
        assert G(x).max().item() == pytest.approx(2.0, abs=1e-3)  # 2·tanh: ΔX ∈ [-2, 2]


def test_full_size_image_models_have_the_paper_layers():
    F, G = ImageAutoencoder(3), ImageNoiseGenerator(3)
    enc = _layers(F.encoder, nn.Conv2d)
    assert [(c.out_channels, c.kernel_size, c.stride) for c in enc] == [
        (64, (3, 3), (2, 2)), (128, (3, 3), (2, 2)), (128, (3, 3), (2, 2)), (256, (3, 3), (2, 2))]
    dec = _layers(F.decoder, nn.ConvTranspose2d)
    assert [(c.out_channels, c.kernel_size) for c in dec] == [(128, (4, 4)), (128, (4, 4)), (64, (4, 4)), (3, (4, 4))]
    assert [c.out_channels for c in _layers(G.encoder, nn.Conv2d)] == [64, 128, 128]
    x = torch.rand(2, 3, 32, 32)
    y, n = F(x), G(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert n.shape == x.shape and -1 <= n.min() and n.max() <= 1


@pytest.mark.parametrize("size", [[32, 32], [48, 64], [64, 96]])
def test_output_shape_equals_input_for_accepted_sizes(size):
    cfg = config_mod.from_dict(config_mod.deep_merge(SMALL, {"data": {"size": size}}))
    F = VideoAutoencoder(1, cfg.model.ltgpa.width)
    x = torch.zeros(1, 1, 8, *size)
    assert F(x).shape == x.shape


def _tiny_train_cfg(tmp_path, **train_kw):
    return tiny_cfg(tmp_path, **SMALL, train={"out": str(tmp_path / "train"), "epochs": 2, "batch_size": 2,
                                               "lr": 2e-3, "checkpoint_every": 3, **train_kw})


def test_train_end_to_end_lowers_loss_and_g_learns(tiny_store):
    cfg = _tiny_train_cfg(tiny_store, epochs=3, val_fraction=0.25)  # 10 of 40 frames: one 8-frame clip span
    s = train.run(cfg, progress=False)
    hist = s["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert hist[-1]["loss_f_normal"] < hist[0]["loss_f_normal"]
    assert hist[-1]["noise_norm"] != pytest.approx(hist[0]["noise_norm"], rel=1e-3)
    for key in ("loss_f_normal", "loss_f_pseudo", "loss_g", "noise_norm", "lr_f", "lr_g", "clips_per_s"):
        assert key in hist[-1]
    blob = torch.load(tiny_store / "train/model.pt", weights_only=True)
    assert set(blob["meta"]) >= {"method", "config", "size", "channels", "clip_len", "scored_index", "value_range"}
    assert blob["meta"]["calibration"]["source"] == "validation"
    from pseudovad import calibration
    assert calibration.check(blob["meta"]["calibration"])  # the format `score` reads
    model, meta = load_model(tiny_store / "train/model.pt")
    assert meta["clip_len"] == 8 and meta["scored_index"] == 4
    metrics = json.loads((tiny_store / "train/metrics.json").read_text())
    assert metrics["steps"] == s["steps"] > 0


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tiny_store, monkeypatch):
    cfg = _tiny_train_cfg(tiny_store, epochs=1)
    calls = {"n": 0}
    real = LTGPAMethod.train_step

    def flaky(self, x, gen):
        calls["n"] += 1
        rec = real(self, x, gen)
        if calls["n"] == 5:
            rec["loss_f_normal" if "loss_f_normal" in rec else "loss_f_pseudo"] = float("nan")
        return rec

    monkeypatch.setattr(LTGPAMethod, "train_step", flaky)
    with pytest.raises(TrainingError, match="non-finite loss at step 5"):
        train.run(cfg, progress=False)
    ck = torch.load(tiny_store / "train/checkpoints/last.pt", weights_only=True)
    assert ck["state"]["step"] == 3  # the checkpoint before the NaN step
    assert not (tiny_store / "train/model.pt").exists()


def test_sigkill_then_rerun_finishes_with_same_steps(tiny_store):
    cfg = _tiny_train_cfg(tiny_store, epochs=3, checkpoint_every=2)
    params = tiny_store / "params.yaml"
    params.write_text(config_mod.dump(cfg))
    full = _tiny_train_cfg(tiny_store / "ref", epochs=3, checkpoint_every=2)
    full.data.store = cfg.data.store
    expected = train.run(full, progress=False)["steps"]

    env = {**os.environ, "PSEUDOVAD_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "pseudovad", "train", "-P", str(params), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tiny_store / "train/checkpoints/last.pt"
    deadline = time.monotonic() + 120
    step = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists():
            try:
                step = torch.load(last, weights_only=True)["state"]["step"]
            except Exception:
                step = 0
            if step >= 4:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < step < expected
    assert not (tiny_store / "train/model.pt").exists()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ck = torch.load(last, weights_only=True)
    assert ck["state"]["step"] == expected
    hist = json.loads((tiny_store / "train/history.json").read_text())   # a JSON list: what `dvc plots` renders
    assert [h["epoch"] for h in hist] == [0, 1, 2] and hist[-1]["step"] == expected
    # same batches, same draws: the resumed run ends where an uninterrupted one does
    a = torch.load(tiny_store / "train/model.pt", weights_only=True)["state_dict"]
    b = torch.load(tiny_store / "ref/train/model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_checkpoint_from_other_params_is_not_resumed(tiny_store):
    cfg = _tiny_train_cfg(tiny_store, epochs=1)
    first = train.run(cfg, progress=False)["steps"]
    cfg2 = _tiny_train_cfg(tiny_store, epochs=1, max_steps=2)
    assert train.run(cfg2, progress=False)["steps"] == 2 < first


def test_store_size_mismatch_is_a_clear_error(tiny_store):
    cfg = _tiny_train_cfg(tiny_store)
    cfg.data.size = [64, 64]
    with pytest.raises(Exception, match="extracted with"):
        train.run(cfg, progress=False)


def test_image_variant_one_class_protocol(tmp_path):
    from pseudovad.data.images import one_class, write_cifar_like

    root = write_cifar_like(tmp_path / "cifar", per_class_train=20, per_class_test=4)
    tr, va, te = one_class(root, normal_class=3, val_fraction=0.1, channels=3, size=(32, 32))
    assert (len(tr), len(va), len(te)) == (18, 2, 40)
    assert sum(te.labels) == 36  # the nine other classes are anomalous
    cfg = config_mod.from_dict({
        "model": {"ltgpa": {"variant": "image", "width": [8, 8, 8, 8], "g_width": [8, 8, 8]}},
        "data": {"size": [32, 32], "channels": 3},
        "pseudo": {"kind": "learned", "lam": 5.0},
        "train": {"cifar_root": str(root), "normal_class": 3, "epochs": 2, "batch_size": 8, "lr": 1e-3,
                  "out": str(tmp_path / "img")},
        "tracking": {"enabled": False}})
    s = train.run(cfg, progress=False)
    assert s["best_epoch"] in (0, 1) and all("val_psnr" in h for h in s["history"])
    model, meta = load_model(tmp_path / "img/model.pt")
    assert meta["value_range"] == "unit" and isinstance(model, ImageAutoencoder)


def test_bf16_autocast_option_trains(tiny_store):
    cfg = _tiny_train_cfg(tiny_store, epochs=1, max_steps=3, amp="bf16", memory_format="channels_last")
    s = train.run(cfg, progress=False)
    assert s["steps"] == 3 and s["loss_f_normal" if "loss_f_normal" in s else "loss_f_pseudo"] > 0
    metrics = results.read(tiny_store / "train")   # amp, memory_format: provenance.json; threads: metrics.json
    assert (metrics["amp"], metrics["memory_format"], metrics["threads"]) == ("bf16", "channels_last", torch.get_num_threads())
    # weights, BN statistics and optimiser state stay fp32 under autocast: in model.pt and in the checkpoint
    blob = torch.load(tiny_store / "train/model.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in blob["state_dict"].values() if v.is_floating_point())
    ck = torch.load(tiny_store / "train/checkpoints/last.pt", weights_only=True)
    floats = [v for sd in ck["modules"].values() for v in sd.values() if v.is_floating_point()]
    floats += [v for o in ck["optimizers"].values() for st in o["state"].values() for v in st.values()
               if torch.is_tensor(v) and v.is_floating_point() and v.ndim > 0]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    model, _ = load_model(tiny_store / "train/model.pt")
    assert next(model.parameters()).dtype == torch.float32


def test_batch_gather_equals_collated_clips(tiny_store):
    from torch.utils.data import default_collate

    from pseudovad.data.store import FrameStore
    from pseudovad.training.fit import video_datasets

    for step in (1, 2):
        cfg = config_mod.with_values(_tiny_train_cfg(tiny_store), {"data.frame_step": step})
        ds, _, _ = video_datasets(cfg, FrameStore(cfg.data.store))
        idx = [5, 0, len(ds) - 1, 3]
        for d in (ds, ds.with_lookahead(4)):   # with a lookahead (skip frames): windows and reaches
            got = d.batch(idx)
            want = default_collate([d[i] for i in idx])
            assert len(got) == len(want) == (4 if d.lookahead else 3)
            assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(got, want, strict=True))


def test_loader_workers_do_not_change_the_run(tiny_store):
    a = train.run(_tiny_train_cfg(tiny_store, epochs=2, out=str(tiny_store / "w0")), progress=False)
    cfg = config_mod.with_values(_tiny_train_cfg(tiny_store, epochs=2, out=str(tiny_store / "w2")), {"data.num_workers": 2})
    b = train.run(cfg, progress=False)
    assert (a["steps"], a["num_workers"], b["num_workers"]) == (b["steps"], 0, 2)
    wa = torch.load(tiny_store / "w0/model.pt", weights_only=True)["state_dict"]
    wb = torch.load(tiny_store / "w2/model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)   # same batches in the same order, every epoch


def test_interrupt_after_last_step_still_wraps_up_the_epoch_on_resume(tiny_store):
    """Killed between the final step's checkpoint and the epoch's end (e.g. while a callback
    scores validation videos): the re-run must not skip that epoch's callbacks and history."""
    cfg = _tiny_train_cfg(tiny_store, epochs=1, max_steps=3, checkpoint_every=100)

    def interrupt(epoch, record, m):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, callbacks=[interrupt], progress=False)
    seen = []
    s = train.run(cfg, callbacks=[lambda e, r, m: seen.append(e)], progress=False)
    assert seen == [0] and s["steps"] == 3
    assert [h["epoch"] for h in s["history"]] == [0]


def test_paper_schedule_keeps_ltgpa_lr_constant_and_builds_no_scheduler():
    m = method()
    assert m.schedulers() == {}
    m.steps_per_epoch = 4
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        m.train_step(clip(), gen)
    assert m.lrs() == {"lr_f": pytest.approx(1e-3), "lr_g": pytest.approx(1e-3)}


def test_ltgpa_cosine_schedule_warms_up_then_decays_f_and_g_together():
    cfg = config_mod.from_dict(config_mod.deep_merge(SMALL, {
        "data": {"size": [32, 32]}, "pseudo": {"kind": "learned", "p": 0.5},
        "train": {"lr": 1e-3, "g_lr": 2e-3, "lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 3}}))
    torch.manual_seed(0)
    m = LTGPAMethod(cfg, torch.device("cpu"))
    m.steps_per_epoch = 2
    gen = torch.Generator().manual_seed(0)
    lrs = []
    for _ in range(6):
        m.train_step(clip(), gen)
        lrs.append(m.lrs())
    assert [r["lr_f"] for r in lrs[:2]] == pytest.approx([0.5e-3, 1e-3])              # warm-up over 2 steps
    assert all(r["lr_g"] == pytest.approx(2 * r["lr_f"]) for r in lrs)              # one clock for F and G
    assert lrs[2]["lr_f"] == pytest.approx(1e-3) and lrs[-1]["lr_f"] < lrs[3]["lr_f"] < lrs[2]["lr_f"]
    assert set(m.schedulers()) == {"F", "G"}


def test_lr_schedule_is_validated_and_defaults_per_method():
    from pseudovad.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lr_schedule: must be constant, cosine or null"):
        config_mod.from_dict({"train": {"lr_schedule": "linear"}})
    assert config_mod.lr_schedule(config_mod.from_dict({})) == "constant"
    assert config_mod.lr_schedule(config_mod.from_dict({"model": {"method": "mae_nct"}})) == "cosine"
    assert config_mod.lr_schedule(config_mod.from_dict({"train": {"lr_schedule": "cosine"}})) == "cosine"


def test_cosine_schedule_position_is_checkpointed(tiny_store):
    cfg = _tiny_train_cfg(tiny_store, epochs=2, lr_schedule="cosine", warmup_epochs=1)
    first = train.run(cfg, progress=False)
    ck = torch.load(tiny_store / "train/checkpoints/last.pt", weights_only=True)
    assert ck["schedulers"]["F"]["step_count"] == first["steps"]
    assert first["history"][-1]["lr_f"] < cfg.train.lr
