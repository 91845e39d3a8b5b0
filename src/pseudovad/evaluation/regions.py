"""The region score: a frame's PSNR in its worst-reconstructed local window.

Whole-frame PSNR averages the error over every pixel, so a cyclist covering ~2% of a Ped2 frame
moves it little. The region score takes the squared-error map of the scored frame, averages it
over windows of (H / rows) × (W / cols) pixels that overlap by half (stride half a window, so an
object on a cell border still falls inside one window), and keeps the lowest window PSNR. It is
an opt-in score beside the papers' frame PSNR (`evaluate.score: region`), scored and normalised
the same way afterwards (per-video min-max, 1 − normalised).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as Fn

from pseudovad.evaluation.psnr import psnr_from_mse


def window_shape(size: tuple[int, int], grid: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((window h, w), (stride h, w)) of a rows × cols grid on an H × W frame, windows overlapping by
    half; a side that does not split evenly rounds the window down (at least 1 pixel)."""
    (h, w), (rows, cols) = size, grid
    if rows < 1 or cols < 1 or rows > h or cols > w:
        raise ValueError(f"region grid {list(grid)} must be between [1, 1] and the frame size {list(size)}")
    kh, kw = max(1, h // rows), max(1, w // cols)
    return (kh, kw), (max(1, kh // 2), max(1, kw // 2))


def region_psnr(error: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Minimum window PSNR (dB, peak 1) of squared-error maps in [0, 1] units.

    `error`: (H, W) for one frame or (B, H, W) for a batch; returns a float64 array of shape () or (B,).
    """
    e = torch.as_tensor(error, dtype=torch.float32)
    single = e.ndim == 2
    if single:
        e = e.unsqueeze(0)
    if e.ndim != 3:
        raise ValueError(f"error maps must be (H, W) or (B, H, W), got shape {tuple(e.shape)}")
    kernel, stride = window_shape((e.shape[1], e.shape[2]), grid)
    mse = Fn.avg_pool2d(e.unsqueeze(1), kernel, stride).flatten(1).amax(dim=1)   # worst window's MSE
    out = psnr_from_mse(mse).double().numpy()
    return out[0] if single else out
