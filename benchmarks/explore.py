"""One exploratory training run on Ped2 or Ped1, evaluated along the way: the recipe search's logbook.

Trains one params file (+ overrides) with the pipeline's own `train` stage and keeps a copy of
the detector every `--snap-every` epochs: it scores every test video (time kept out of the
training clock) and at the end the run appends ONE line to
`benchmarks/results/explore.jsonl`: the overrides, commit, machine load, steps, minutes,
seconds per step, and per snapshot the micro AUC on

  val      the validation videos (`--val-videos`; Ped2 01, 04, 07; Ped1 03, 06, 09, 12, 15, 18):
           the ONLY number a recipe is chosen on,
  held-out the other test videos, and
  all      all of them (the papers' protocol),

each on the frames a clip scores (the official protocol: edge frames left out) and beside the
training-free floor on the same frames (`floor`: frame difference and temporal residual).

so the selection is auditable and the AUC-versus-training-minutes curve of the run comes free.
A snapshot is scored in the epoch-end callback with the live model (eval mode, restored after;
the same `score_videos` + `summarize` as `evaluate`), outside the training clock, and appended to
<out>/snapshots.jsonl as it comes, so a long run shows its curve while it trains.

    .venv/bin/python benchmarks/explore.py --name ltgpa-base-lr5e-4 --dataset ped1 -p pseudo.kind=none \\
        -p train.max_steps=8000 --snap-every 4
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

import _ped2  # benchmarks/ (this script's folder) is on sys.path; it puts src/ there too
from pseudovad import config as config_mod

VAL_VIDEOS = {"ped2": ["01", "04", "07"], "ped1": ["03", "06", "09", "12", "15", "18"]}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def scored(values: dict, keep: dict) -> dict:
    """Each video's values on the frames a clip scores (`keep`: video → slice)."""
    return {v: np.asarray(values[v])[keep[v]] for v in values}


def copy_last_mse(frames: np.ndarray) -> np.ndarray:
    """Each frame's MSE to the frame before it ([0, 1] scale; frame 0: its MSE to frame 1)."""
    a = frames.astype(np.float32).reshape(len(frames), -1) / 255.0
    d = ((a[1:] - a[:-1]) ** 2).mean(1)
    return np.r_[d[:1], d]


def mse_vs_copy(psnr: dict, copy: dict, labels: dict) -> float:
    """Mean model MSE over mean copy-the-last-frame MSE on normal frames: < 1 where the model
    predicts (or reconstructs) the scene better than no motion at all."""
    ids = [v for v in psnr if (labels[v] == 0).any()]
    model = np.concatenate([10 ** (-np.asarray(psnr[v]) / 10)[labels[v] == 0] for v in ids])
    ref = np.concatenate([copy[v][labels[v] == 0] for v in ids])
    return round(float(model.mean() / ref.mean()), 4)


def split_aucs(labels: dict, psnr: dict, val: list[str]) -> dict:
    """Micro AUC on the validation videos, the held-out others and all videos (+ per-video AUC)."""
    from pseudovad.evaluation.metrics import summarize

    held = [v for v in labels if v not in val]
    splits = [("val", val)] + ([("held_out", held), ("all", list(labels))] if held else [])   # held: all were scored
    out = {}
    for name, ids in splits:
        m = summarize({v: labels[v] for v in ids}, {v: psnr[v] for v in ids})
        out[f"{name}_auc"] = round(100 * m["auc_micro"], 2)
        if name == "all":
            out["all_macro"] = None if m["auc_macro"] is None else round(100 * m["auc_macro"], 2)
            out["video_auc"] = {v: None if a is None else round(100 * a, 2) for v, a in m["video_auc"].items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="run name in the log (say what the run changes)")
    ap.add_argument("--params", default="configs/ped2-cpu.yaml")
    ap.add_argument("--dataset", choices=sorted(VAL_VIDEOS), default="ped2",
                    help="ped2 or ped1: data.root ../shared/data/<dataset>, store data/<dataset>-<H>x<W>")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: two runs share the 2 cores best)")
    _ped2.add_set_option(ap)
    ap.add_argument("--snap-every", type=int, default=1, help="epochs between snapshots (the last epoch always)")
    ap.add_argument("--val-videos", default="", help="comma-separated; default: the dataset's fixed val third")
    ap.add_argument("--out-root", default="runs/explore")
    ap.add_argument("--log", default="benchmarks/results/explore.jsonl")
    ap.add_argument("--note", default="", help="free text for the log (why this run)")
    ap.add_argument("--eval-fp32", action="store_true", help="score snapshots in fp32 (default: bf16 autocast, "
                    "~2× faster; --check-fp32 measures the difference)")
    ap.add_argument("--snap-all", action="store_true", help="score all test videos at every snapshot (default: "
                    "only the validation videos, all of them at the last snapshot; scoring costs minutes)")
    ap.add_argument("--check-fp32", action="store_true", help="also score the last snapshot in fp32 and log both")
    a = _ped2.parse(ap)

    import torch

    torch.set_num_threads(a.threads)

    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device
    from pseudovad.evaluation.streaming import score_videos
    from pseudovad.models.model_file import model_meta
    from pseudovad.stages import train as train_stage
    from pseudovad.training.fit import video_datasets
    from pseudovad.training.loop import steps_per_epoch

    out = Path(a.out_root) / a.name
    probe_cfg = config_mod.load(a.params, a.set)
    h, w = probe_cfg.data.size
    scene = [f"data.name={a.dataset}", f"data.root=../shared/data/{a.dataset}", f"data.store=data/{a.dataset}-{h}x{w}"]
    sets = [*scene, *a.set, "tracking.enabled=false", f"train.out={out / 'train'}", f"evaluate.out={out / 'evaluate'}"]
    cfg = config_mod.load(a.params, sets)
    _ped2.extract(cfg)
    store = FrameStore(cfg.data.store)
    train_set, _, _ = video_datasets(cfg, store)
    per_epoch = steps_per_epoch(len(train_set), cfg)
    if cfg.train.max_steps:   # the step cap, not the epoch count, ends the run (and the cosine spans it)
        epochs = max(1, math.ceil(cfg.train.max_steps / per_epoch))
        if epochs != cfg.train.epochs:
            sets.append(f"train.epochs={epochs}")
            cfg = config_mod.load(a.params, sets)
    val = [v.strip() for v in a.val_videos.split(",") if v.strip()] or VAL_VIDEOS[a.dataset]

    device = resolve_device(cfg.device)
    entries = store.videos("testing")
    from pseudovad.evaluation import floor as floor_mod
    from pseudovad.geometry import ClipGeometry

    geom = ClipGeometry.from_config(cfg)
    keep = {e.id: slice(geom.first_scored, geom.first_scored + len(geom.starts(e.frames))) for e in entries}
    labels = scored({e.id: store.labels(e).astype(np.int64) for e in entries}, keep)
    floors = {}
    for kind in ("framediff", "residual"):
        fp = scored({e.id: floor_mod.frame_psnr(store.array(e))[kind] for e in entries}, keep)
        floors[kind] = {k: v for k, v in split_aucs(labels, fp, val).items() if k in ("val_auc", "held_out_auc", "all_auc")}
    floors["max"] = {k: max(floors["framediff"][k], floors["residual"][k]) for k in floors["framediff"]}
    copy_mse = scored({e.id: copy_last_mse(store.array(e)) for e in entries}, keep)
    print(f"floor (edges left out): {floors}", flush=True)
    meta = model_meta(cfg)
    progress_log = out / "snapshots.jsonl"

    def score(model, fp32: bool, only_val: bool = False) -> dict:
        ctx = nullcontext() if fp32 else torch.autocast(device.type, dtype=torch.bfloat16)
        with ctx:
            return score_videos(model, meta, store, [e for e in entries if not only_val or e.id in val], device,
                                cfg.evaluate.batch_size)

    rows: list[dict] = []
    loads: list[float] = [load_avg()]
    clock = {"train_s": 0.0, "mark": 0.0, "eval_s": 0.0}
    last_psnr: dict = {}

    def snapshot(epoch: int, record: dict, method) -> None:
        """Scores the live model now (eval mode, restored after), outside the training clock."""
        now = time.perf_counter()
        clock["train_s"] += now - clock["mark"]
        loads.append(load_avg())
        last = epoch + 1 == cfg.train.epochs or record["step"] >= (cfg.train.max_steps or math.inf)
        if (epoch + 1) % a.snap_every == 0 or last:
            net = method.predictor()
            psnr = scored(score(net, a.eval_fp32, only_val=not (last or a.snap_all)), keep)
            s = {"epoch": epoch + 1, "step": record["step"], "train_min": round(clock["train_s"] / 60, 2),
                 "load": loads[-1], "losses": {k: round(v, 6) for k, v in record.items() if k.startswith(("loss", "noise", "lr"))},
                 **split_aucs({v: labels[v] for v in psnr}, psnr, val),
                 "mse_vs_copy": mse_vs_copy(psnr, copy_mse, labels)}
            if a.check_fp32 and last and not a.eval_fp32:
                s["fp32_check"] = {k: v for k, v in split_aucs(labels, scored(score(net, True), keep), val).items()
                                   if k != "video_auc"}
            rows.append(s)
            last_psnr.clear()
            last_psnr.update(psnr)
            with open(progress_log, "a") as f:
                f.write(json.dumps(s) + "\n")
            print(f"  epoch {s['epoch']:3d} step {s['step']:6d} {s['train_min']:6.1f} min: val {s['val_auc']:.2f}  "
                  f"mse/copy {s['mse_vs_copy']}  "
                  f"held-out {s.get('held_out_auc', '–')}  all {s.get('all_auc', '–')}", flush=True)
        clock["eval_s"] += time.perf_counter() - now
        clock["mark"] = time.perf_counter()

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = dt.datetime.now().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    clock["mark"] = t0
    tr = train_stage.run(cfg, callbacks=[snapshot], progress=False)
    total_train_s = time.perf_counter() - t0 - clock["eval_s"]
    load_end = load_avg()
    eval_min = clock["eval_s"] / 60
    np.savez(out / "psnr_last.npz", **last_psnr)

    steps = tr["steps"]
    entry = {
        "name": a.name, "dataset": a.dataset, "protocol": "edge frames left out", "floor": floors,
        "note": a.note, "started": started, "commit": _ped2.git_rev(),
        "params": a.params, "overrides": a.set, "method": cfg.model.method,
        "pseudo": cfg.pseudo.kind if cfg.model.method == "ltgpa" else cfg.pseudo.mode,
        "size": list(cfg.data.size), "batch": cfg.train.batch_size, "lr": cfg.train.lr, "amp": cfg.train.amp,
        "steps": steps, "epochs": tr["epochs"], "steps_per_epoch": per_epoch,
        "train_min": round(total_train_s / 60, 2), "s_per_step": round(clock["train_s"] / max(steps, 1), 4),
        "eval_min": round(eval_min, 2), "threads": torch.get_num_threads(),
        "load_start": loads[0], "load_mean": round(float(np.mean(loads)), 2), "load_end": load_end,
        "val_videos": val, "eval_dtype": "fp32" if a.eval_fp32 else "bf16", "snapshots": rows,
        "final": {k: rows[-1][k] for k in ("val_auc", "held_out_auc", "all_auc", "all_macro")},
        "best_val": max(({"epoch": r["epoch"], "step": r["step"], "val_auc": r["val_auc"]} for r in rows),
                        key=lambda r: r["val_auc"]),
    }
    Path(a.log).parent.mkdir(parents=True, exist_ok=True)
    with open(a.log, "a") as f:
        f.write(json.dumps(entry) + "\n")
    print(f"{a.name}: {steps} steps, {entry['train_min']} min train ({entry['s_per_step']} s/step, load "
          f"{entry['load_mean']}), final val {entry['final']['val_auc']} held-out {entry['final']['held_out_auc']} "
          f"all {entry['final']['all_auc']} (floor {floors['max']}) → {a.log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
