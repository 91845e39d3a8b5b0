"""The methods a detector can be trained with, by `model.method`, and `build_method`.

Kept apart from the `Method` base class so that a method module imports the base and this
registry imports the methods, never the other way round: adding a method is one new module and
one entry below.
"""
from __future__ import annotations

import torch

from pseudovad.config import Config
from pseudovad.training.ltgpa import LTGPAMethod
from pseudovad.training.mae_nct import MAENCTMethod
from pseudovad.training.method import Method

METHODS: dict[str, type[Method]] = {"ltgpa": LTGPAMethod, "mae_nct": MAENCTMethod}


def method_class(cfg: Config) -> type[Method]:
    """The class serving `model.method` (e.g. to ask its `lookahead` before building it)."""
    return METHODS[cfg.model.method]


def build_method(cfg: Config, device: torch.device) -> Method:
    """The configured method with its models and optimisers on `device`."""
    return method_class(cfg)(cfg, device)
