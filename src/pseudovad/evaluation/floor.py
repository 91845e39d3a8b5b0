"""The training-free floor: what a detector that learns nothing scores on the same frames.

Two per-frame scores from the frames alone, at the resolution the model sees (its frame store),
frames in [0, 1] (uint8 / 255), MSE over the pixels and channels of a frame:
- frame difference (`framediff`): the mean of a frame's MSE to its previous and to its next frame;
- temporal residual (`residual`): the MSE of a frame to the mean of its previous and next frames,
  i.e. what is left after linear motion (half the second temporal difference).
Each becomes a PSNR (peak 1, `evaluation.psnr`) and is then treated exactly like a model's PSNR:
min-max per video over the frames the AUC counts, anomaly score = 1 − normalised PSNR, one ROC
over those frames (`evaluation.protocol` passes the model's counted frames). `auc_floor` is the
higher of the two AUCs: a model that does not beat it has learned nothing a frame difference
does not already know.

Why both neighbours and not "the previous frame": a repeated frame. UCSD Ped1's test videos 03,
10, 12 and 17 each hold one frame that is an exact copy of the one before; its MSE to the previous
frame is 0, its PSNR the 100 dB cap, and per-video min-max then squeezes every other frame of that
video next to score 1: the pooled AUC falls from ~70 to ~58 at 64×96. A single repeat still
differs from its other neighbour, so both definitions here stay finite.

Where a score is undefined — a video's first and last frames (one neighbour missing), and a frame
whose score is exactly 0 (it equals its neighbours: frozen footage carries no information) — the
frame takes the value of the nearest frame where it is defined (the earlier one on a tie), the
rule the padded protocol applies to a model's edge frames; for the residual at a video's last
frame this is exactly half the second difference ending there. Under the official protocol
LTGPA's counted frames all have both neighbours; MAE-NCT counts each video's last frame, which
takes its previous frame's value.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from pseudovad.errors import DataError

FRAMEDIFF, RESIDUAL = "framediff", "residual"
KINDS = (FRAMEDIFF, RESIDUAL)
NAMES = {FRAMEDIFF: "frame difference", RESIDUAL: "temporal residual"}
MSE_FLOOR = 1e-10   # as `evaluation.psnr`: a zero MSE is capped at 100 dB


def _unit(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.dtype == np.uint8:
        return f.astype(np.float32) / 255.0
    return f.astype(np.float32)


def _mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.square(a - b, dtype=np.float32).reshape(len(a), -1).mean(axis=1, dtype=np.float64)


def fill_nearest(values: np.ndarray) -> np.ndarray:
    """NaNs replaced by the nearest finite value (the earlier one on a tie); all NaN → zeros."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(v))
    if ok.size == 0:
        return np.zeros_like(v)
    idx = np.arange(v.size)
    pos = np.searchsorted(ok, idx)
    right = ok[np.minimum(pos, ok.size - 1)]
    left = ok[np.maximum(pos - 1, 0)]
    return v[np.where(idx - left <= right - idx, left, right)]


def frame_mse(frames: np.ndarray) -> dict[str, np.ndarray]:
    """{kind: per-frame MSE} of one video's frames (T, H, W[, C]), uint8 or [0, 1] floats; every
    frame has a value (the module doc's rule for undefined frames)."""
    f = _unit(frames)
    n = len(f)
    d = _mse(f[1:], f[:-1]) if n > 1 else np.zeros(0)          # MSE of frame t+1 to frame t
    out = {k: np.full(n, np.nan) for k in KINDS}
    if n > 2:
        out[FRAMEDIFF][1:-1] = (d[:-1] + d[1:]) / 2.0
        out[RESIDUAL][1:-1] = _mse(f[1:-1], (f[:-2] + f[2:]) / 2.0)
    return {k: fill_nearest(np.where(v > 0, v, np.nan)) for k, v in out.items()}


def frame_psnr(frames: np.ndarray) -> dict[str, np.ndarray]:
    """{kind: per-frame PSNR (dB, peak 1)} of one video: what the floor scores like a model's PSNR."""
    return {k: 10.0 * np.log10(1.0 / np.maximum(v, MSE_FLOOR)) for k, v in frame_mse(frames).items()}


def aucs(labels: Mapping[str, np.ndarray], psnr: Mapping[str, Mapping[str, np.ndarray]],
         counted: Mapping[str, slice] | None = None) -> dict[str, float]:
    """`auc_floor_framediff`, `auc_floor_residual` and `auc_floor` (the higher): micro AUC of each
    score over the `counted` frames of each video (all frames when None), normalised per video
    over those frames. `psnr`: {kind: {video: per-frame PSNR}} (`frame_psnr` per video)."""
    from pseudovad.evaluation.metrics import frame_auc
    from pseudovad.evaluation.normalize import anomaly_scores

    out: dict[str, float] = {}
    for k in KINDS:
        per = psnr[k]
        missing = [v for v in labels if v not in per]
        if missing:
            raise DataError(f"training-free floor: no frames of test video(s) {', '.join(missing)}")
        sl = {v: (counted or {}).get(v, slice(None)) for v in labels}
        out[f"auc_floor_{k}"] = frame_auc({v: np.asarray(labels[v])[sl[v]] for v in labels},
                                          {v: anomaly_scores(np.asarray(per[v])[sl[v]]) for v in labels})
    out["auc_floor"] = max(out[f"auc_floor_{k}"] for k in KINDS)
    return out


def scores(psnr: np.ndarray, counted: slice = slice(None)) -> np.ndarray:
    """A video's floor anomaly scores on every frame, normalised over its `counted` frames (what
    the AUC saw); frames outside them are clipped into [0, 1]."""
    from pseudovad.evaluation.normalize import normalized_psnr

    p = np.asarray(psnr, dtype=np.float64)
    c = p[counted]
    lo, hi = (float(c.min()), float(c.max())) if c.size else (0.0, 0.0)
    if not hi > lo:
        return 1.0 - normalized_psnr(np.full_like(p, lo))
    return np.clip(1.0 - (p - lo) / (hi - lo), 0.0, 1.0)
