"""A trained network as scoring runs it: a frozen copy with BatchNorm folded into its convolutions,
in the memory format scoring is fastest in.

In eval mode a BatchNorm after a convolution is a fixed per-channel scale and shift, so it can be
folded into the convolution's weights and bias (torch.nn.utils.fusion): one pass over the
activations fewer per layer, which at the full-resolution layers of LTGPA's models is a fifth of a
forward pass on a CPU (benchmarks/infer_speed.py). The copy leaves the trained model alone:
a live model (a tune trial's, train's validation) goes on training, and model.pt keeps its
layers. The ViT (MAE-NCT) has no BatchNorm; for it the copy only changes the memory format.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONV = (nn.Conv2d, nn.Conv3d)
_TRANSPOSED = (nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm2d, nn.BatchNorm3d)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution in an nn.Sequential into it (the
    BatchNorm becomes an nn.Identity, so layer indices stay); in place, on a model in eval mode.
    Returns how many were folded."""
    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode (running statistics)")
    folded = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            conv, bn = seq[i - 1], seq[i]
            if isinstance(bn, _BN) and bn.track_running_stats and isinstance(conv, _CONV + _TRANSPOSED):
                seq[i - 1] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, _TRANSPOSED))
                seq[i] = nn.Identity()
                folded += 1
    return folded


def inference_copy(model: nn.Module, memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """A frozen eval-mode copy of `model` (unwrapped from torch.compile) with BatchNorm folded
    (`fold_batchnorm`), its weights in `memory_format`."""
    model = getattr(model, "_orig_mod", model)
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    fold_batchnorm(net)
    if memory_format is not torch.contiguous_format:
        net = net.to(memory_format=memory_format)
    return net
