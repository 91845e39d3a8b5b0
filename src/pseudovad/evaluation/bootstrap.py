"""Bootstrap confidence intervals over test videos.

A Ped2 AUC comes from 12 videos; how much it would move on other footage of the same kind is a
property of those videos, not of the frames within them (neighbouring frames are nearly copies).
So the resampling unit is the video: draw as many videos as there are, with replacement,
recompute the statistic on the draw (pooled frames for a micro AUC, the mean over the drawn
videos for a macro AUC); the 2.5th and 97.5th percentiles of `n` draws are the 95% interval.
A draw on which the statistic is undefined (all its frames one class) is redrawn. Every AUC of
one evaluation uses the same draws (one seed), so the intervals are comparable and
metrics.json is reproducible.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from pseudovad.errors import DataError

DEFAULT_RESAMPLES = 1000
Statistic = Callable[[np.ndarray], "float | None"]   # indices of the drawn videos → value, None: undefined


def draws(n_videos: int, n: int, seed: int = 0) -> np.ndarray:
    """(n, n_videos) video indices, each row one resample with replacement."""
    return np.random.default_rng(seed).integers(0, n_videos, size=(n, n_videos))


def interval(statistic: Statistic, n_videos: int, n: int = DEFAULT_RESAMPLES, seed: int = 0,
             level: float = 0.95) -> tuple[float, float]:
    """(low, high) percentile interval of `statistic` over `n` defined resamples of the videos."""
    if n_videos < 1:
        raise DataError("bootstrap: no test videos")
    values: list[float] = []
    rounds = 0
    while len(values) < n:
        for pick in draws(n_videos, n, seed + rounds):
            v = statistic(pick)
            if v is not None:
                values.append(float(v))
                if len(values) == n:
                    break
        rounds += 1
        if rounds > 50 and len(values) < n:
            raise DataError(f"bootstrap: only {len(values)} of {50 * n} resamples were defined")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def pooled_auc(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> Statistic:
    """Micro AUC of the drawn videos' frames pooled (None when a draw holds one class)."""
    y = [np.asarray(a).ravel() for a in labels]
    s = [np.asarray(a, dtype=np.float64).ravel() for a in scores]
    if not any(a.size and a.max() == 1 for a in y) or not any(a.size and a.min() == 0 for a in y):
        raise DataError("bootstrap: the test videos hold only one class of frames; no AUC to resample")

    def stat(pick: np.ndarray) -> float | None:
        yy = np.concatenate([y[i] for i in pick])
        if yy.min() == yy.max():
            return None
        return roc_auc_score(yy, np.concatenate([s[i] for i in pick]))
    return stat


def mean_of(values: Sequence[float | None]) -> Statistic:
    """The mean over the drawn videos of a per-video value (macro AUC); videos without one
    (single-class) are left out, as the point estimate leaves them out; None when none is left."""
    vals = [None if v is None else float(v) for v in values]
    if all(v is None for v in vals):
        raise DataError("bootstrap: no video has a value to average")

    def stat(pick: np.ndarray) -> float | None:
        got = [vals[i] for i in pick if vals[i] is not None]
        return float(np.mean(got)) if got else None
    return stat


def binned_auc(pos: Sequence[np.ndarray], neg: Sequence[np.ndarray], edges: np.ndarray) -> Statistic:
    """Pooled AUC from per-video histograms of positive / negative scores over shared `edges`.

    For statistics over millions of items (pixels): a draw sums the drawn videos' histograms and
    sklearn's weighted ROC AUC runs on one point per bin, so a resample costs O(bins), not
    O(pixels). Scores within one bin count as tied, so the value agrees with the exact AUC to
    within the share of pairs that fall in one bin (≪ 0.1% with a few thousand quantile bins).
    """
    centres = np.arange(len(edges) - 1, dtype=np.float64)
    P = np.stack([np.asarray(p, dtype=np.float64) for p in pos])
    N = np.stack([np.asarray(q, dtype=np.float64) for q in neg])

    def stat(pick: np.ndarray) -> float | None:
        p, q = P[pick].sum(0), N[pick].sum(0)
        if p.sum() == 0 or q.sum() == 0:
            return None
        keep_p, keep_q = p > 0, q > 0
        y = np.r_[np.ones(keep_p.sum()), np.zeros(keep_q.sum())]
        s = np.r_[centres[keep_p], centres[keep_q]]
        return roc_auc_score(y, s, sample_weight=np.r_[p[keep_p], q[keep_q]])
    return stat


def per_video(mapping: Mapping[str, np.ndarray], ids: Sequence[str]) -> list[np.ndarray]:
    """The arrays of `mapping` in the order of `ids` (what the statistics index into)."""
    return [mapping[v] for v in ids]
