"""Model builders: F (and G) from a Config, and the scored prediction of each method.

Like timm, one model family per file and a small registry here; stages never import a model
class directly, so adding a method means one new file and one entry below.
"""
from __future__ import annotations

import torch
from torch import nn

from pseudovad.config import Config


def build_model(cfg: Config) -> nn.Module:
    """The detector: LTGPA's F or MAE-NCT's ViT predictor."""
    m = cfg.model
    if m.method == "ltgpa":
        if m.ltgpa.variant == "image":
            from pseudovad.models.autoencoder2d import ImageAutoencoder

            return ImageAutoencoder(cfg.data.channels, m.ltgpa.width)
        from pseudovad.models.autoencoder3d import VideoAutoencoder

        return VideoAutoencoder(cfg.data.channels, m.ltgpa.width, m.ltgpa.reconstruct)
    from pseudovad.models.mae import MAEPredictor

    return MAEPredictor.from_config(cfg)


def build_generator(cfg: Config) -> nn.Module:
    """LTGPA's noise generator G."""
    lt = cfg.model.ltgpa
    if lt.variant == "image":
        from pseudovad.models.autoencoder2d import ImageNoiseGenerator

        return ImageNoiseGenerator(cfg.data.channels, lt.g_width)
    from pseudovad.models.autoencoder3d import VideoNoiseGenerator

    return VideoNoiseGenerator(cfg.data.channels, lt.g_width)


def model_kind(cfg: Config) -> str:
    """"video" (LTGPA's 3D conv models), "image" (its 2D image variant) or "vit" (MAE-NCT): what
    decides the memory format a model trains fastest in (pseudovad.device.FASTEST_FORMAT)."""
    if cfg.model.method == "ltgpa":
        return "image" if cfg.model.ltgpa.variant == "image" else "video"
    return "vit"


def value_range(cfg: Config) -> str:
    """'tanh' ([-1, 1]) for video models, 'unit' ([0, 1]) for the image variant."""
    return "unit" if cfg.model.method == "ltgpa" and cfg.model.ltgpa.variant == "image" else "tanh"


def scored_prediction(model: nn.Module, clip: torch.Tensor, method: str, scored_index: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) of the scored frame, each (B, C, H, W), for a clip (B, C, L, H, W).

    LTGPA reconstructs the whole clip and the scored frame is read out of the reconstruction;
    MAE-NCT sees the frames before the scored one and predicts it. A model with
    `reconstruct_frame(clip, t)` (LTGPA's video F) computes only the scored frame's share of
    the decoder.
    """
    target = clip[:, :, scored_index]
    if method == "ltgpa":
        frame = getattr(model, "reconstruct_frame", None)
        if frame is not None:
            return frame(clip, scored_index), target
        return model(clip)[:, :, scored_index], target
    return model(clip[:, :, :scored_index]), target
