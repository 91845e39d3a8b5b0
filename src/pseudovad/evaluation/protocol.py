"""The papers' evaluation protocol over a labelled test split, and the files it leaves behind.

PSNR of each stride-1 clip's scored frame against its reconstruction or prediction (frames in
[0, 1], peak 1; `evaluation.streaming`); edge frames take the nearest clip's score; PSNR min-max
normalised within each video, anomaly score = 1 − normalised PSNR; one ROC over all frames (micro
AUC), plus macro AUC, AUC of raw −PSNR and EER (`evaluation.metrics`). Beside the numbers:
scores.csv (video,frame,psnr,score,label), roc.csv (fpr,tpr,threshold) and plots/ (ROC, one
timeline per video, the top-k frames figure), every file written atomically.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import DataError
from pseudovad.evaluation import metrics as metrics_mod
from pseudovad.evaluation import plots
from pseudovad.evaluation.normalize import anomaly_scores
from pseudovad.evaluation.report import describe_model
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import atomic_dir, write_text
from pseudovad.geometry import ClipGeometry

PSNR_CONVENTION = "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)"
SUMMARY_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer", "eer_threshold", "frames", "anomalous_frames",
                "videos", "macro_videos", "macro_excluded", "constant_videos")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def select_videos(store: FrameStore, only: list[str] | None = None) -> list[VideoEntry]:
    """The store's test videos (`only` these ids, when given), with a hint for YAML's 01 → 1."""
    try:
        entries = store.videos("testing", only)
    except DataError as e:
        known = {x.id for x in store.videos("testing")}
        if only and any(v.isdigit() and v not in known and any(k.lstrip("0") == v.lstrip("0") for k in known) for v in only):
            raise DataError(f"{e} (YAML reads 01 as the number 1: quote video ids, e.g. "
                            "-p 'evaluate.videos=[\"01\"]', or use --videos 01)") from None
        raise
    if not entries:
        raise DataError(f"{store.root}: no test videos in the frame store")
    return entries


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


def scores_csv(labels: dict[str, np.ndarray], psnr: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video", "frame", "psnr", "score", "label"])
    for v in labels:
        for f, (p, s, y) in enumerate(zip(psnr[v], scores[v], labels[v])):
            w.writerow([v, f, f"{p:.4f}", f"{s:.6f}", int(y)])
    return buf.getvalue()


def roc_csv(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray) -> str:
    lines = ["fpr,tpr,threshold"]
    lines += [f"{a:.6f},{b:.6f},{t:.6f}" if np.isfinite(t) else f"{a:.6f},{b:.6f},inf" for a, b, t in zip(fpr, tpr, thr)]
    return "\n".join(lines) + "\n"


def evaluate(detector: Detector, store: FrameStore, entries: list[VideoEntry], out: Path, *, dataset: str,
             model_ref: str, fingerprint: str, top_k: int = 0, progress: bool = False) -> dict[str, Any]:
    """Score `entries` of `store`, write scores.csv, roc.csv and plots/ into `out`, return the metrics
    (what evaluate's metrics.json holds)."""
    labels = {e.id: store.labels(e).astype(np.int64) for e in entries}
    psnr = detector.score_videos(store, entries, progress)
    m = metrics_mod.summarize(labels, psnr)
    scores = {v: anomaly_scores(psnr[v]) for v in labels}
    fpr, tpr, thr = metrics_mod.roc(labels, scores)

    result: dict[str, Any] = {
        **{k: m[k] for k in SUMMARY_KEYS},
        **describe_model(detector.meta.get("config", {})),
        "dataset": dataset,
        "model": model_ref,
        "fingerprint": fingerprint,
        "train_fingerprint": detector.meta.get("train_fingerprint"),
        "psnr": PSNR_CONVENTION,
        "video_auc": m["video_auc"],
    }

    write_text(out / "scores.csv", scores_csv(labels, psnr, scores))
    write_text(out / "roc.csv", roc_csv(fpr, tpr, thr))
    with atomic_dir(out / "plots") as pdir:
        title = f"{result['method']} · {result['variant']} on {result['dataset']}"
        plots.roc_plot(fpr, tpr, m["auc_micro"], pdir / "roc.png", title, m["eer"])
        for e in entries:
            plots.timeline_plot(e.id, scores[e.id], labels[e.id], pdir / f"timeline_{_safe(e.id)}.png",
                                m["video_auc"][e.id])
        if top_k > 0:
            by_id = {e.id: e for e in entries}
            items = []
            for v, f in top_frames(psnr, scores, top_k, detector.geometry):
                inp, pred = detector.frame_views(store.array(by_id[v]), f)
                items.append({"video": v, "frame": f, "score": float(scores[v][f]), "psnr": float(psnr[v][f]),
                              "label": int(labels[v][f]), "input": inp, "pred": pred})
            plots.topk_plot(items, pdir / "topk.png")
    return result
