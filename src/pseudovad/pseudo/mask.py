"""MAE-NCT's pseudo anomalies: patch-aligned random masks, as in SimMIM.

The frame is cut into mask patches of `mask_patch`×`mask_patch` pixels (32 by default), each
covering (mask_patch / patch_size)² ViT patches. Exactly k = round(ratio · n_mask_patches)
mask patches are chosen per sample, independently per sample, from the caller's generator, so
the share of masked area is the configured one on every sample (not just on average) and a
resumed run draws the same masks.
"""
from __future__ import annotations

import math

import torch


def masked_count(n_mask_patches: int, ratio: float) -> int:
    """round(ratio · n), half up, and at least one (a pseudo anomaly must differ from its input)."""
    return max(1, min(n_mask_patches, math.floor(ratio * n_mask_patches + 0.5)))


def random_patch_mask(batch: int, size: tuple[int, int] | list[int], patch_size: int, mask_patch: int,
                      ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Bool (batch, N) over ViT patches in row-major order; True = replaced by the mask token."""
    h, w = size
    if mask_patch % patch_size or h % mask_patch or w % mask_patch:
        raise ValueError(f"mask patch {mask_patch} must be a multiple of the ViT patch {patch_size} "
                         f"and divide the frame size {h}×{w}")
    mh, mw = h // mask_patch, w // mask_patch
    n = mh * mw
    k = masked_count(n, ratio)
    order = torch.rand(batch, n, generator=gen, device=gen.device).argsort(dim=1)
    coarse = torch.zeros(batch, n, dtype=torch.bool, device=gen.device)
    coarse.scatter_(1, order[:, :k], True)
    s = mask_patch // patch_size
    fine = coarse.view(batch, mh, 1, mw, 1).expand(batch, mh, s, mw, s)
    return fine.reshape(batch, mh * s * mw * s)
