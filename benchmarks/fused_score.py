"""Does the fused score beat both of its parts? Trained runs, each scored three ways on the same frames.

For every run folder given (one holding `train/model.pt`, as `ped2_seeds.py` and `explore.py`
leave them), the model is evaluated with `evaluate.score: fused` on its scene's test videos
(`evaluation.fused`): the model's PSNR and the temporal residual, each standardised on the normal
validation frames the model was calibrated on, summed. A model trained before the motion
statistics existed gets them here, computed exactly as `train` computes them (the same validation
clips of the same store), so older runs can be measured without retraining. Reported per run on
the val / held-out / all splits of `_ped2.DATASETS`, official protocol: the model alone, the
residual alone, the floor (the better of frame difference and residual) and the fused score; then
per row (runs differing only in seed) mean ± std and how many runs the fused score beats both of
its parts on. Nothing here is tuned: no weight between the two parts, no choice on test videos.

    .venv/bin/python benchmarks/fused_score.py --name fused-ped2-1k runs/ped2-seeds/ped2-ltgpa-1k-fixed/*-seed*
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

import _ped2  # benchmarks/ (this script's folder) is on sys.path; it puts src/ there too
from pseudovad import config as config_mod

PARTS = ("model", "residual", "floor", "fused")


def split_auc(rows: list[dict], val: list[str], score) -> dict[str, float]:
    """Micro AUC (%) of `score(rows of one video) → scores` on val / held-out / all, counted rows only."""
    from sklearn.metrics import roc_auc_score

    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("counted", "1") == "1":
            by.setdefault(r["video"], []).append(r)
    per = {v: (np.array([int(r["label"]) for r in rs]), score(rs)) for v, rs in by.items()}
    out = {}
    for name, keep in (("val", lambda v: v in val), ("held_out", lambda v: v not in val), ("all", lambda v: True)):
        ids = [v for v in per if keep(v)]
        out[name] = round(100 * roc_auc_score(np.concatenate([per[v][0] for v in ids]),
                                              np.concatenate([per[v][1] for v in ids])), 2)
    return out


def measure(run: Path, out: Path) -> dict:
    import torch

    from pseudovad.data.store import FrameStore
    from pseudovad.evaluation import fused, protocol, streaming
    from pseudovad.evaluation.normalize import anomaly_scores
    from pseudovad.models.model_file import load_model
    from pseudovad.training.fit import scored_frames, video_datasets

    torch.set_num_threads(1)
    model, meta = load_model(run / "train" / "model.pt", "cpu")
    cfg = config_mod.from_dict(meta["config"])
    store = FrameStore(cfg.data.store)
    calib = dict(meta.get("calibration") or {})
    added = not fused.available(calib)
    if added:   # what train stores today, on the same validation clips
        _, val_set, _ = video_datasets(cfg, store)
        calib["motion"] = fused.motion_calibration(scored_frames(val_set, cfg))
        meta = {**meta, "calibration": calib}
    det = streaming.Detector(model, meta)
    t0 = time.perf_counter()
    m = protocol.evaluate(det, store, store.videos("testing"), out, dataset=cfg.data.name, model_ref=str(run),
                          fingerprint="", score="fused", bootstrap=0)
    rows = list(csv.DictReader(open(out / "scores.csv")))
    val = _ped2.DATASETS[cfg.data.name]["val"]
    res = {
        "model": split_auc(rows, val, lambda rs: anomaly_scores(np.array([float(r["psnr"]) for r in rs]))),
        "residual": split_auc(rows, val, lambda rs: np.array([float(r["floor_residual"]) for r in rs])),
        "framediff": split_auc(rows, val, lambda rs: np.array([float(r["floor_framediff"]) for r in rs])),
        "fused": split_auc(rows, val, lambda rs: np.array([float(r["score"]) for r in rs])),
    }
    res["floor"] = {k: max(res["residual"][k], res["framediff"][k]) for k in res["fused"]}
    return {"run": str(run), "dataset": cfg.data.name, "method": cfg.model.method, "seed": cfg.seed,
            "calibration_n": calib.get("n"), "motion_n": calib["motion"]["n"], "motion_added": added,
            "metrics": {k: m[k] for k in ("auc_micro", "auc_floor", "fused_auc_micro")},
            "eval_min": round((time.perf_counter() - t0) / 60, 2), "auc": res}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders holding train/model.pt")
    ap.add_argument("--name", required=True, help="results name: benchmarks/results/<name>.json")
    ap.add_argument("--out-root", type=Path, default=Path("runs/fused"), help="where the fused evaluations go")
    ap.add_argument("--title", default="")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = []
    for run in a.runs:
        if not (run / "train" / "model.pt").is_file():
            ap.error(f"{run}: no train/model.pt")
        r = measure(run, a.out_root / a.name / re.sub(r"[^\w.-]", "_", str(run)))
        results.append(r)
        print(f"{run}: " + ", ".join(f"{k} {r['auc'][k]['all']}" for k in PARTS) + f" (all; val fused {r['auc']['fused']['val']})",
              flush=True)

    def row_of(r: dict) -> str:
        return re.sub(r"-?seed\d+$", "", Path(r["run"]).name)

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["dataset"], row_of(r)), []).append(r)
    head = ["scene", "row", "seeds", *(f"{p} {s}" for s in ("val", "all") for p in PARTS), "fused beats both (val / all)"]
    lines, entry_rows = [], {}
    for (ds, row), rs in groups.items():
        cells = [ds, row, str(len(rs))]
        stats = {}
        for s in ("val", "all"):
            for p in PARTS:
                xs = [r["auc"][p][s] for r in rs]
                mu, sd = statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)
                stats[f"{p}_{s}"] = {"mean": round(mu, 2), "std": round(sd, 2)}
                cells.append(f"{mu:.2f} ± {sd:.2f}" if len(xs) > 1 else f"{mu:.2f}")
        wins = {s: sum(r["auc"]["fused"][s] > max(r["auc"]["model"][s], r["auc"]["residual"][s]) for r in rs)
                for s in ("val", "all")}
        cells.append(f"{wins['val']}/{len(rs)} / {wins['all']}/{len(rs)}")
        lines.append(cells)
        entry_rows[f"{ds}/{row}"] = {**stats, "wins": wins, "runs": [r["run"] for r in rs]}
    table = _ped2.md_table(head, lines, 2)
    print(table)
    entry = {"name": a.name, "started": started, "commit": _ped2.git_rev(), "environment": _ped2.environment(),
             "load": round(os.getloadavg()[0], 2), "rows": entry_rows, "per_run": results}
    _ped2.record(a.name, entry, None if a.no_append else [
            f"## {a.title or 'Fused score against its parts: ' + a.name}", "",
            f"`benchmarks/fused_score.py` on {len(results)} trained runs ({started}, commit {entry['commit']}); "
            "micro AUC %, official protocol; model = the model's frame score alone, residual = temporal "
            "residual alone, floor = the better of frame difference and residual, fused = model + residual "
            "standardised on normal validation footage (no labels, no weights). Val videos: "
            + "; ".join(f"{k} {', '.join(v['val'])}" for k, v in _ped2.DATASETS.items()) + ".", "", table, ""])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
