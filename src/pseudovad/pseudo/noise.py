"""LTGPA's pseudo anomalies: X^P = clip(X^N + ΔX) with ΔX from nothing, a Gaussian, or G.

ΔX is recomputed as X^P − X^N after clipping, so what G is rewarded for (and what is logged
as the noise norm) is the perturbation that actually reaches F, not the part clipped away.
"""
from __future__ import annotations

import torch
from torch import nn

RANGES = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}


def apply_noise(x: torch.Tensor, delta: torch.Tensor, value_range: str) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = RANGES[value_range]
    x_p = torch.clamp(x + delta, lo, hi)
    return x_p, x_p - x


class NoiseMaker:
    """Interface: `make(x, gen) -> (x_p, delta)`; `learnable` says whether a G step follows."""

    learnable = False

    def __init__(self, value_range: str):
        self.value_range = value_range

    def noise(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def make(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return apply_noise(x, self.noise(x, gen), self.value_range)


class GaussianNoise(NoiseMaker):
    """ΔX ~ N(0, σ²), drawn on the CPU generator so runs are reproducible on any device."""

    def __init__(self, value_range: str, sigma: float):
        super().__init__(value_range)
        self.sigma = sigma

    def noise(self, x, gen):
        return (torch.randn(x.shape, generator=gen) * self.sigma).to(x.device, x.dtype)


class LearnedNoise(NoiseMaker):
    """ΔX = G(X^N); G is trained by the method's G step."""

    learnable = True

    def __init__(self, value_range: str, generator: nn.Module):
        super().__init__(value_range)
        self.G = generator

    def noise(self, x, gen):
        return self.G(x)


def build_noise(kind: str, value_range: str, sigma: float, generator: nn.Module | None = None) -> NoiseMaker | None:
    """None for the baseline (`kind: none`): no pseudo batch is ever built."""
    if kind == "none":
        return None
    if kind == "gaussian":
        return GaussianNoise(value_range, sigma)
    if generator is None:
        raise ValueError("learned noise needs a generator G")
    return LearnedNoise(value_range, generator)
