"""What the training loop needs from a method (LTGPA, MAE-NCT).

The loop (`pseudovad.training.loop`) owns everything methods share: batching, device, bf16
autocast, checkpoints and resume, the NaN guard, per-epoch metrics and timing. A method owns
its models, optimisers and schedules, and the update rule of one batch. Which class serves
`model.method` is `pseudovad.training.methods`' business; this module knows no method.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pseudovad.config import Config


class Method:
    """Base class; subclasses build their modules/optimisers in __init__."""

    name = "method"

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg = cfg
        self.device = device
        # how training.loop.fit runs it (precision, threads, workers: loop.Runtime), set when it
        # starts: epoch callbacks read it (a Tune trial reports its threads)
        self.runtime: Any = None

    # what a checkpoint holds -------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def schedulers(self) -> dict[str, Any]:
        """Objects with state_dict()/load_state_dict(); stepped by the method itself."""
        return {}

    # training ----------------------------------------------------------------------------------
    @classmethod
    def lookahead(cls, cfg: Config) -> int:
        """Frames (at the clip's frame step) each training item must carry beyond its clip.

        0 for most methods. A method that needs more footage than the clip (LTGPA's skip-frame
        pseudo anomalies) gets items of clip_len + lookahead frames and, per item, how many of
        them are real footage (`train_step`'s `reach`); the clip is the head of the window.
        """
        return 0

    def train_step(self, clip: torch.Tensor, gen: torch.Generator, reach: torch.Tensor | None = None
                   ) -> dict[str, float]:
        """One update on a batch (B, C, L, H, W) already on the device, in the model's value range.

        `gen` is the loop's seeded CPU generator: every random draw of the method (pseudo batch
        or not, noise, masks) comes from it, so a resumed run draws the same numbers. With a
        `lookahead`, `clip` is the longer window and `reach` (B,) the number of its frames that
        are footage. Returns scalars to log, as Python floats; the loop stops training if any is
        not finite. Keys starting with `n_` are counts: the epoch record holds their sum.
        """
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Per-epoch bookkeeping, e.g. a scheduler step."""

    def predictor(self) -> nn.Module:
        """The detector saved as model.pt (LTGPA's F, MAE-NCT's ViT predictor)."""
        raise NotImplementedError

    def train(self) -> None:
        for m in self.modules().values():
            m.train()

    def eval(self) -> None:
        for m in self.modules().values():
            m.eval()

    def lrs(self) -> dict[str, float]:
        return {f"lr_{k.lower()}": opt.param_groups[0]["lr"] for k, opt in self.optimizers().items()}
