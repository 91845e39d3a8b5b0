"""Learning-rate schedules, per step: linear warm-up, then a half cosine to 0 or a constant.

`train.lr_schedule` picks the shape; null means the method's paper schedule (`lr_schedule` in
pseudovad.config: LTGPA `constant`, MAE-NCT `cosine`). A short CPU run profits from a schedule
the papers' 60-epoch GPU runs did not need, so LTGPA may use `cosine` too: only the schedule
changes, not the method (Adam, its losses and models stay the paper's).
"""
from __future__ import annotations

import math
from typing import Any

import torch


class WarmupCosine:
    """lr = base · factor(step): linear warm-up over `warmup_epochs`, then half a cosine to 0
    (`shape="cosine"`) or the base lr (`shape="constant"`).

    Per step when the loop has set `steps_per_epoch` on the method (it does, before the first
    step), so a short CPU run still gets a smooth warm-up; per epoch otherwise (advanced by
    `end_epoch`). The horizon is epochs·steps_per_epoch, capped by `train.max_steps` like the
    loop's own stopping rule, so the cosine reaches ~0 at the last step actually taken.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup_epochs: int, epochs: int,
                 max_steps: int = 0, shape: str = "cosine"):
        if shape not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule shape {shape!r} (expected 'cosine' or 'constant')")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_epochs = warmup_epochs
        self.epochs = epochs
        self.max_steps = max_steps
        self.shape = shape
        self.step_count = 0   # optimiser steps taken
        self.epoch = 0        # epochs finished

    def factor(self, steps_per_epoch: int | None) -> float:
        if steps_per_epoch:
            s, per = self.step_count, steps_per_epoch
            total = per * self.epochs
            if self.max_steps:
                total = min(total, self.max_steps)
        else:
            s, per, total = self.epoch, 1, self.epochs
        warm = min(self.warmup_epochs * per, total)
        if s < warm:
            return (s + 1) / warm
        if self.shape == "constant":
            return 1.0
        span = max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(s - warm, span) / span))

    def apply(self, steps_per_epoch: int | None) -> float:
        lr = self.base_lr * self.factor(steps_per_epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.epoch = int(state["epoch"])
