"""model.pt: the trained detector alone, plus everything needed to rebuild it and its input.

Saved as plain tensors and primitives, so `torch.load(path, weights_only=True)` loads it (no
pickled classes: safe to load a file from a registry). `meta` carries the config the model was
built with and the pre-processing `score` must repeat (size, channels, the clip geometry —
`clip_len`, `scored_index`, `frame_step`, read back by `ClipGeometry.from_meta` — and the value
range), plus an optional calibration of scores on normal validation footage. Only local files:
an MLflow URI is turned into one by `pseudovad.registry.resolve`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pseudovad import config as config_mod
from pseudovad.errors import DataError, PseudovadError
from pseudovad.files import atomic_path, settle
from pseudovad.geometry import ClipGeometry

FORMAT = "pseudovad-model/1"


def model_meta(cfg: config_mod.Config, **extra: Any) -> dict[str, Any]:
    from pseudovad.models import value_range

    meta = {
        "method": cfg.model.method,
        "config": cfg.to_dict(),
        "size": list(cfg.data.size),
        "channels": cfg.data.channels,
        **ClipGeometry.from_config(cfg).to_meta(),      # clip_len, scored_index, frame_step
        "value_range": value_range(cfg),
    }
    meta.update(extra)
    return meta


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write model.pt atomically; its bytes are a function of the weights and meta alone.

    torch.save given a path names the zip archive inside after the file (here: the temp file's
    random name), so the same model saved twice would differ; given an open file it always names
    it "archive". The registry and DVC identify a model by these bytes (sha256 / md5).
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "meta": meta, "state_dict": state}, f)


def read_model_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    settle(path.parent)   # a train killed mid-commit: finish it, so model.pt matches its metrics.json
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt / foreign files
        raise DataError(f"{path}: not a readable model file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DataError(f"{path}: not a pseudovad model file (expected format {FORMAT})")
    return blob


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(the detector in eval mode on `device`, its meta) from a local model.pt."""
    from pseudovad.models import build_model

    path = Path(path)
    blob = read_model_file(path)
    meta = blob["meta"]
    try:
        cfg = config_mod.from_dict(meta["config"])
    except PseudovadError as e:
        raise DataError(f"{path}: model config is invalid ({e})") from None
    model = build_model(cfg)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
    return model.to(device).eval(), meta
