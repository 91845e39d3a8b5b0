"""`evaluate`: score every test frame with a trained model and report frame-level AUC.

Protocol (the LTGPA / MAE-NCT papers'): PSNR of each stride-1 clip's scored frame against its
reconstruction or prediction (frames in [0, 1], peak 1); edge frames take the nearest clip's
score; PSNR min-max normalised within each video, anomaly score = 1 − normalised PSNR; one ROC
over all frames (micro AUC). Also macro AUC, AUC of raw −PSNR, and EER.

Writes to `evaluate.out`: metrics.json (a DVC metric; written last), scores.csv
(video,frame,psnr,score,label), roc.csv (fpr,tpr,threshold; a DVC plot) and plots/ (ROC, one
timeline per video, the top-k frames figure). Every file is written atomically.
"""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from pseudovad.config import Config
from pseudovad.data.store import FrameStore
from pseudovad.device import resolve_device
from pseudovad.errors import DataError
from pseudovad.evaluation import metrics as metrics_mod
from pseudovad.evaluation import plots
from pseudovad.evaluation.normalize import anomaly_scores
from pseudovad.evaluation.report import describe_model
from pseudovad.evaluation.scoring import frame_views, score_videos
from pseudovad.geometry import ClipGeometry
from pseudovad.files import atomic_dir, write_json, write_text
from pseudovad.models.model_file import load_model

PSNR_CONVENTION = "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def top_frames(psnr: dict[str, np.ndarray], scores: dict[str, np.ndarray], k: int,
               geom: ClipGeometry) -> list[tuple[str, int]]:
    """The k highest-scoring frames, at most one per clip length of a video.

    Ties (every video's worst frame scores exactly 1 after min-max) are broken by lower raw PSNR.
    An edge frame is replaced by the frame whose score it carries, and frames within one clip
    length of a chosen frame are skipped, so the figure shows k different moments rather than k
    copies of one.
    """
    span, first = geom.span, geom.first_scored
    cands = []
    for v, s in scores.items():
        last = first + len(s) - span
        for f in range(len(s)):
            cands.append((-float(s[f]), float(psnr[v][f]), v, min(max(f, first), last)))
    cands.sort()
    chosen: list[tuple[str, int]] = []
    for _, _, v, f in cands:
        if len(chosen) >= k:
            break
        if any(v == cv and abs(f - cf) < span for cv, cf in chosen):
            continue
        chosen.append((v, f))
    return chosen


def _scores_csv(labels: dict[str, np.ndarray], psnr: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "frame", "psnr", "score", "label"])
    for v in labels:
        for f, (p, s, y) in enumerate(zip(psnr[v], scores[v], labels[v])):
            w.writerow([v, f, f"{p:.4f}", f"{s:.6f}", int(y)])
    return buf.getvalue()


def _roc_csv(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray) -> str:
    lines = ["fpr,tpr,threshold"]
    lines += [f"{a:.6f},{b:.6f},{t:.6f}" if np.isfinite(t) else f"{a:.6f},{b:.6f},inf" for a, b, t in zip(fpr, tpr, thr)]
    return "\n".join(lines) + "\n"


def _evaluate(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
              out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the test split of `store` with `model` (a path or MLflow URI); write and return metrics."""
    model_ref = str(model) if model is not None else str(Path(cfg.train.out) / "model.pt")
    if model is None and not Path(model_ref).is_file():
        raise DataError(f"{model_ref}: model file not found (run `pseudovad train` first or pass --model)")
    out = Path(out or cfg.evaluate.out)
    fs = store if isinstance(store, FrameStore) else FrameStore(store or cfg.data.store)
    only = list(videos or cfg.evaluate.videos or []) or None
    try:
        entries = fs.videos("testing", only)
    except DataError as e:
        known = {x.id for x in fs.videos("testing")}
        if only and any(v.isdigit() and v not in known and any(k.lstrip("0") == v.lstrip("0") for k in known) for v in only):
            raise DataError(f"{e} (YAML reads 01 as the number 1: quote video ids, e.g. "
                            "-p 'evaluate.videos=[\"01\"]', or use --videos 01)") from None
        raise
    if not entries:
        raise DataError(f"{fs.root}: no test videos in the frame store")
    labels = {e.id: fs.labels(e).astype(np.int64) for e in entries}
    device = resolve_device(cfg.device)
    net, meta = load_model(model_ref, device)

    psnr = score_videos(net, meta, fs, entries, device, cfg.evaluate.batch_size, progress)
    m = metrics_mod.summarize(labels, psnr)
    scores = {v: anomaly_scores(psnr[v]) for v in labels}
    fpr, tpr, thr = metrics_mod.roc(labels, scores)

    result: dict[str, Any] = {
        **{k: m[k] for k in ("auc_micro", "auc_macro", "auc_raw", "eer", "eer_threshold", "frames",
                             "anomalous_frames", "videos", "macro_videos", "macro_excluded", "constant_videos")},
        **describe_model(meta.get("config", {})),
        "dataset": cfg.data.name,
        "model": model_ref,
        "fingerprint": fs.fingerprint("testing", only),
        "train_fingerprint": meta.get("train_fingerprint"),
        "psnr": PSNR_CONVENTION,
        "video_auc": m["video_auc"],
    }

    write_text(out / "scores.csv", _scores_csv(labels, psnr, scores))
    write_text(out / "roc.csv", _roc_csv(fpr, tpr, thr))
    with atomic_dir(out / "plots") as pdir:
        title = f"{result['method']} · {result['variant']} on {result['dataset']}"
        plots.roc_plot(fpr, tpr, m["auc_micro"], pdir / "roc.png", title, m["eer"])
        for e in entries:
            plots.timeline_plot(e.id, scores[e.id], labels[e.id], pdir / f"timeline_{_safe(e.id)}.png",
                                m["video_auc"][e.id])
        if cfg.evaluate.top_k > 0:
            by_id = {e.id: e for e in entries}
            items = []
            for v, f in top_frames(psnr, scores, cfg.evaluate.top_k, ClipGeometry.from_meta(meta)):
                inp, pred = frame_views(net, meta, fs.array(by_id[v]), f, device)
                items.append({"video": v, "frame": f, "score": float(scores[v][f]), "psnr": float(psnr[v][f]),
                              "label": int(labels[v][f]), "input": inp, "pred": pred})
            plots.topk_plot(items, pdir / "topk.png")
    write_json(out / "metrics.json", result)
    return result


# --- MLflow tracking (pseudovad.tracking; every call is a no-op when tracking.enabled is false) ---
def run(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
        out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the test split of `store` with `model` (a path or MLflow URI); write and return metrics.

    Inside an MLflow run: params, the AUCs / EER, the evaluation-set fingerprint and the model
    reference as tags, metrics.json, roc.csv and plots/ as artifacts.
    """
    from pseudovad import tracking

    if str(model or "").startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        tracking.configure(cfg)  # resolve the model on the configured server even with tracking off
    with tracking.run(cfg, "evaluate", tags={"model": model}):
        result = _evaluate(cfg, model, store, out, videos, progress)
        tracking.set_tags({"data.fingerprint": result["fingerprint"], "model": result["model"],
                           "train_fingerprint": result.get("train_fingerprint")})
        tracking.log_metrics({k: result.get(k) for k in ("auc_micro", "auc_macro", "auc_raw", "eer", "frames",
                                                         "anomalous_frames", "videos")})
        folder = Path(out or cfg.evaluate.out)
        for name in ("metrics.json", "roc.csv"):
            tracking.log_artifacts(folder / name)
        if (folder / "plots").is_dir():
            tracking.log_artifacts(folder / "plots", "plots")
    return result
# --- end MLflow tracking ---------------------------------------------------------------------------


def add_arguments(p) -> None:
    p.add_argument("--model", help="model.pt path or MLflow URI models:/NAME@ALIAS, runs:/… "
                                   "(default: <train.out>/model.pt)")
    p.add_argument("--store", help="frame store with the test split (default: data.store)")
    p.add_argument("--out", help="output folder (default: evaluate.out)")
    p.add_argument("--videos", nargs="+", metavar="ID", help="only these test videos (default: evaluate.videos, else all)")


def main(cfg: Config, args) -> int:
    r = run(cfg, args.model, args.store, args.out, args.videos, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    macro = "n/a" if r["auc_macro"] is None else f"{r['auc_macro']:.4f}"
    print(f"evaluate: micro AUC {r['auc_micro']:.4f} (macro {macro} over {r['macro_videos']}/{r['videos']} videos, "
          f"raw {r['auc_raw']:.4f}, EER {r['eer']:.4f}) on {r['frames']} frames "
          f"({r['anomalous_frames']} anomalous) → {args.out or cfg.evaluate.out}")
    return 0
