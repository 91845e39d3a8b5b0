"""The fused score: the model's PSNR and the motion residual, each standardised on normal footage.

Beyond the papers, opt-in (`evaluate.score: fused`; metrics.json always carries `fused_auc_*`
when the model has the statistics). A reconstruction or prediction model and the training-free
temporal residual (`evaluation.floor`) fail on different frames: on UCSD Ped2 the residual sees
fast movers a small model reconstructs well, the model sees appearance a frame difference misses.
Averaging their per-video min-max scores lands between the two (the weaker pulls it down);
standardising each on the *normal validation footage the model already calibrates on* puts both
on the scale "how unusual for this camera", with no labels:

    z_model  = (μ_model  − PSNR_model)  / σ_model      (train's calibration: meta["calibration"])
    z_motion = (μ_motion − PSNR_residual) / σ_motion   (the same validation frames: `motion`)
    fused    = z_model + z_motion

`train` stores μ_motion, σ_motion beside the model's own statistics (`calibration.motion`), on
exactly the validation frames its clips score. For the protocol the fused value is handed on as a
PSNR-like number (−fused: higher = more normal), so per-video normalisation, edges and every AUC
follow the frame score's rules unchanged.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from pseudovad.errors import DataError
from pseudovad.evaluation import floor

KIND = floor.RESIDUAL


def motion_calibration(videos: Iterable[tuple[np.ndarray, range]]) -> dict[str, Any] | None:
    """Mean and std of the temporal-residual PSNR over the given frames: (a video's frames, the
    indices of its frames that count) per video, e.g. the frames validation clips score. None
    when no frame counts."""
    values = [floor.frame_psnr(frames)[KIND][np.asarray(idx, dtype=np.int64)] for frames, idx in videos if len(idx)]
    if not values:
        return None
    p = np.concatenate(values)
    return {"kind": KIND, "n": int(p.size), "psnr_mean": float(p.mean()), "psnr_std": float(p.std())}


def available(calib: Any) -> bool:
    """Whether a model's calibration holds both halves of the fused score."""
    return (isinstance(calib, dict) and isinstance(calib.get("motion"), dict)
            and all(isinstance(calib.get(k), (int, float)) for k in ("psnr_mean", "psnr_std")))


def check(calib: Any, where: str = "model") -> dict[str, Any]:
    """The calibration, or a DataError saying why the fused score cannot be computed."""
    if not available(calib):
        raise DataError(f"{where}: no motion statistics stored with the model, which evaluate.score=fused "
                        "needs (train it again with this version, or use evaluate.score=frame)")
    return calib


def _z(psnr: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (mean - np.asarray(psnr, dtype=np.float64)) / max(float(std), 1e-6)


def fused_psnr(model_psnr: np.ndarray, motion_psnr: np.ndarray, calib: dict[str, Any]) -> np.ndarray:
    """−(z_model + z_motion) per frame: a PSNR-like score (higher = more normal) for the protocol."""
    m = calib["motion"]
    return -(_z(model_psnr, calib["psnr_mean"], calib["psnr_std"]) + _z(motion_psnr, m["psnr_mean"], m["psnr_std"]))
