"""LTGPA (Astrid et al.): a 3D-conv autoencoder F trained with pseudo anomalies made by a noise
generator G, plus the comparison rows that share F (baseline, Gaussian noise, LNTRA's skip frames
and patches, STEAL's loss) and the 2D image variant.

The networks are `models/autoencoder3d.py` / `autoencoder2d.py`; the alternating update of F and
G is `training/ltgpa.py`. Everything else the package asks about the method is here.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import Field

from pseudovad.config import Config
from pseudovad.errors import ConfigError
from pseudovad.method_spec import MethodSpec, register_method
from pseudovad.params_types import Int, Section, Str

JUMPS_PAPER = (2, 3, 4, 5)   # LNTRA's and STEAL's skip-frame jumps

# The papers' frame-level AUC (%) by (row, dataset). The same plain autoencoder is the baseline
# of LTGPA, LNTRA and STEAL (92.49 / 81.47 / 71.28).
LTGPA = "Astrid et al., Exploiting autoencoder's weakness to generate pseudo anomalies (LTGPA), Table 1"
LNTRA = "Astrid et al. 2021, Learning not to reconstruct anomalies (LNTRA, BMVC), Table 1"
STEAL = "Astrid et al. 2021, Synthetic temporal anomaly guided end-to-end VAD (STEAL Net, ICCVW)"
PAPER_AUC = {
    ("baseline", "ped2"): (92.49, LTGPA), ("baseline", "avenue"): (81.47, LTGPA),
    ("baseline", "shanghaitech"): (71.28, LTGPA),
    ("learned", "ped2"): (94.57, LTGPA), ("learned", "avenue"): (83.23, LTGPA),
    ("learned", "shanghaitech"): (73.23, LTGPA),
    ("patch", "ped2"): (94.77, LNTRA), ("patch", "avenue"): (84.91, LNTRA), ("patch", "shanghaitech"): (72.46, LNTRA),
    ("skip", "ped2"): (96.50, LNTRA), ("skip", "avenue"): (84.67, LNTRA), ("skip", "shanghaitech"): (75.97, LNTRA),
    ("steal", "ped2"): (98.4, STEAL), ("steal", "avenue"): (87.1, STEAL), ("steal", "shanghaitech"): (73.7, STEAL),
}


class LTGPAConfig(Section):
    """LTGPA's F and G (paper Tables 3–6)."""

    variant: Literal["video", "image"] = Field("video", description="`video` (3D conv clips) or `image` (2D conv, "
                                               "one-class images)")
    width: list[Int] = Field([96, 128, 256, 256], description="F's encoder widths (the decoder mirrors them); "
                                                              "`data.size` must be divisible by 2^len(width)")
    g_width: list[Int] = Field([96, 128, 256], description="G's encoder widths")
    reconstruct: Str = Field("clip", description="`clip`: F reconstructs the clip (the paper) | `motion`: F sees and "
                             "reconstructs the clip minus its per-pixel temporal mean, which is added back (the static "
                             "scene is not F's to code; video variant only)")


def _image(config: Mapping[str, Any]) -> bool:
    return config.get("model", {}).get("ltgpa", {}).get("variant") == "image"


def downsampling(cfg: Config) -> tuple[int, int]:
    """Total (temporal, spatial) stride of F's encoder: every stride-2 layer halves the size."""
    n = len(cfg.model.ltgpa.width)
    if cfg.model.ltgpa.variant == "image":
        return 1, 2 ** n
    return 2 ** (n - 1), 2 ** n


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@register_method
class LTGPASpec(MethodSpec):
    name = "ltgpa"
    title = "LTGPA"
    section = "ltgpa"
    settings = LTGPAConfig
    pseudo_key = "kind"
    pseudo_default = "learned"
    share_key = "p"
    pseudo_settings = ("kind", "p", "lam", "sigma")
    lr_schedule = "constant"
    rows = ("baseline", "gaussian", "learned", "skip", "patch", "steal")
    paper_auc = PAPER_AUC
    resembles = {"patch": "object", "skip": "speed", "gaussian": "appearance", "learned": "appearance"}

    def check(self, cfg: Config) -> None:
        lt, d, p = cfg.model.ltgpa, cfg.data, cfg.pseudo
        _check(len(lt.width) >= 1 and all(w >= 1 for w in lt.width), "model.ltgpa.width",
               "must be a non-empty list of positive widths")
        _check(len(lt.g_width) >= 1 and all(w >= 1 for w in lt.g_width), "model.ltgpa.g_width",
               "must be a non-empty list of positive widths")
        _check(lt.reconstruct in ("clip", "motion"), "model.ltgpa.reconstruct",
               f"must be clip or motion, got {lt.reconstruct!r}")
        _check(lt.reconstruct == "clip" or lt.variant == "video", "model.ltgpa.reconstruct",
               "motion needs the video variant (an image has no time axis)")
        t_div, s_div = downsampling(cfg)
        g_div = 2 ** len(lt.g_width)
        for side in d.size:
            _check(side % s_div == 0 and side % g_div == 0, "data.size",
                   f"{d.size} must be divisible by {max(s_div, g_div)} (the autoencoders' total stride)")
        _check(lt.variant == "video" or p.kind not in ("skip", "patch"), "pseudo.kind",
               f"{p.kind} pseudo anomalies are made of clips: they need model.ltgpa.variant video")
        if lt.variant == "video":
            g_t = 2 ** (len(lt.g_width) - 1)
            _check(d.clip_len % t_div == 0 and d.clip_len % g_t == 0, "data.clip_len",
                   f"{d.clip_len} must be divisible by {max(t_div, g_t)} (F's temporal stride)")

    def model_kind(self, config: Mapping[str, Any]) -> str:
        return "image" if _image(config) else "video"

    def value_range(self, config: Mapping[str, Any]) -> str:
        return "unit" if _image(config) else "tanh"

    def trains_on_images(self, cfg: Config) -> bool:
        return cfg.model.ltgpa.variant == "image"

    def build_model(self, cfg: Config) -> Any:
        lt = cfg.model.ltgpa
        if lt.variant == "image":
            from pseudovad.models.autoencoder2d import ImageAutoencoder

            return ImageAutoencoder(cfg.data.channels, lt.width)
        from pseudovad.models.autoencoder3d import VideoAutoencoder

        return VideoAutoencoder(cfg.data.channels, lt.width, lt.reconstruct)

    def trainer(self) -> type:
        from pseudovad.training.ltgpa import LTGPAMethod

        return LTGPAMethod

    def scored_prediction(self, model: Any, clip: Any, scored_index: int) -> tuple[Any, Any]:
        """F reconstructs the whole clip and the scored frame is read out; the video F's
        `reconstruct_frame` computes only the scored frame's share of the decoder."""
        frame = getattr(model, "reconstruct_frame", None)
        if frame is not None:
            return frame(clip, scored_index), clip[:, :, scored_index]
        return super().scored_prediction(model, clip, scored_index)

    def default_space(self, cfg: Config) -> dict[str, dict[str, Any]]:
        """λ (learned noise only), p (unless baseline; with STEAL's `maximize` loss on a log scale
        below 0.5: STEAL draws 1% of its clips), σ (Gaussian only), the jumps (skip frames only), the
        patch's largest size and motion (patches only), lr."""
        space: dict[str, dict[str, Any]] = {}
        kind = cfg.pseudo.kind
        if kind == "learned":
            space["pseudo.lam"] = {"type": "loguniform", "low": 0.01, "high": 1.0}
        if kind != "none":
            space["pseudo.p"] = ({"type": "loguniform", "low": 0.005, "high": 0.5}
                                 if cfg.train.pseudo_loss == "maximize" else {"type": "uniform", "low": 0.1, "high": 0.9})
        if kind == "gaussian":
            space["pseudo.sigma"] = {"type": "loguniform", "low": 0.05, "high": 1.0}
        if kind == "skip":
            space["pseudo.jumps"] = {"type": "choice", "values": [list(JUMPS_PAPER), [2, 3], [3, 4, 5], [4, 5, 6, 7]]}
        if kind == "patch":
            space["pseudo.patch_max_size"] = {"type": "uniform", "low": 0.1, "high": 0.8}
            space["pseudo.patch_max_move"] = {"type": "randint", "low": 0, "high": 20}
        return {**space, **super().default_space(cfg)}

    def describe(self, config: Mapping[str, Any]) -> dict[str, str]:
        """Rows: baseline, gaussian σ=…, learned, skip, patch (image folder), steal (skip frames
        with STEAL's `maximize` loss), `<kind> maximize`; the image variant is `ltgpa-image`."""
        pseudo = config.get("pseudo", {})
        kind = self.pseudo_kind(config)
        maximize = config.get("train", {}).get("pseudo_loss", "reconstruct_normal") == "maximize"
        variant = {"none": "baseline"}.get(kind, kind)
        if kind == "gaussian":
            variant = f"gaussian σ={pseudo.get('sigma', 0.1):g}"
        if kind == "patch" and pseudo.get("patch_source"):
            variant = "patch (image folder)"     # the paper's kind of objects, not the built-in shapes
        if maximize and kind != "none":
            variant = "steal" if kind == "skip" else f"{variant} maximize"
        if pseudo.get("p", 0.5) == 0 or kind == "none":   # pseudo anomalies never drawn: the baseline
            variant = "baseline"
        return {"method": "ltgpa-image" if _image(config) else self.name, "pseudo_kind": kind, "variant": variant}

    def run_label(self, cfg: Config) -> str:
        head = "ltgpa-image" if cfg.model.ltgpa.variant == "image" else "ltgpa"
        ps = cfg.pseudo
        if ps.kind == "none" or ps.p == 0:
            return f"{head}-baseline"
        if ps.kind == "gaussian":
            return f"{head}-gaussian-σ{ps.sigma:g}-p{ps.p:g}"
        return f"{head}-{ps.kind}-λ{ps.lam:g}-p{ps.p:g}"

