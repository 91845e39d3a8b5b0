"""LTGPA's image models for one-class image data such as CIFAR-10 (paper Tables 5 and 6).

F: Conv2d 64/128/128/256, kernel 3, stride 2, BN + ReLU; decoder of ConvTranspose2d (kernel 4,
stride 2, padding 1) mirroring it, ending in a Sigmoid so images stay in [0, 1].
G: Conv2d 64/128/128, same pattern, ending in Tanh: noise in [-1, 1], which spans the whole
[0, 1] range when added to an image.
"""
from __future__ import annotations

import torch
from torch import nn


def _encoder(in_ch: int, widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_ch
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        c = w
    return nn.Sequential(*layers)


def _decoder(out_ch: int, widths: list[int]) -> nn.Sequential:
    rev = list(reversed(widths))
    layers: list[nn.Module] = []
    for i, c_in in enumerate(rev):
        last = i == len(rev) - 1
        c_out = out_ch if last else rev[i + 1]
        layers.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=last))
        if not last:
            layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ImageAutoencoder(nn.Module):
    """F: reconstructs images (B, C, H, W) in [0, 1]."""

    value_range = "unit"

    def __init__(self, channels: int = 3, width: list[int] | None = None):
        super().__init__()
        width = list(width or [64, 128, 128, 256])
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))


class ImageNoiseGenerator(nn.Module):
    """G: noise in [-1, 1] for images."""

    def __init__(self, channels: int = 3, width: list[int] | None = None):
        super().__init__()
        width = list(width or [64, 128, 128])
        self.encoder = _encoder(channels, width)
        self.decoder = _decoder(channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(self.encoder(x)))
