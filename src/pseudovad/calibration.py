"""PSNR → anomaly score on unlabelled footage, from statistics of normal validation footage.

The benchmarks min-max normalise PSNR within each test video, which needs the whole video and
its extremes: fine offline, meaningless on a live camera (the first minute sets the scale; a video
with no anomaly still gets a frame scored 1). For new footage `score` instead measures each frame
against the PSNR the model reaches on *normal* held-out footage of the training scenes, stored with
the model by `train` as `meta["calibration"]`:

    {"source": "validation", "n": 412, "psnr_mean": .., "psnr_std": ..,
     "psnr_min": .., "psnr_q001": .., "psnr_q01": .., "psnr_q05": .., "psnr_median": ..,
     "psnr_q95": .., "psnr_max": ..}

The calibrated score is the estimated share of normal frames that the model reconstructs *better*
than this one: score = 1 − F(psnr), F the normal PSNR distribution, interpolated linearly between
the stored quantiles (min ↦ 0, q001 ↦ 0.001, …, max ↦ 1). So 0.99 means "worse than 99 % of
normal validation frames", and a threshold t flags about (1 − t) of normal footage by construction:
the default threshold 0.99 is a 1 % false-alarm rate on footage like the validation set. Frames
below the lowest normal PSNR score 1, above the highest 0. Valid for the cameras/scenes the model
was trained on; a new scene shifts PSNR and needs its own calibration (or min-max, offline).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pseudovad.errors import DataError

# (CDF level, calibration key): the quantiles `calibrate` stores and `to_score` interpolates.
LEVELS: tuple[tuple[float, str], ...] = (
    (0.0, "psnr_min"), (0.001, "psnr_q001"), (0.01, "psnr_q01"), (0.05, "psnr_q05"),
    (0.5, "psnr_median"), (0.95, "psnr_q95"), (1.0, "psnr_max"),
)
DEFAULT_THRESHOLD = 0.99


def calibrate(psnr: np.ndarray, source: str = "validation") -> dict[str, Any] | None:
    """The calibration dict (format above) of per-frame PSNRs on normal footage; None if empty."""
    p = np.asarray(psnr, dtype=np.float64)
    p = p[np.isfinite(p)]
    if p.size == 0:
        return None
    out: dict[str, Any] = {"source": source, "n": int(p.size), "psnr_mean": float(p.mean()),
                           "psnr_std": float(p.std())}
    qs = np.quantile(p, [lvl for lvl, _ in LEVELS])
    out.update({key: float(q) for (_, key), q in zip(LEVELS, qs)})
    return out


def usable(calib: Any) -> bool:
    """Whether `calib` holds every quantile `to_score` needs (a model may store only part of it)."""
    return isinstance(calib, dict) and all(isinstance(calib.get(k), (int, float)) for _, k in LEVELS)


def check(calib: Any, where: str = "model") -> dict[str, Any]:
    """The calibration, or a DataError naming what is missing."""
    if not isinstance(calib, dict):
        raise DataError(f"{where}: no PSNR calibration stored with the model (train it again, or score with "
                        "-p score.normalization=minmax)")
    missing = [k for _, k in LEVELS if not isinstance(calib.get(k), (int, float))]
    if missing:
        raise DataError(f"{where}: calibration lacks {', '.join(missing)} (train it again, or score with "
                        "-p score.normalization=minmax)")
    return calib


def _knots(calib: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(PSNR, CDF level) knots, strictly increasing in PSNR (ties collapse to their highest level)."""
    xs, ys = [], []
    for level, key in LEVELS:
        x = float(calib[key])
        if xs and x <= xs[-1]:
            ys[-1] = level
            continue
        xs.append(x)
        ys.append(level)
    return np.asarray(xs), np.asarray(ys)


def to_score(psnr: np.ndarray | float, calib: dict[str, Any]) -> np.ndarray:
    """1 − F_normal(psnr) in [0, 1]: higher = less like normal footage."""
    xs, ys = _knots(calib)
    p = np.asarray(psnr, dtype=np.float64)
    if xs.size == 1:  # all normal frames had the same PSNR: below it anomalous, at or above normal
        return np.where(p < xs[0], 1.0, 0.0)
    return 1.0 - np.interp(p, xs, ys, left=0.0, right=1.0)


def minmax_scores(psnr: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    """The benchmarks' per-video score 1 − (psnr − lo) / (hi − lo); 0.5 when the video is constant."""
    p = np.asarray(psnr, dtype=np.float64)
    if not hi > lo:
        return np.full_like(p, 0.5)
    return 1.0 - (p - lo) / (hi - lo)
