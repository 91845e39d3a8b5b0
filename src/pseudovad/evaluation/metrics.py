"""Frame-level ROC AUC and EER (scikit-learn), the numbers the benchmarks report.

- micro AUC (`auc_micro`): one ROC over every test frame of every video, on per-video min-max
  normalised scores. This is "frame-level AUC" in the LTGPA and MAE-NCT papers (Table 1).
- macro AUC (`auc_macro`): the mean of per-video AUCs. A video whose frames are all normal or all
  anomalous (UCSD Ped2 video 08 is anomalous throughout) has no ROC; it is left out of the mean
  and counted in `macro_excluded`; `macro_videos` says how many videos the mean is over.
- raw AUC (`auc_raw`): one ROC over all frames with −PSNR as the score, no per-video
  normalisation: how well one threshold would work across scenes.
- EER: the error rate where the false positive rate equals the miss rate, on the micro ROC.

Scores are anomaly scores (higher = more anomalous); labels are 1 for anomalous frames.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from pseudovad.errors import DataError
from pseudovad.evaluation.normalize import anomaly_scores, is_constant

PerVideo = Mapping[str, np.ndarray]


def check_lengths(video: str, labels: np.ndarray, scores: np.ndarray) -> None:
    if len(labels) != len(scores):
        raise DataError(f"test video {video}: {len(labels)} frame labels but {len(scores)} frame scores")


def _pool(labels: PerVideo | np.ndarray | Sequence, scores: PerVideo | np.ndarray | Sequence
          ) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-video arrays (dicts keyed by video id) after checking each video's length."""
    if isinstance(labels, Mapping) or isinstance(scores, Mapping):
        if not (isinstance(labels, Mapping) and isinstance(scores, Mapping)):
            raise TypeError("labels and scores must both be per-video mappings or both arrays")
        missing = sorted(set(labels) ^ set(scores))
        if missing:
            raise DataError(f"test video(s) {', '.join(missing)}: present in only one of labels and scores")
        for v in labels:
            check_lengths(v, labels[v], scores[v])
        keys = list(labels)
        if not keys:
            raise DataError("no test frames to evaluate")
        return (np.concatenate([np.asarray(labels[k]).ravel() for k in keys]),
                np.concatenate([np.asarray(scores[k], dtype=np.float64).ravel() for k in keys]))
    y, s = np.asarray(labels).ravel(), np.asarray(scores, dtype=np.float64).ravel()
    check_lengths("(all)", y, s)
    return y, s


def _binary(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise DataError(f"frame labels must be 0/1, found {np.unique(y[bad])[:5].tolist()}")
    return y.astype(np.int64)


def _sk():
    """sklearn.metrics, imported at the first AUC: with scipy it takes seconds to load, which
    `score` and a command that refuses its params should not pay."""
    from sklearn import metrics

    return metrics


def _check_scores(s: np.ndarray) -> None:
    if not np.isfinite(s).all():
        raise DataError(f"{int((~np.isfinite(s)).sum())} frame scores are NaN or infinite")


def frame_auc(labels, scores) -> float:
    """ROC AUC over all frames pooled (per-video mappings are concatenated in their order)."""
    y, s = _pool(labels, scores)
    y = _binary(y)
    _check_scores(s)
    if y.min() == y.max():
        raise DataError(f"frame AUC needs normal and anomalous frames; all {len(y)} test frames are "
                        f"{'anomalous' if y[0] else 'normal'}")
    return float(_sk().roc_auc_score(y, s))


def video_aucs(labels: PerVideo, scores: PerVideo) -> dict[str, float | None]:
    """AUC of each video on its own; None for a video with a single class."""
    out: dict[str, float | None] = {}
    for v in labels:
        if v not in scores:
            raise DataError(f"test video {v}: labels but no scores")
        check_lengths(v, labels[v], scores[v])
        y = _binary(labels[v])
        out[v] = None if y.size == 0 or y.min() == y.max() else float(_sk().roc_auc_score(y, np.asarray(scores[v], float)))
    return out


def macro_auc(labels: PerVideo, scores: PerVideo) -> tuple[float | None, list[str], list[str]]:
    """(mean per-video AUC over videos with both classes, videos used, single-class videos left out)."""
    per = video_aucs(labels, scores)
    used = [v for v, a in per.items() if a is not None]
    excluded = [v for v, a in per.items() if a is None]
    mean = float(np.mean([per[v] for v in used])) if used else None
    return mean, used, excluded


def roc(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of the pooled ROC; thresholds[0] is +inf (nothing flagged)."""
    y, s = _pool(labels, scores)
    y = _binary(y)
    _check_scores(s)
    return _sk().roc_curve(y, s)


def thin_roc(fpr: Sequence[float], tpr: Sequence[float], thresholds: Sequence[float], points: int = 200
             ) -> tuple[list[float], list[float], list[float]]:
    """About `points` evenly spaced points of a ROC curve (the first and last always), with
    finite thresholds, for a UI that stores the curve as JSON (KFP's ClassificationMetrics).

    sklearn's first threshold is +inf (nothing flagged), which JSON cannot hold: the next float
    above the highest finite threshold flags nothing either.
    """
    rows = [(float(a), float(b), float(t)) for a, b, t in zip(fpr, tpr, thresholds)]
    if not rows:
        return [], [], []
    step = max(1, math.ceil(len(rows) / max(points, 2)))
    keep = rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else [])
    top = math.nextafter(max((t for _, _, t in rows if math.isfinite(t)), default=1.0), math.inf)
    return [r[0] for r in keep], [r[1] for r in keep], [r[2] if math.isfinite(r[2]) else top for r in keep]


def eer(labels, scores) -> tuple[float, float]:
    """(equal error rate, score threshold there), interpolated where FPR crosses 1 − TPR."""
    fpr, tpr, thr = roc(labels, scores)
    fnr = 1.0 - tpr
    d = fpr - fnr                      # rises from −1 (nothing flagged) to +1 (everything flagged)
    i = int(np.argmax(d >= 0))
    if i == 0 or d[i] == 0:
        t = thr[i] if np.isfinite(thr[i]) else thr[min(i + 1, len(thr) - 1)]
        return float((fpr[i] + fnr[i]) / 2.0), float(t)
    w = -d[i - 1] / (d[i] - d[i - 1])  # linear interpolation between the two ROC points
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t_prev = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    return float(rate), float(t_prev + w * (thr[i] - t_prev))


def summarize(labels: PerVideo, psnr: PerVideo) -> dict:
    """All frame-level metrics from per-video labels and PSNR (the protocol in the module doc)."""
    for v in labels:
        if v not in psnr:
            raise DataError(f"test video {v}: labels but no scores")
        check_lengths(v, labels[v], psnr[v])
    scores = {v: anomaly_scores(psnr[v]) for v in labels}
    raw = {v: -np.asarray(psnr[v], dtype=np.float64) for v in labels}
    macro, used, excluded = macro_auc(labels, scores)
    rate, threshold = eer(labels, scores)
    y, _ = _pool(labels, scores)
    return {
        "auc_micro": frame_auc(labels, scores),
        "auc_macro": macro,
        "auc_raw": frame_auc(labels, raw),
        "eer": rate,
        "eer_threshold": threshold,
        "frames": int(y.size),
        "anomalous_frames": int(y.sum()),
        "videos": len(labels),
        "macro_videos": len(used),
        "macro_excluded": excluded,
        "constant_videos": [v for v in labels if is_constant(psnr[v])],
        "video_auc": video_aucs(labels, scores),
    }
