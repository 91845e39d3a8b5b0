"""MAE-NCT: masks, losses, the ViT predictor, pretrained loading, the update rule, and train → evaluate."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from pseudovad import config as config_mod
from pseudovad.errors import ConfigError
from pseudovad.models.mae import MAEPredictor
from pseudovad.pseudo import mask as mask_mod
from pseudovad.pseudo.mask import masked_count, random_patch_mask
from pseudovad.training.losses import gradient_difference_loss, intensity_loss, symmetric_kl
from pseudovad.training.mae_nct import MAENCTMethod, WarmupCosine

from tests.conftest import tiny_cfg

TINY_MAE = {"patch_size": 8, "embed_dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "in_frames": 4}


def mae_cfg(tmp_path, mode="nct", **pseudo):
    return tiny_cfg(tmp_path, model={"method": "mae_nct", "mae": TINY_MAE},
                    pseudo={"mask_patch": 16, "mask_ratio": 0.75, "mode": mode, **pseudo},
                    train={"epochs": 2, "batch_size": 4, "lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1})


# ---------------------------------------------------------------------------------------------- masks

@pytest.mark.parametrize("size,patch,mask_patch,ratio", [
    ((64, 64), 8, 32, 0.75), ((64, 96), 8, 16, 0.25), ((32, 32), 8, 16, 0.75), ((48, 80), 16, 16, 0.5),
])
def test_mask_ratio_is_exact_per_sample_and_aligned_to_mask_patches(size, patch, mask_patch, ratio):
    gen = torch.Generator().manual_seed(1)
    b = 6
    mask = random_patch_mask(b, size, patch, mask_patch, ratio, gen)
    gh, gw = size[0] // patch, size[1] // patch
    s = mask_patch // patch
    n_coarse = (size[0] // mask_patch) * (size[1] // mask_patch)
    k = math.floor(ratio * n_coarse + 0.5)
    assert mask.shape == (b, gh * gw) and mask.dtype == torch.bool
    blocks = mask.view(b, gh // s, s, gw // s, s)
    # every mask patch is wholly masked or wholly visible ...
    assert torch.equal(blocks.all(dim=(2, 4)), blocks.any(dim=(2, 4)))
    # ... and exactly round(ratio · n) of them are masked in every sample
    assert blocks.all(dim=(2, 4)).sum(dim=(1, 2)).tolist() == [k] * b
    assert mask.sum(1).tolist() == [k * s * s] * b


def test_masks_differ_across_samples_and_replay_from_the_generator():
    m1 = random_patch_mask(8, (64, 64), 8, 16, 0.5, torch.Generator().manual_seed(3))
    m2 = random_patch_mask(8, (64, 64), 8, 16, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(m1, m2)
    assert len({tuple(row.tolist()) for row in m1}) >= 7
    m3 = random_patch_mask(8, (64, 64), 8, 16, 0.5, torch.Generator().manual_seed(4))
    assert not torch.equal(m1, m3)


def test_masked_count_rounds_half_up_and_never_masks_nothing():
    assert masked_count(16, 0.75) == 12
    assert masked_count(10, 0.25) == 3     # 2.5 → 3 (half up, not Python's round-half-even → 2)
    assert masked_count(2, 0.1) == 1


def test_mask_rejects_patch_that_does_not_tile_the_frame():
    with pytest.raises(ValueError, match="mask patch"):
        random_patch_mask(1, (32, 32), 8, 12, 0.5, torch.Generator())


# ---------------------------------------------------------------------------------------------- losses

def test_gradient_difference_loss_hand_computed():
    pred = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    target = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    # vertical |Δ|: pred (2, 3), target (1, 1) → |2−1|, |3−1| → mean 1.5
    # horizontal |Δ|: pred (1, 2), target (0, 0) → mean 1.5
    assert gradient_difference_loss(pred, target).item() == pytest.approx(3.0)
    # a constant offset changes intensity, not gradients
    assert gradient_difference_loss(target + 0.7, target).item() == pytest.approx(0.0, abs=1e-6)
    assert intensity_loss(target + 0.5, target).item() == pytest.approx(0.25)
    # sign of the gradient does not matter: a mirrored edge has the same absolute gradient
    assert gradient_difference_loss(target.flip(-2), target).item() == pytest.approx(0.0)


def test_symmetric_kl_zero_for_equal_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, 16, generator=g)
    b = torch.randn(2, 5, 16, generator=g)
    assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert symmetric_kl(a, a + 3.0).item() == pytest.approx(0.0, abs=1e-5)  # softmax is shift-invariant
    assert symmetric_kl(a, b).item() > 0.05
    assert symmetric_kl(a, b).item() == pytest.approx(symmetric_kl(b, a).item(), rel=1e-6)
    # per-token over the feature dim: a difference confined to one token is averaged over B·N tokens
    c = a.clone()
    c[0, 0] = b[0, 0]
    assert symmetric_kl(a, c).item() == pytest.approx(symmetric_kl(a[0, 0], b[0, 0]).item() / 10, rel=1e-5)


# ---------------------------------------------------------------------------------------------- model

@pytest.mark.parametrize("channels,size,patch", [(1, (32, 32), 8), (1, (32, 48), 8), (3, (48, 64), 16)])
def test_prediction_has_the_input_frame_shape(channels, size, patch):
    net = MAEPredictor(channels, 3, size, patch, embed_dim=32, depth=1, heads=2)
    x = torch.rand(2, channels, 3, *size) * 2 - 1
    feats, y = net.forward_features(x)
    assert y.shape == (2, channels, *size)
    assert feats.shape == (2, (size[0] // patch) * (size[1] // patch), 32)
    assert net(x).shape == x[:, :, 0].shape


def test_masked_patches_see_only_the_mask_token():
    torch.manual_seed(0)
    net = MAEPredictor(1, 2, (32, 32), 8, embed_dim=32, depth=2, heads=2).eval()
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, [0, 5, 10]] = True
    x = torch.rand(1, 1, 2, 32, 32) * 2 - 1
    tok = net.tokens(x, mask)
    expect = net.mask_token[0, 0] + net.pos_embed[0]
    assert torch.allclose(tok[0, mask[0]], expect[mask[0]])
    # pixels under masked patches cannot influence anything; pixels elsewhere do
    x2 = x.clone()
    x2[..., 0:8, 0:8] = -x2[..., 0:8, 0:8]      # patch 0 (masked)
    x2[..., 8:16, 8:16] = 0.9                   # patch 5 (masked)
    with torch.no_grad():
        assert torch.allclose(net(x, mask), net(x2, mask), atol=1e-6)
        x3 = x.clone()
        x3[..., 0:8, 8:16] = 0.9                # patch 1 (visible)
        assert not torch.allclose(net(x, mask), net(x3, mask), atol=1e-4)
        assert not torch.allclose(net(x), net(x, mask), atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    net = MAEPredictor(1, 2, (32, 32), 8, embed_dim=32, depth=2, heads=2).train()
    x = torch.rand(2, 1, 2, 32, 32) * 2 - 1

    def grads():
        net.zero_grad()
        net(x).square().mean().backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    plain = grads()
    net.set_grad_checkpointing(True)
    ckpt = grads()
    assert len(plain) == len(ckpt) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, ckpt))


def test_timm_key_names():
    keys = set(MAEPredictor(1, 2, (32, 32), 8, embed_dim=32, depth=1, heads=2).state_dict())
    for k in ("patch_embed.proj.weight", "pos_embed", "mask_token", "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight",
              "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight",
              "blocks.0.mlp.fc2.weight", "norm.weight", "decoder.weight"):
        assert k in keys


def test_pretrained_from_a_different_model_loads_matching_keys_and_reports_the_rest(tmp_path, caplog):
    torch.manual_seed(0)
    # an RGB, single-frame, 4×4-grid "timm" ViT with a class token and one block more than ours
    src = MAEPredictor(3, 1, (32, 32), 8, embed_dim=32, depth=3, heads=2)
    sd = src.state_dict()
    sd["cls_token"] = torch.zeros(1, 1, 32)
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, 32), sd["pos_embed"]], 1)   # (1, 1 + 16, 32)
    path = tmp_path / "vit.pth"
    torch.save({"model": sd}, path)

    dst = MAEPredictor(1, 4, (64, 64), 8, embed_dim=32, depth=2, heads=2)
    with caplog.at_level(logging.WARNING, logger="pseudovad.models.mae"):
        rep = dst.load_pretrained(path)
    line = [r.getMessage() for r in caplog.records if "pretrained" in r.getMessage()]
    assert len(line) == 1 and str(path) in line[0]
    assert "decoder.weight (192, 32)≠(64, 32)" in line[0] and "blocks.2.* (12)" in line[0] and "cls_token" in line[0]
    assert "decoder.weight" in " ".join(rep["mismatched"])          # 8·8·3 outputs vs 8·8·1
    assert "cls_token" in rep["unexpected"] and "blocks.2.norm1.weight" in rep["unexpected"]
    assert rep["missing"] == ["decoder.weight", "decoder.bias"]
    assert torch.equal(dst.state_dict()["blocks.1.attn.qkv.weight"], src.state_dict()["blocks.1.attn.qkv.weight"])
    assert torch.equal(dst.mask_token, src.mask_token)
    assert dst.pos_embed.shape == (1, 64, 32)
    # the adapted patch embedding sees a static grey clip as the RGB model sees the grey image
    grey = torch.rand(1, 1, 8, 8)
    want = src.patch_embed.proj(grey.expand(1, 3, 8, 8))
    got = dst.patch_embed.proj(grey.unsqueeze(2).expand(1, 1, 4, 8, 8).reshape(1, 4, 8, 8))
    assert torch.allclose(want, got, atol=1e-5)


def test_pretrained_simmim_names_and_missing_file(tmp_path):
    src = MAEPredictor(1, 2, (32, 32), 8, embed_dim=32, depth=1, heads=2)
    sd = {f"encoder.{k}": v for k, v in src.state_dict().items() if k != "blocks.0.attn.qkv.bias"}
    qkv_bias = torch.arange(96, dtype=torch.float32)
    sd["encoder.blocks.0.attn.q_bias"], sd["encoder.blocks.0.attn.v_bias"] = qkv_bias[:32], qkv_bias[64:]
    torch.save(sd, tmp_path / "simmim.pth")
    dst = MAEPredictor(1, 2, (32, 32), 8, embed_dim=32, depth=1, heads=2)
    rep = dst.load_pretrained(tmp_path / "simmim.pth")
    assert rep["missing"] == [] and rep["unexpected"] == [] and rep["mismatched"] == []
    b = dst.blocks[0].attn.qkv.bias.detach()
    assert torch.equal(b[:32], qkv_bias[:32]) and torch.equal(b[32:64], torch.zeros(32)) and torch.equal(b[64:], qkv_bias[64:])
    with pytest.raises(ConfigError, match="nowhere.pth"):
        dst.load_pretrained(tmp_path / "nowhere.pth")


def test_pretrained_is_loaded_by_the_method_not_by_from_config(tmp_path):
    src = MAEPredictor(1, 4, (32, 32), 8, embed_dim=32, depth=2, heads=2, mlp_ratio=2.0)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    cfg = mae_cfg(tmp_path)
    cfg.model.mae.pretrained = str(tmp_path / "w.pt")
    method = MAENCTMethod(cfg, torch.device("cpu"))
    assert torch.equal(method.F.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert not torch.equal(MAEPredictor.from_config(cfg).blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    cfg.model.mae.pretrained = str(tmp_path / "gone.pt")
    with pytest.raises(ConfigError, match="gone.pt"):
        MAENCTMethod(cfg, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------- method

def _clip(b=4, seed=0):
    return torch.rand(b, 1, 5, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_nct_step_is_finite_updates_parameters_and_logs_all_terms(tmp_path):
    torch.manual_seed(0)
    method = MAENCTMethod(mae_cfg(tmp_path), torch.device("cpu"))
    method.steps_per_epoch = 2
    before = {k: v.clone() for k, v in method.F.state_dict().items()}
    rec = method.train_step(_clip(), torch.Generator().manual_seed(0))
    assert set(rec) == {"loss", "loss_f_normal", "loss_f_pseudo", "loss_cst", "mask_ratio_actual"}
    assert all(math.isfinite(v) for v in rec.values())
    assert rec["mask_ratio_actual"] == pytest.approx(0.75)
    p = method.cfg.pseudo
    assert rec["loss"] == pytest.approx(p.lambda_n * rec["loss_f_normal"] + p.lambda_p * rec["loss_f_pseudo"]
                                        + p.lambda_cst * rec["loss_cst"], rel=1e-5)
    after = method.F.state_dict()
    for k in ("patch_embed.proj.weight", "mask_token", "blocks.1.attn.qkv.weight", "decoder.weight"):
        assert not torch.equal(before[k], after[k]), k


def test_nct_step_under_bf16_autocast_is_finite(tmp_path):
    method = MAENCTMethod(mae_cfg(tmp_path), torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rec = method.train_step(_clip(), torch.Generator().manual_seed(0))
    assert all(math.isfinite(v) for v in rec.values())
    assert method.F.decoder.weight.dtype == torch.float32   # weights stay fp32; only compute is bf16


def test_none_mode_never_draws_masks(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("mask drawn in mode none")

    monkeypatch.setattr("pseudovad.training.mae_nct.random_patch_mask", boom)
    method = MAENCTMethod(mae_cfg(tmp_path, mode="none"), torch.device("cpu"))
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    for _ in range(3):
        rec = method.train_step(_clip(), gen)
        assert set(rec) == {"loss", "loss_f_normal", "mask_ratio_actual"} and rec["mask_ratio_actual"] == 0.0
    assert torch.equal(gen.get_state(), state)
    assert mask_mod.random_patch_mask is not boom   # only the method's reference was replaced


@pytest.mark.parametrize("p,expect_pseudo", [(0.0, False), (1.0, True)])
def test_prob_mode_masks_whole_batches_with_probability_p_and_no_kl(tmp_path, p, expect_pseudo):
    method = MAENCTMethod(mae_cfg(tmp_path, mode="prob", p=p), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        rec = method.train_step(_clip(), gen)
        assert "loss_cst" not in rec
        assert ("loss_f_pseudo" in rec) is expect_pseudo and ("loss_f_normal" in rec) is not expect_pseudo
        assert rec["mask_ratio_actual"] == (0.75 if expect_pseudo else 0.0)


def test_adamw_decays_weight_matrices_but_not_norms_biases_pos_embed_or_mask_token(tmp_path):
    """SimMIM / timm: no weight decay on LayerNorm weights, biases, pos_embed and mask_token."""
    cfg = mae_cfg(tmp_path)
    cfg = config_mod.with_values(cfg, {"train.weight_decay": 0.5})
    method = MAENCTMethod(cfg, torch.device("cpu"))
    method.sched.apply(None)
    before = {k: v.detach().clone() for k, v in method.F.named_parameters()}
    for p in method.F.parameters():
        p.grad = torch.zeros_like(p)            # no gradient: only weight decay can move a parameter
    method.opt.step()
    kept = {k for k, v in method.F.named_parameters() if torch.equal(v, before[k])}
    frozen = {k for k, v in before.items() if v.ndim <= 1 or k in ("pos_embed", "mask_token")}
    assert {"pos_embed", "mask_token", "norm.weight", "blocks.0.norm1.weight", "decoder.bias"} <= frozen
    assert kept == frozen
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "decoder.weight"} <= set(before) - kept


def test_checkpoint_keeps_the_parameter_groups_and_an_older_layout_starts_fresh(tmp_path, caplog):
    from pseudovad.training import checkpoint

    cfg = mae_cfg(tmp_path)
    method = MAENCTMethod(cfg, torch.device("cpu"))
    method.steps_per_epoch = 2
    method.train_step(_clip(), torch.Generator().manual_seed(0))
    path = tmp_path / "ck" / "last.pt"
    checkpoint.save(path, method, torch.Generator().manual_seed(1), {"step": 1}, "h")
    again = MAENCTMethod(cfg, torch.device("cpu"))
    assert checkpoint.load(path, again, torch.Generator(), "h") == {"step": 1}
    assert [g["weight_decay"] for g in again.opt.param_groups] == [0.0, 0.05]
    assert all(torch.equal(again.opt.state[p]["exp_avg"], method.opt.state[q]["exp_avg"])
               for p, q in zip(again.F.parameters(), method.F.parameters()) if q in method.opt.state)
    blob = torch.load(path, weights_only=True)                 # one group, as before parameter groups
    one = torch.optim.AdamW(method.F.parameters(), lr=1e-3)
    blob["optimizers"]["F"] = one.state_dict()
    torch.save(blob, path)
    fresh = MAENCTMethod(cfg, torch.device("cpu"))
    with caplog.at_level(logging.WARNING):
        assert checkpoint.load(path, fresh, torch.Generator(), "h") is None
    assert "another layout" in caplog.text


def test_warmup_then_cosine_per_step():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, 1.0, warmup_epochs=1, epochs=3, max_steps=0)
    lrs = []
    for _ in range(12):   # 4 steps per epoch
        lrs.append(sched.apply(4))
        sched.step_count += 1
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and 0 < lrs[-1] < 0.05
    # without steps per epoch the same shape is stepped per epoch
    sched = WarmupCosine(opt, 1.0, warmup_epochs=2, epochs=4)
    per_epoch = []
    for e in range(4):
        per_epoch.append(sched.apply(None))
        sched.epoch = e + 1
    assert per_epoch == pytest.approx([0.5, 1.0, 1.0, 0.5])


# ---------------------------------------------------------------------------------------------- stages

def test_train_and_evaluate_end_to_end_with_mae_nct(tmp_path):
    from pseudovad.models.model_file import load_model
    from pseudovad.stages import evaluate, extract, synthesize, train

    cfg = mae_cfg(tmp_path)
    cfg.train.out = str(tmp_path / "train")
    cfg.evaluate.out = str(tmp_path / "evaluate")
    cfg.evaluate.top_k = 1
    synthesize.run(cfg)
    extract.run(cfg)
    res = train.run(cfg, progress=False)
    assert res["method"] == "mae_nct" and res["pseudo_kind"] == "nct" and res["steps"] > 0
    hist = res["history"]
    assert len(hist) == 2 and all(math.isfinite(h["loss_cst"]) for h in hist)
    assert hist[0]["lr_f"] > 0
    net, meta = load_model(tmp_path / "train" / "model.pt")
    assert isinstance(net, MAEPredictor)
    assert meta["clip_len"] == 5 and meta["scored_index"] == 4 and meta["method"] == "mae_nct"
    metrics = evaluate.run(cfg)
    assert 0.0 <= metrics["auc_micro"] <= 1.0 and metrics["frames"] > 0
    # re-running resumes from the finished checkpoint: same steps, no further training
    again = train.run(cfg, progress=False)
    assert again["steps"] == res["steps"]
