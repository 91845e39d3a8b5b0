"""Per-video min-max normalisation: the benchmarks' anomaly score.

Within each test video, PSNR is rescaled to [0, 1] and the anomaly score is 1 − normalised PSNR,
so the worst-reconstructed frame of every video scores 1 and the best scores 0. This removes
per-scene differences in how well a model reconstructs (lighting, crowd density) before the
frames of all videos are pooled into one ROC. It also uses the video's own extremes, i.e. it is
an offline protocol: the `score` stage uses a calibration on normal footage instead.

A video whose PSNR is the same on every frame has no within-video ranking at all; its frames get
the midpoint 0.5 (neither the most normal nor the most anomalous) rather than a division by zero.
"""
from __future__ import annotations

import numpy as np

CONSTANT_VIDEO_SCORE = 0.5


def normalized_psnr(psnr: np.ndarray) -> np.ndarray:
    """(psnr − min) / (max − min) within one video; constant video → 0.5 everywhere."""
    p = np.asarray(psnr, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    lo, hi = float(p.min()), float(p.max())
    if not hi > lo:
        return np.full_like(p, 1.0 - CONSTANT_VIDEO_SCORE)
    return (p - lo) / (hi - lo)


def anomaly_scores(psnr: np.ndarray) -> np.ndarray:
    """1 − normalised PSNR: 1 on the video's worst-reconstructed frame, 0 on its best."""
    return 1.0 - normalized_psnr(psnr)


def is_constant(psnr: np.ndarray) -> bool:
    p = np.asarray(psnr, dtype=np.float64)
    return p.size > 0 and not float(p.max()) > float(p.min())
