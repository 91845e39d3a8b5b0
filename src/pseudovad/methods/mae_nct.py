"""MAE-NCT (Huang et al.): a ViT masked autoencoder that predicts the next frame from the ones
before it; masked patches of its input are the pseudo anomalies, held to the normal prediction
by a bidirectional-KL consistency loss.

The network is `models/mae.py`; the update rule and losses are `training/mae_nct.py`. Everything
else the package asks about the method is here.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import Field

from pseudovad.config import Config
from pseudovad.errors import ConfigError
from pseudovad.geometry import ClipGeometry
from pseudovad.method_spec import MethodSpec, register_method
from pseudovad.params_types import Float, Int, Section, Str

MAE_NCT = "Huang et al. 2023, Synthetic pseudo anomalies ... based on masked autoencoder (MAE-NCT)"


class MAEConfig(Section):
    """MAE-NCT's ViT encoder + one-layer linear decoder."""

    patch_size: Int = Field(16, description="ViT patch side in pixels; divides `data.size`")
    embed_dim: Int = Field(768, description="ViT width; divisible by `heads`")
    depth: Int = Field(12, description="transformer blocks")
    heads: Int = Field(12, description="attention heads")
    mlp_ratio: Float = Field(4.0, description="MLP hidden width / `embed_dim`")
    in_frames: Int = Field(4, description="past frames stacked as input; the next one is predicted and scored")
    pretrained: Optional[Str] = Field(None, description="local timm / SimMIM ViT state_dict loaded by `train` "
                                                        "(never downloaded)")
    predict: Str = Field("frame", description="`frame`: decode the next frame (the paper) | `change`: decode its "
                         "change from the last input frame, which is added back (an output parametrisation)")


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@register_method
class MAENCTSpec(MethodSpec):
    name = "mae_nct"
    title = "MAE-NCT"
    section = "mae"
    settings = MAEConfig
    pseudo_key = "mode"
    pseudo_default = "nct"
    pseudo_settings = ("mode", "mask_ratio", "mask_patch", "p", "lambda_n", "lambda_p", "lambda_cst")
    lr_schedule = "cosine"
    rows = ("baseline", "prob", "nct")
    paper_auc = {("nct", "ped2"): (95.5, MAE_NCT), ("nct", "avenue"): (87.63, MAE_NCT),
                 ("nct", "shanghaitech"): (76.57, MAE_NCT)}
    resembles = {"nct": "appearance", "prob": "appearance"}

    def check(self, cfg: Config) -> None:
        m, d, p = cfg.model.mae, cfg.data, cfg.pseudo
        _check(m.patch_size >= 1 and m.depth >= 1 and m.heads >= 1, "model.mae",
               "patch_size, depth and heads must be ≥ 1")
        _check(m.embed_dim % m.heads == 0, "model.mae.embed_dim", f"{m.embed_dim} must be divisible by heads ({m.heads})")
        _check(m.in_frames >= 1, "model.mae.in_frames", f"must be ≥ 1, got {m.in_frames}")
        _check(m.predict in ("frame", "change"), "model.mae.predict", f"must be frame or change, got {m.predict!r}")
        for side in d.size:
            _check(side % m.patch_size == 0, "data.size",
                   f"{d.size} must be divisible by model.mae.patch_size ({m.patch_size})")
            _check(side % p.mask_patch == 0, "data.size", f"{d.size} must be divisible by pseudo.mask_patch ({p.mask_patch})")
        _check(p.mask_patch % m.patch_size == 0, "pseudo.mask_patch",
               f"{p.mask_patch} must be a multiple of model.mae.patch_size ({m.patch_size})")

    def geometry(self, cfg: Config) -> tuple[int, int]:
        """`model.mae.in_frames` frames in, the next one predicted and scored."""
        return cfg.model.mae.in_frames + 1, cfg.model.mae.in_frames

    def model_kind(self, config: Mapping[str, Any]) -> str:
        return "vit"

    def build_model(self, cfg: Config) -> Any:
        from pseudovad.models.mae import MAEPredictor

        return MAEPredictor.from_config(cfg)

    def trainer(self) -> type:
        from pseudovad.training.mae_nct import MAENCTMethod

        return MAENCTMethod

    def input_frames(self, geometry: ClipGeometry) -> int:
        return geometry.scored_index

    def scored_prediction(self, model: Any, clip: Any, scored_index: int) -> tuple[Any, Any]:
        """The ViT sees the frames before the scored one and predicts it."""
        return model(clip[:, :, :scored_index]), clip[:, :, scored_index]

    def default_space(self, cfg: Config) -> dict[str, dict[str, Any]]:
        """Mask ratio, λ_cst, lr."""
        return {"pseudo.mask_ratio": {"type": "uniform", "low": 0.25, "high": 0.9},
                "pseudo.lambda_cst": {"type": "loguniform", "low": 0.03, "high": 3.0},
                **super().default_space(cfg)}

    def describe(self, config: Mapping[str, Any]) -> dict[str, str]:
        """Rows: baseline (mode none), nct, `prob p=…` (its pseudo anomalies are always masks)."""
        mode = self.pseudo_kind(config)
        p = config.get("pseudo", {}).get("p", 0.5)
        variant = {"none": "baseline", "nct": "nct"}.get(mode, f"{mode} p={p:g}")
        return {"method": self.name, "pseudo_kind": mode, "variant": variant}

    def run_label(self, cfg: Config) -> str:
        """`mae-nct-r0.75-cst0.3`, `mae-prob-r…-p0.5`, `mae-baseline`."""
        ps = cfg.pseudo
        if ps.mode == "none":
            return "mae-baseline"
        tail = f"-p{ps.p:g}" if ps.mode == "prob" else ""
        return f"mae-{ps.mode}-r{ps.mask_ratio:g}-cst{ps.lambda_cst:g}{tail}"
