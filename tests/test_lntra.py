"""The comparison rows: LNTRA's skip-frame and patch pseudo anomalies and STEAL's `maximize` loss,
in LTGPA's pipeline (construction, targets, the loss, resume), and the table they end up in."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from pseudovad import config as config_mod
from pseudovad import kubeflow
from pseudovad.data.clips import ClipDataset, to_tensor
from pseudovad.data.store import FrameStore
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation.report import describe_model, format_table, table
from pseudovad.models.autoencoder3d import VideoAutoencoder
from pseudovad.pseudo.patch import BORDER, MIN_SIDE, PatchMaker
from pseudovad.pseudo.skip import SkipFrames
from pseudovad.stages import train
from pseudovad.tune import space as search_space
from pseudovad.training.loop import epoch_record
from pseudovad.training.ltgpa import LTGPAMethod, max_error
from tests.conftest import tiny_cfg

SMALL = {"model": {"ltgpa": {"width": [4, 6, 8, 8], "g_width": [4, 6, 8]}}, "data": {"clip_len": 8, "scored_index": 4}}


def method(kind, p=1.0, pseudo_loss="reconstruct_normal", **pseudo):
    cfg = config_mod.from_dict(config_mod.deep_merge(SMALL, {
        "data": {"size": [32, 32]}, "pseudo": {"kind": kind, "p": p, **pseudo},
        "train": {"lr": 1e-3, "pseudo_loss": pseudo_loss}}))
    torch.manual_seed(0)
    return LTGPAMethod(cfg, torch.device("cpu"))


# ----------------------------------------------------------------------------------------------
# Skip frames

def test_skip_clip_is_the_stride_k_frames_from_the_same_start_and_its_target_the_stride_1_clip(tiny_store):
    store = FrameStore(tiny_store / "store")
    entries = store.videos("training")
    arr = store.array(entries[0])
    cfg = config_mod.from_dict(config_mod.deep_merge(SMALL, {"pseudo": {"kind": "skip", "jumps": [2, 3]}}))
    lookahead = LTGPAMethod.lookahead(cfg)
    assert lookahead == 7 * 3 + 1 - 8                 # the stride-1 clip + what a jump of 3 needs
    end = 30                                          # frames 30… are another split (e.g. validation)
    ds = ClipDataset(store, entries[:1], 8, 2, spans=[(0, end)], lookahead=lookahead)
    plain = ClipDataset(store, entries[:1], 8, 2, spans=[(0, end)])
    assert len(ds) == len(plain) and (ds.index == plain.index).all()   # the lookahead drops no clip
    skip = SkipFrames(8, [2, 3])
    for i in range(len(ds)):
        window, vi, s, reach = ds[i]
        assert reach == min(8 + lookahead, end - s)
        assert torch.equal(window[:, :reach], to_tensor(arr[s:s + reach]))
        assert (window[:, reach:] == -1).all()        # past the span: black padding, never footage
        assert torch.equal(skip.normal(window[None])[0], plain[i][0])
        gen = torch.Generator().manual_seed(i)
        x_in, target, kept, jumps = skip.make(window[None], torch.tensor([reach]), gen)
        k = int(jumps[0])
        assert bool(kept[0]) == (s + 7 * k < end)
        if kept[0]:
            assert torch.equal(x_in[0], to_tensor(arr[s:s + 7 * k + 1:k]))
            assert torch.equal(target[0], to_tensor(arr[s:s + 8]))
        else:
            assert x_in is None


def test_skip_pseudo_step_trains_f_on_the_jumped_clip_toward_the_stride_1_clip():
    m = method("skip", jumps=[2, 3])
    window = torch.rand(3, 1, 22, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    reach = torch.tensor([22, 22, 10])                  # the third clip cannot jump at all
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    rec = m.train_step(window, torch.Generator().manual_seed(5), reach=reach)
    g = torch.Generator().manual_seed(5)                # replay: Bernoulli(p) per clip, then one jump per drawn clip
    assert (torch.rand(3, generator=g) < 1.0).all()
    jumps = torch.tensor([2, 3])[torch.randint(2, (3,), generator=g)]
    x_in = torch.stack([window[b, :, 0:7 * int(jumps[b]) + 1:int(jumps[b])] for b in (0, 1)] + [window[2, :, :8]])
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    out = ref(x_in)                                     # one batch: two jumped clips and the one that could not jump
    assert rec["loss_f_pseudo"] == pytest.approx(Fn.mse_loss(out[:2], window[:2, :, :8]).item(), rel=1e-5)
    assert rec["loss_f_normal"] == pytest.approx(Fn.mse_loss(out[2], window[2, :, :8]).item(), rel=1e-5)
    assert rec["n_skip_dropped"] == 1.0 and rec["n_pseudo"] == 2.0
    assert rec["skip_jump"] == pytest.approx(float(jumps[:2].float().mean()))
    # no clip can jump: the batch is a normal one, counted
    rec = m.train_step(window, torch.Generator().manual_seed(5), reach=torch.tensor([8, 9, 10]))
    assert set(rec) == {"loss_f_normal", "n_skip_dropped", "n_pseudo"} and rec["n_skip_dropped"] == 3.0
    assert rec["n_pseudo"] == 0.0


def test_counts_are_summed_per_epoch_and_losses_averaged():
    assert epoch_record({"loss_f_pseudo": 3.0, "n_skip_dropped": 5.0}, {"loss_f_pseudo": 2, "n_skip_dropped": 2}) \
        == {"loss_f_pseudo": 1.5, "n_skip_dropped": 5.0}


def test_footage_too_short_for_any_jump_is_refused(tiny_store):
    cfg = tiny_cfg(tiny_store, **SMALL, pseudo={"kind": "skip", "jumps": [6]},   # 43 frames > 40
                   train={"out": str(tiny_store / "train"), "epochs": 1})
    with pytest.raises(DataError, match="pseudo.jumps: no training clip has the 43 frames a jump of 6 needs"):
        train.run(cfg, progress=False)


# ----------------------------------------------------------------------------------------------
# Patches

def _support(size, centre, H, W):
    """Where the patch's footprint may be non-zero: its box widened by the smooth border."""
    ys, xs = torch.arange(H)[:, None], torch.arange(W)[None, :]
    out = []
    for t in range(centre.shape[0]):
        inside = []
        for pos, side, c in ((ys, size[0], centre[t, 0]), (xs, size[1], centre[t, 1])):
            half = int(side) // 2
            ramp = BORDER * half + 1
            inside.append((pos > c - half - ramp) & (pos < c + half - 1 + ramp))
        out.append(inside[0] & inside[1])
    return torch.stack(out)                    # (L, H, W)


@pytest.mark.parametrize("source", ["procedural", "folder"])
def test_patch_clip_differs_from_the_clean_clip_only_inside_the_moving_footprint(source, tmp_path):
    folder = None
    if source == "folder":
        folder = tmp_path / "objects" / "class0"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "white.png"), np.full((12, 20, 3), 255, np.uint8))
    maker = PatchMaker("tanh", max_size=0.5, max_move=3, source=str(folder.parent) if folder else None)
    x = torch.rand(4, 1, 8, 32, 48, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    x_p, alpha, size, centre = maker.paste_batch(x, torch.Generator().manual_seed(1))
    assert x_p.shape == x.shape and alpha.shape == (4, 1, 8, 32, 48)
    for b in range(4):
        support = _support(size[b], centre[b], 32, 48)
        assert torch.equal(x_p[b, 0][~support], x[b, 0][~support])        # untouched, bit for bit
        assert (x_p[b, 0] != x[b, 0]).any()
        assert (MIN_SIDE <= size[b]).all() and size[b, 0] <= 16 and size[b, 1] <= 24
        steps = (centre[b, 1:] - centre[b, :-1]).abs()
        assert (steps <= 3).all()                                         # at most max_move px per frame
        if source == "folder":                                            # a white object: +1 on its box
            h, w = (int(v) // 2 for v in size[b])
            cy, cx = (int(v) for v in centre[b, 0])
            core = x_p[b, 0, 0, max(cy - h, 0):cy + h, max(cx - w, 0):cx + w]
            assert core.numel() and torch.allclose(core, torch.ones_like(core), atol=1e-5)
    assert (centre[:, 1:] != centre[:, :-1]).any()                        # the patches move


def test_patch_pseudo_step_targets_the_clean_clip():
    m = method("patch", patch_max_move=2)
    x = torch.rand(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    rec = m.train_step(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert (torch.rand(2, generator=g) < 1.0).all()
    x_p, _, _, _ = PatchMaker("tanh", 0.5, 2).paste_batch(x, g)
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    assert rec["loss_f_pseudo"] == pytest.approx(Fn.mse_loss(ref(x_p), x).item(), rel=1e-5)


def test_a_bad_patch_source_is_named(tmp_path):
    with pytest.raises(ConfigError, match="pseudo.patch_source: .* is not a folder"):
        method("patch", patch_source=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="pseudo.patch_source: no images"):
        method("patch", patch_source=str(tmp_path / "empty"))


# ----------------------------------------------------------------------------------------------
# STEAL's loss

@pytest.mark.parametrize("kind", ["gaussian", "patch"])
def test_maximize_raises_the_reconstruction_error_of_the_pseudo_input(kind):
    errors = {}
    for loss in ("maximize", "reconstruct_normal"):
        m = method(kind, pseudo_loss=loss, sigma=0.3)
        x = torch.rand(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
        seen = []
        for _ in range(8):                       # the same batch and the same pseudo input every step
            rec = m.train_step(x, torch.Generator().manual_seed(9))
            seen.append(rec)
        errors[loss] = seen
    up = [r["pseudo_error"] for r in errors["maximize"]]
    assert up[-1] > up[0] + 0.05 and all(r["loss_f_pseudo"] == -r["pseudo_error"] for r in errors["maximize"])
    assert max(up) <= max_error("tanh") == 4.0     # the bound: tanh output and input both in [-1, 1]
    down = [r["loss_f_pseudo"] for r in errors["reconstruct_normal"]]
    assert down[-1] < down[0] and "pseudo_error" not in errors["reconstruct_normal"][0]


def test_steal_step_maximises_the_error_to_the_jumped_clip_itself():
    m = method("skip", pseudo_loss="maximize", jumps=[2])
    window = torch.rand(2, 1, 15, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    rec = m.train_step(window, torch.Generator().manual_seed(0), reach=torch.tensor([15, 15]))
    x_in = window[:, :, 0:15:2]
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    assert rec["loss_f_pseudo"] == pytest.approx(-Fn.mse_loss(ref(x_in), x_in).item(), rel=1e-5)


def test_maximize_in_a_mixed_batch_negates_only_the_pseudo_samples_loss():
    m = method("gaussian", p=0.5, pseudo_loss="maximize", sigma=0.5)
    x = torch.rand(8, 1, 8, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    seen, real = [], m.F_run
    m.F_run = lambda inp: (seen.append(inp.detach().clone()), real(inp))[1]
    F_before = {k: v.clone() for k, v in m.F.state_dict().items()}
    rec = m.train_step(x, torch.Generator().manual_seed(11))
    pseudo = torch.rand(8, generator=torch.Generator().manual_seed(11)) < 0.5
    assert 0 < int(pseudo.sum()) < 8
    ref = VideoAutoencoder(1, [4, 6, 8, 8])
    ref.load_state_dict(F_before)
    ref.train()
    out = ref(seen[0]).detach()
    assert rec["loss_f_normal"] == pytest.approx(Fn.mse_loss(out[~pseudo], x[~pseudo]).item(), rel=1e-5)
    assert rec["pseudo_error"] == pytest.approx(Fn.mse_loss(out[pseudo], seen[0][pseudo]).item(), rel=1e-5)
    assert rec["loss_f_pseudo"] == -rec["pseudo_error"]


# ----------------------------------------------------------------------------------------------
# Resume

@pytest.mark.parametrize("kind", ["skip", "patch"])
def test_interrupted_run_resumes_to_the_same_weights(tiny_store, kind, monkeypatch):
    def cfg_in(folder, **kw):
        return tiny_cfg(tiny_store, **SMALL, pseudo={"kind": kind, "p": 0.6, "jumps": [2, 3], "patch_max_move": 2},
                        train={"out": str(tiny_store / folder / "train"), "epochs": 2, "batch_size": 2, "lr": 2e-3,
                               "checkpoint_every": 2, "max_clips_per_epoch": 8, **kw})
    reference = train.run(cfg_in("ref"), progress=False)
    pseudo_steps = sum("loss_f_pseudo" in h for h in reference["history"])
    assert pseudo_steps and reference["steps"] == 8

    real, calls = LTGPAMethod.train_step, {"n": 0}

    def killed(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt    # mid-epoch 0, a step after the checkpoint at step 2
        return real(self, *a, **k)

    monkeypatch.setattr(LTGPAMethod, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg_in("run"), progress=False)
    monkeypatch.setattr(LTGPAMethod, "train_step", real)
    resumed = train.run(cfg_in("run"), progress=False)
    assert resumed["steps"] == reference["steps"]
    a = torch.load(tiny_store / "run/train/model.pt", weights_only=True)["state_dict"]
    b = torch.load(tiny_store / "ref/train/model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    for got, want in zip(resumed["history"], reference["history"], strict=True):   # the same draws: the same pseudo batches
        assert set(got) == set(want)
        assert all(got[k] == pytest.approx(want[k], rel=1e-5) for k in want if k != "clips_per_s")


# ----------------------------------------------------------------------------------------------
# Settings: params, search space, pipeline parameters

@pytest.mark.parametrize("override, key", [
    ("pseudo.jumps=[1,2]", "pseudo.jumps"),
    ("pseudo.jumps=[]", "pseudo.jumps"),
    ("pseudo.patch_max_size=0", "pseudo.patch_max_size"),
    ("pseudo.patch_max_move=-1", "pseudo.patch_max_move"),
    ("train.pseudo_loss=minimize", "train.pseudo_loss"),
    ("pseudo.kind=jitter", "pseudo.kind"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        config_mod.load(None, [override])
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_clip_kinds_need_the_video_variant():
    with pytest.raises(ConfigError, match="pseudo.kind: skip pseudo anomalies are made of clips"):
        config_mod.from_dict({"model": {"ltgpa": {"variant": "image", "width": [8, 8, 8, 8], "g_width": [8, 8, 8]}},
                              "data": {"size": [32, 32]}, "pseudo": {"kind": "skip"}})


def test_jumps_and_patch_size_are_search_dimensions():
    from ray.tune.search.sample import Categorical

    keys = lambda **s: set(search_space.parse_space(config_mod.from_dict(s)))  # noqa: E731
    assert keys(pseudo={"kind": "skip"}) == {"pseudo.p", "pseudo.jumps", "train.lr"}
    assert keys(pseudo={"kind": "patch"}) == {"pseudo.p", "pseudo.patch_max_size", "pseudo.patch_max_move", "train.lr"}
    steal = search_space.parse_space(config_mod.from_dict({"pseudo": {"kind": "skip"}, "train": {"pseudo_loss": "maximize"}}))
    assert (steal["pseudo.p"].type, steal["pseudo.p"].low) == ("loguniform", 0.005)
    cfg = config_mod.from_dict({"tune": {"space": {"pseudo.jumps": {"type": "choice", "values": [[2, 3, 4, 5], [2, 3]]}}}})
    space = search_space.to_ray(search_space.parse_space(cfg), "random")
    assert isinstance(space["pseudo.jumps"], Categorical)
    drawn = space["pseudo.jumps"].sample()
    tree = search_space.apply({"pseudo": {"kind": "skip"}}, {"pseudo.jumps": tuple(drawn)})
    assert config_mod.from_dict(tree).pseudo.jumps == list(drawn) in ([2, 3, 4, 5], [2, 3])
    assert search_space.to_ray(search_space.parse_space(cfg), "grid") == {"pseudo.jumps": {"grid_search": [[2, 3, 4, 5], [2, 3]]}}
    optuna = config_mod.from_dict({"tune": {"search": "optuna", "space": cfg.tune.space}})
    with pytest.raises(ConfigError, match="tune.space.pseudo.jumps: a choice of lists .* not optuna"):
        search_space.parse_space(optuna)


def test_pipeline_parameters_set_the_new_keys(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = kubeflow.step_config({"params": "pseudo:\n  patch_source: /objects\n", "pseudo_kind": "skip", "jumps": [3, 4],
                                "patch_max_size": 0.3, "patch_max_move": 6, "patch_source": "",
                                "pseudo_loss": "maximize"})
    assert (cfg.pseudo.kind, cfg.pseudo.jumps, cfg.pseudo.patch_max_size, cfg.pseudo.patch_max_move) == \
        ("skip", [3, 4], 0.3, 6)
    assert cfg.pseudo.patch_source == "/objects"      # "" keeps the params' value
    assert cfg.train.pseudo_loss == "maximize"


# ----------------------------------------------------------------------------------------------
# The table

def test_rows_name_the_comparison_recipes():
    cfg = lambda loss="reconstruct_normal", **p: {  # noqa: E731
        "model": {"method": "ltgpa", "ltgpa": {"variant": "video"}}, "pseudo": {"p": 0.5, **p},
        "train": {"pseudo_loss": loss}}
    assert describe_model(cfg(kind="skip"))["variant"] == "skip"
    assert describe_model(cfg("maximize", kind="skip"))["variant"] == "steal"
    assert describe_model(cfg(kind="patch"))["variant"] == "patch"
    assert describe_model(cfg(kind="patch", patch_source="/cifar"))["variant"] == "patch (image folder)"
    assert describe_model(cfg("maximize", kind="patch"))["variant"] == "patch maximize"
    assert describe_model(cfg("maximize", kind="none"))["variant"] == "baseline"
    assert describe_model({"pseudo": {"kind": "skip"}})["variant"] == "skip"     # model files from before the key


def test_table_averages_over_seeds_with_the_paper_figure_beside():
    def m(variant, seed, auc, dataset="ped2", method="ltgpa"):
        return {"method": method, "variant": variant, "dataset": dataset, "seed": seed, "auc_micro": auc}

    entries = [(f"runs/s{i}/metrics.json", m("skip", i, a)) for i, a in enumerate((0.90, 0.92, 0.94))]
    entries += [("runs/b/metrics.json", m("baseline", 0, 0.91)), ("runs/b2/metrics.json", m("baseline", 0, 0.80)),
                ("runs/g/metrics.json", m("gaussian σ=0.5", 0, 0.93)),
                ("runs/n/metrics.json", m("nct", 0, 0.95, method="mae_nct")),
                ("runs/syn/metrics.json", m("skip", 0, 0.99, dataset="synthetic"))]
    t = table(entries)
    assert t["columns"] == ["ped2", "ped2 paper", "synthetic"]
    rows = {r["row"]: r for r in t["rows"]}
    assert rows["ltgpa · skip"]["ped2"] == "92.00 ± 2.00 (3)" and rows["ltgpa · skip"]["ped2 paper"] == "96.50"
    assert rows["ltgpa · skip"]["stats"]["ped2"]["seeds"] == [0, 1, 2]
    assert rows["ltgpa · skip"]["synthetic"] == "99.00"
    # the same seed twice is a rerun, not another seed: a row of its own
    assert rows["ltgpa · baseline"]["ped2"] == "91.00" and rows["ltgpa · baseline (b2)"]["ped2"] == "80.00"
    assert rows["ltgpa · baseline"]["ped2 paper"] == "92.49" and rows["ltgpa · gaussian σ=0.5"]["ped2 paper"] == ""
    assert rows["mae_nct · nct"]["ped2 paper"] == "95.50"
    assert [r["row"] for r in t["rows"]][:4] == ["ltgpa · baseline", "ltgpa · baseline (b2)",
                                                 "ltgpa · gaussian σ=0.5", "ltgpa · skip"]
    text = format_table(t, markdown=True)
    assert text.startswith("| method · variant | ped2 | ped2 paper | synthetic |")
    assert "| ltgpa · skip | 92.00 ± 2.00 (3) | 96.50 | 99.00 |" in text and "LNTRA" in text
    assert table([(p, {**e, "eer": 0.1}) for p, e in entries], "eer")["columns"] == ["ped2", "synthetic"]
