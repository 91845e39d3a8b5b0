"""Bootstrap confidence intervals over test videos.

A Ped2 AUC comes from 12 videos; how much it would move on other footage of the same kind is a
property of those videos, not of the frames within them (neighbouring frames are nearly copies).
So the resampling unit is the video: draw 12 videos with replacement, pool their (already
per-video normalised) frame scores, recompute the AUC; the 2.5th and 97.5th percentiles of
`n` such draws are the 95% interval. A draw whose frames are all one class has no AUC and is
redrawn. The draws come from a fixed seed, so metrics.json is reproducible.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from pseudovad.errors import DataError

DEFAULT_RESAMPLES = 1000


def video_bootstrap(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
                    metric: Callable[[np.ndarray, np.ndarray], float], n: int = DEFAULT_RESAMPLES,
                    seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """(low, high) percentile interval of `metric(pooled labels, pooled scores)` over `n` resamples
    of the videos with replacement.

    `metric` gets 1-D arrays of the pooled frames of one resample. Raises DataError when no
    resample can have both classes (every video single-class and all of one class).
    """
    ids = list(labels)
    if not ids:
        raise DataError("bootstrap: no test videos")
    y = [np.asarray(labels[v]).ravel() for v in ids]
    s = [np.asarray(scores[v], dtype=np.float64).ravel() for v in ids]
    has = np.array([(yy.min() if yy.size else 1, yy.max() if yy.size else 0) for yy in y])
    if not (has[:, 0].min() == 0 and has[:, 1].max() == 1):
        raise DataError("bootstrap: the test videos hold only one class of frames; no AUC to resample")
    rng = np.random.default_rng(seed)
    values: list[float] = []
    tries = 0
    while len(values) < n:
        tries += 1
        if tries > 50 * n:
            raise DataError(f"bootstrap: only {len(values)} of {n} resamples had both classes")
        pick = rng.integers(0, len(ids), size=len(ids))
        yy = np.concatenate([y[i] for i in pick])
        if yy.min() == yy.max():
            continue
        values.append(float(metric(yy, np.concatenate([s[i] for i in pick]))))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
