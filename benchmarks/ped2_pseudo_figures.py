"""What LTGPA's pseudo anomalies look like on Ped2, from trained runs: the evidence figures.

For each training folder given (train.out of a ped2_seeds.py / explore.py run), reads
  history.json           the noise norm mean‖ΔX‖² and mean|ΔX| per epoch (the LTGPA paper's
                         Fig. 8 quantity) and F's losses on normal and pseudo batches;
  checkpoints/last.pt    F and, for `learned`, G (model.pt holds F alone);
and on a fixed sample of training clips draws, for the scored (9th) frame: the clip X, the noise
ΔX (G's output in train mode, as in training, or a Gaussian draw), X^P = clip(X + ΔX), F(X^P) and F(X), and the squared
errors F(X^P) − X (what F is trained to make small) and F(X) − X. It also compares where G puts
its noise with where the footage moves: the correlation, over pixels, of the mean |ΔX| map with
the mean |X_t − X_{t−1}| map of the same clips ("what G learns to cover").

Writes <out>/noise_norm.png, <out>/pseudo_<name>.png and <out>/pseudo_stats.json.

    .venv/bin/python benchmarks/ped2_pseudo_figures.py --runs runs/ped2-seeds/abl/learned-seed0/train \\
        runs/ped2-seeds/abl/gaussian-0.1-seed0/train --out benchmarks/results/pseudo
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _ped2  # noqa: F401  (src/ on sys.path; Agg backend)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="train.out folders")
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=64, help="training clips for the maps and statistics")
    ap.add_argument("--show", type=int, default=3, help="clips drawn per run")
    a = _ped2.parse(ap)

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from pseudovad import config as config_mod
    from pseudovad.data.store import FrameStore
    from pseudovad.models.model_file import read_model_file
    from pseudovad.training.fit import video_datasets
    from pseudovad.training.methods import build_method

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stats, curves = {}, {}
    for run in map(Path, a.runs):
        name = run.parent.name if run.name == "train" else run.name
        meta = read_model_file(run / "model.pt")["meta"]
        cfg = config_mod.from_dict(meta["config"])
        if (run / "history.json").is_file():     # a JSON list (what the training loop writes)
            hist = json.loads((run / "history.json").read_text())
        else:                                     # runs trained before history.json: JSON lines
            hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
        curves[name] = hist
        if cfg.pseudo.kind == "none":
            continue
        method = build_method(cfg, torch.device("cpu"))
        blob = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        for k, m in method.modules().items():
            m.load_state_dict(blob["modules"][k])
        method.eval()
        if method.G is not None:   # G makes noise in train mode (batch statistics), as it did in training
            method.G.train()
        train_set, _, _ = video_datasets(cfg, FrameStore(cfg.data.store))
        idx = np.linspace(0, len(train_set) - 1, a.clips).astype(int)
        x = torch.stack([train_set[int(i)][0] for i in idx])
        gen = torch.Generator().manual_seed(0)
        si = cfg.data.scored_index
        with torch.no_grad():
            x_p, delta = method.noise.make(x, gen)
            rec_p, rec_n = method.F(x_p), method.F(x)
        err_p = (rec_p - x).pow(2)[:, 0, si]          # what F's pseudo step minimises
        err_n = (rec_n - x).pow(2)[:, 0, si]
        dabs = delta.abs()[:, 0]                        # (B, T, H, W)
        motion = (x[:, 0, 1:] - x[:, 0, :-1]).abs()     # (B, T-1, H, W)
        noise_map, motion_map = dabs.mean((0, 1)).numpy(), motion.mean((0, 1)).numpy()
        corr = float(np.corrcoef(noise_map.ravel(), motion_map.ravel())[0, 1])
        stats[name] = {
            "kind": cfg.pseudo.kind, "noise_norm": float(delta.pow(2).mean()), "noise_abs": float(dabs.mean()),
            "share_pixels_moved_gt_0.1": float((dabs > 0.1).float().mean()),
            "f_pseudo_mse": float(err_p.mean()), "f_normal_mse": float(err_n.mean()),
            "noise_motion_corr": corr,
        }
        n = min(a.show, len(x))
        fig, axes = plt.subplots(n, 7, figsize=(14, 2.1 * n), squeeze=False)
        cols = ["X (9th frame)", "|ΔX|", "X^P", "F(X^P)", "(F(X^P)−X)²", "F(X)", "(F(X)−X)²"]
        for r in range(n):
            k = r * (len(x) // n)
            ims = [x[k, 0, si], dabs[k, si], x_p[k, 0, si], rec_p[k, 0, si], err_p[k], rec_n[k, 0, si], err_n[k]]
            for c, im in enumerate(ims):
                ax = axes[r][c]
                rng = dict(vmin=-1, vmax=1) if c in (0, 2, 3, 5) else dict(vmin=0, vmax=max(float(im.max()), 1e-6))
                ax.imshow(im.numpy(), cmap="gray" if c in (0, 2, 3, 5) else "magma", **rng)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(cols[c], fontsize=8)
        fig.suptitle(f"{name}: noise_norm {stats[name]['noise_norm']:.4f}, F MSE pseudo {stats[name]['f_pseudo_mse']:.4f} "
                     f"/ normal {stats[name]['f_normal_mse']:.4f}, corr(|ΔX|, motion) {corr:.2f}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"pseudo_{name}.png", dpi=110)
        plt.close(fig)
        print(f"{name}: {stats[name]}")

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, hist in curves.items():
        steps = [h["step"] for h in hist]
        if any("noise_norm" in h for h in hist):
            ax[0].plot(steps, [h.get("noise_norm", np.nan) for h in hist], label=name)
        ax[1].plot(steps, [h.get("loss_f_normal", np.nan) for h in hist], label=f"{name} normal")
        if any("loss_f_pseudo" in h for h in hist):
            ax[1].plot(steps, [h.get("loss_f_pseudo", np.nan) for h in hist], ls="--", label=f"{name} pseudo")
    ax[0].set_title("noise norm mean‖ΔX‖² per epoch (LTGPA Fig. 8)")
    ax[1].set_title("F's loss per epoch")
    ax[1].set_yscale("log")
    for x_ in ax:
        x_.set_xlabel("training steps")
        x_.grid(alpha=0.3)
        x_.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "noise_norm.png", dpi=110)
    (out / "pseudo_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(f"→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
