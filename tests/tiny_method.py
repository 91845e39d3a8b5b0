"""A third detection method that exists only in the test suite: one module, as a new method would
be (`pseudovad/methods/<name>.py`), to show that registering it is all `train`, `evaluate`,
`score`, `tune`, `report`, the Kubeflow parameters and the params reference need.

A two-layer 3D-conv autoencoder trained on plain reconstruction (no pseudo anomalies): small
enough to train in a second, real enough that every stage runs it as it runs LTGPA. (A built-in
method imports torch inside its functions, since the config is validated before torch loads;
a test module need not.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as Fn
from torch import nn

from pydantic import Field

from pseudovad.method_spec import MethodSpec, register_method
from pseudovad.params_types import Int, Section
from pseudovad.training.method import Method

NAME = "tinyae"


class TinyAESettings(Section):
    """The tiny autoencoder's network (tests only)."""

    width: Int = Field(4, ge=1, description="hidden channels of the autoencoder")


class TinyAE(nn.Module):
    def __init__(self, channels: int, width: int):
        super().__init__()
        self.enc = nn.Conv3d(channels, width, 3, padding=1)
        self.dec = nn.Conv3d(width, channels, 3, padding=1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec(torch.relu(self.enc(clip))))


class TinyAEMethod(Method):
    name = NAME

    def __init__(self, cfg, device):
        super().__init__(cfg, device)
        self.F = TinyAESpec().build_model(cfg).to(device)
        self.opt = torch.optim.Adam(self.F.parameters(), lr=cfg.train.lr)

    def modules(self):
        return {"F": self.F}

    def optimizers(self):
        return {"F": self.opt}

    def predictor(self):
        return self.F

    def train_step(self, clip, gen, reach=None):
        loss = Fn.mse_loss(self.F(clip), clip)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}


@register_method
class TinyAESpec(MethodSpec):
    name = NAME
    title = "Tiny AE (tests only)"
    section = "tinyae"
    settings = TinyAESettings
    paper_auc = {("baseline", "synthetic"): (50.0, "a made-up figure for the test")}

    def build_model(self, cfg) -> nn.Module:
        return TinyAE(cfg.data.channels, cfg.model.tinyae.width)

    def trainer(self) -> type:
        return TinyAEMethod

    def default_space(self, cfg):
        return {"model.tinyae.width": {"type": "choice", "values": [2, 4, 8]},
                "train.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}
