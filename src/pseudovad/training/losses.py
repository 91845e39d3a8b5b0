"""Losses of MAE-NCT's future-frame prediction (Liu et al. 2018 intensity + gradient terms) and
the normalcy-consistency KL.

All are means, so their scale does not depend on frame size, batch or token count, and the
λ weights mean the same at 32×32 and at 224×224. Computed in float32 even under bf16 autocast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fn


def intensity_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_int: mean squared difference over every pixel (the squared L2 norm, averaged)."""
    return (pred.float() - target.float()).pow(2).mean()


def gradient_difference_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_gd: mean L1 distance between the absolute spatial gradients of prediction and target.

    Per Liu et al. 2018: ‖|I_i,j − I_i−1,j| − |Î_i,j − Î_i−1,j|‖₁ + the same along j; each term is
    averaged over the pixel pairs it is defined on (no padding), then the two are added. Sharp
    edges that the intensity loss alone would blur are penalised where they are missing.
    """
    p, t = pred.float(), target.float()
    dy = ((p[..., 1:, :] - p[..., :-1, :]).abs() - (t[..., 1:, :] - t[..., :-1, :]).abs()).abs().mean()
    dx = ((p[..., :, 1:] - p[..., :, :-1]).abs() - (t[..., :, 1:] - t[..., :, :-1]).abs()).abs().mean()
    return dx + dy


def prediction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_int + L_gd, the per-branch term of MAE-NCT's loss."""
    return intensity_loss(pred, target) + gradient_difference_loss(pred, target)


def symmetric_kl(f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
    """½(KL(p_a‖p_b) + KL(p_b‖p_a)) with p = softmax over the FEATURE dim of each token.

    Features (B, N, D): each token's D-dim feature becomes a distribution over its channels
    (the paper does not say which dimension; per token is the natural reading and keeps the
    consistency local, so masked tokens are pulled towards their unmasked counterparts).
    KL is summed over D and averaged over the B·N tokens. Gradients flow into both arguments.
    """
    la = Fn.log_softmax(f_a.float(), dim=-1)
    lb = Fn.log_softmax(f_b.float(), dim=-1)
    kl_ab = (la.exp() * (la - lb)).sum(-1)
    kl_ba = (lb.exp() * (lb - la)).sum(-1)
    return 0.5 * (kl_ab + kl_ba).mean()
