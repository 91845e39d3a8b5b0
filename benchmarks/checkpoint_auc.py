"""Micro AUC of a training checkpoint (checkpoints/last.pt) on the val / held-out / all test videos.

A look at a run while it trains, without waiting for its end: the checkpoint's F is rebuilt from
the same params file + overrides the run was started with, then scored like explore.py's
snapshots (frames a clip scores only; bf16 autocast unless --fp32). The checkpoint is copied first, so the run may
overwrite it meanwhile.

    .venv/bin/python benchmarks/checkpoint_auc.py --ckpt runs/explore/D1/train/checkpoints/last.pt \\
        --dataset ped2 -p data.store=data/ped2-64x96 -p pseudo.kind=none [--all]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import _ped2  # benchmarks/ on sys.path; src/ too
from pseudovad import config as config_mod
from explore import VAL_VIDEOS, scored, split_aucs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--params", default="configs/ped2-cpu.yaml")
    _ped2.add_set_option(ap)
    ap.add_argument("--dataset", choices=sorted(VAL_VIDEOS), default="ped2", help="which val videos")
    ap.add_argument("--all", action="store_true", help="score all test videos (default: the val videos)")
    ap.add_argument("--fp32", action="store_true")
    a = _ped2.parse(ap)

    import numpy as np
    import torch

    from pseudovad.data.store import FrameStore
    from pseudovad.evaluation.streaming import score_videos
    from pseudovad.geometry import ClipGeometry
    from pseudovad.models import build_model
    from pseudovad.models.model_file import model_meta

    cfg = config_mod.load(a.params, [*a.set, "tracking.enabled=false"])
    val = VAL_VIDEOS[a.dataset]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "ckpt.pt"
        shutil.copy(a.ckpt, local)
        blob = torch.load(local, map_location="cpu", weights_only=True)
    model = build_model(cfg)
    model.load_state_dict(blob["modules"]["F"])
    store = FrameStore(cfg.data.store)
    entries = [e for e in store.videos("testing") if a.all or e.id in val]

    g = ClipGeometry.from_config(cfg)
    keep = {e.id: slice(g.first_scored, g.first_scored + len(g.starts(e.frames))) for e in entries}
    labels = scored({e.id: store.labels(e).astype(np.int64) for e in entries}, keep)
    with (nullcontext() if a.fp32 else torch.autocast("cpu", dtype=torch.bfloat16)):
        psnr = scored(score_videos(model, model_meta(cfg), store, entries, "cpu", cfg.evaluate.batch_size), keep)
    r = split_aucs(labels, psnr, val)
    print(f"step {blob['state']['step']}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "video_auc"))
    from pseudovad.evaluation.metrics import video_aucs
    from pseudovad.evaluation.normalize import anomaly_scores

    per = video_aucs(labels, {v: anomaly_scores(p) for v, p in psnr.items()})
    print("per video:", {v: None if x is None else round(100 * x, 1) for v, x in per.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
