"""LTGPA's video models (paper Tables 3 and 4).

F: Conv3d encoder, widths 96/128/256/256, kernel 3, strides (1,2,2) then (2,2,2)×3, each followed
by BatchNorm3d + LeakyReLU(0.2); a mirrored ConvTranspose3d decoder ending in a 1-channel
ConvTranspose3d + Tanh, so a 16×256×256 clip in [-1, 1] comes back at the same shape.
G: the same pattern one level shallower (96/128/256) whose last layer is 2·tanh, so the noise
ΔX it outputs lies in [-2, 2] and can move any pixel of a [-1, 1] clip anywhere in range.
Widths are configurable (`model.ltgpa.width`, `g_width`) so a CPU profile can train in minutes.
"""
from __future__ import annotations

import torch
from torch import nn


def _strides(n: int) -> list[tuple[int, int, int]]:
    return [(1, 2, 2)] + [(2, 2, 2)] * (n - 1)


def _encoder(in_ch: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_ch
    for w, s in zip(widths, _strides(len(widths))):
        layers += [nn.Conv3d(c, w, 3, stride=s, padding=1, bias=False), nn.BatchNorm3d(w), nn.LeakyReLU(0.2, inplace=True)]
        c = w
    return nn.Sequential(*layers)


def _decoder(out_ch: int, widths: list[int]) -> nn.Sequential:
    """Mirror of the encoder: each ConvTranspose3d undoes one stride (output_padding = stride − 1)."""
    rev = list(reversed(widths))
    strides = list(reversed(_strides(len(widths))))
    layers: list[nn.Module] = []
    for i, s in enumerate(strides):
        c_in = rev[i]
        last = i == len(strides) - 1
        c_out = out_ch if last else rev[i + 1]
        op = tuple(x - 1 for x in s)
        layers.append(nn.ConvTranspose3d(c_in, c_out, 3, stride=s, padding=1, output_padding=op, bias=last))
        if not last:
            layers += [nn.BatchNorm3d(c_out), nn.LeakyReLU(0.2, inplace=True)]
    return nn.Sequential(*layers)


class VideoAutoencoder(nn.Module):
    """F: reconstructs a clip (B, C, T, H, W) in [-1, 1]."""

    value_range = "tanh"

    def __init__(self, channels: int = 1, width: list[int] | None = None):
        super().__init__()
        width = list(width or [96, 128, 256, 256])
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)
        self.out_act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.decoder(self.encoder(x)))


class VideoNoiseGenerator(nn.Module):
    """G: maps a normal clip to noise ΔX ∈ [-2, 2] of the same shape."""

    def __init__(self, channels: int = 1, width: list[int] | None = None):
        super().__init__()
        width = list(width or [96, 128, 256])
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.tanh(self.decoder(self.encoder(x)))
