"""The training side of a method, by `model.method`: its `Method` class (the update rule the loop
drives), from its spec in `pseudovad.methods`, and `build_method`."""
from __future__ import annotations

import torch

from pseudovad.config import Config
from pseudovad.method_spec import get_method
from pseudovad.training.method import Method


def method_class(cfg: Config) -> type[Method]:
    """The class serving `model.method` (e.g. to ask its `lookahead` before building it)."""
    return get_method(cfg.model.method).trainer()


def build_method(cfg: Config, device: torch.device) -> Method:
    """The configured method with its models and optimisers on `device`."""
    return method_class(cfg)(cfg, device)
