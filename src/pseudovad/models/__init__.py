"""The detector network of a Config and what its method says about it: built, kind, value range.
Each method's spec (`pseudovad.methods`) decides; this module asks it, so no stage imports a model
class or knows a method.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from pseudovad.config import Config
from pseudovad.method_spec import get_method, method_of


def build_model(cfg: Config) -> nn.Module:
    """The detector saved as model.pt (LTGPA's F, MAE-NCT's ViT predictor, …)."""
    return get_method(cfg.model.method).build_model(cfg)


def model_kind(config: Config | Mapping[str, Any]) -> str:
    """"video" (3D conv clips), "image" (2D conv images) or "vit": what decides the memory format a
    model runs fastest in (pseudovad.device.FASTEST_FORMAT). A Config or a model file's config dict."""
    tree = config.to_dict() if isinstance(config, Config) else config
    return method_of(tree).model_kind(tree)


def value_range(config: Config | Mapping[str, Any]) -> str:
    """'tanh' ([-1, 1]) or 'unit' ([0, 1], LTGPA's image variant): how frames are scaled."""
    tree = config.to_dict() if isinstance(config, Config) else config
    return method_of(tree).value_range(tree)

