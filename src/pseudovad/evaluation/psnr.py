"""Per-frame PSNR, the anomaly score of reconstruction / prediction methods.

Range convention (the one ano_pred, MNAD and the LTGPA / MAE-NCT code bases use): both frames are
mapped to [0, 1] first and

    PSNR = 10 · log10(peak² / MSE),  peak = 1,  MSE = mean over pixels and channels of one frame.

For [-1, 1] ("tanh") models the mapping is x → (x + 1) / 2, so this equals PSNR computed on the
[-1, 1] data with peak 2. Some code computes 10·log10(1 / MSE) directly on [-1, 1] data (peak 1
on a range of width 2); that is lower by exactly 10·log10(4) ≈ 6.02 dB on every frame. A constant
shift changes neither the per-video min-max normalised score nor the ranking of raw PSNR, so every
AUC reported here is the same under either convention; only the PSNR values in scores.csv differ.
"""
from __future__ import annotations

import math

import torch

# This convention's PSNR minus that of "peak 1 on [-1, 1] data": 10·log10(4) ≈ 6.02 dB.
PEAK_ONE_ON_TANH_OFFSET_DB = 10.0 * math.log10(4.0)

# A perfect reconstruction has MSE 0 and infinite PSNR; clamping keeps scores finite (100 dB)
# so min-max normalisation and AUC never see inf.
MSE_FLOOR = 1e-10


def to_unit(x: torch.Tensor, value_range: str) -> torch.Tensor:
    """Model range → [0, 1], the range PSNR is computed in."""
    if value_range == "tanh":
        return (x + 1.0) / 2.0
    if value_range == "unit":
        return x
    raise ValueError(f"unknown value range {value_range!r} (expected 'tanh' or 'unit')")


def frame_mse(pred: torch.Tensor, target: torch.Tensor, value_range: str = "tanh") -> torch.Tensor:
    """MSE per frame in [0, 1] units for (B, C, H, W) batches → (B,)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    diff = to_unit(pred.float(), value_range) - to_unit(target.float(), value_range)
    return diff.pow(2).flatten(1).mean(dim=1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def frame_psnr(pred: torch.Tensor, target: torch.Tensor, value_range: str = "tanh") -> torch.Tensor:
    """PSNR in dB per frame of (B, C, H, W) batches → (B,), peak 1 on [0, 1] (see module doc)."""
    return psnr_from_mse(frame_mse(pred, target, value_range))

