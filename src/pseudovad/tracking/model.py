"""The logged detector: model.pt as an MLflow PyTorch model of the active run (`log_model`)."""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pseudovad.tracking.runs import MODEL_SHA_TAG, _active, active_run_id
from pseudovad.tracking.store import client, errors

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
META_FILE = "pseudovad_meta.json"
PREPROCESSING_KEYS = ("method", "size", "channels", "clip_len", "scored_index", "frame_step", "value_range",
                      "calibration", "train_fingerprint")


def log_model(model_path: str | Path, meta: dict[str, Any] | None = None, name: str = "model") -> dict[str, Any] | None:
    """Log model.pt as an MLflow PyTorch model of the active run; returns {model_uri, model_id, run_id}.

    The MLflow flavor holds the detector exported with torch.export ("pt2": loads without
    pseudovad or pickle; batch dimension dynamic), with a signature and an input example of its
    forward shape, e.g. (B, C, L, H, W) float32 for LTGPA. Beside it, as extra files, the
    pseudovad model.pt itself (what `load_model` / `score` use: weights + config + calibration)
    and its pre-processing meta as JSON; the same meta is in the MLmodel `metadata`. Tagged with
    the file's sha256 so `register` reuses this logged model instead of uploading it again.
    """
    if not _active:
        return None
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from pseudovad.evaluation.streaming import Detector
    from pseudovad.files import sha256_file
    from pseudovad.models.model_file import load_model

    model_path = Path(model_path)
    net, file_meta = load_model(model_path, "cpu")
    meta = meta or file_meta
    pre = {k: meta.get(k) for k in PREPROCESSING_KEYS}
    example = np.zeros(Detector(net, meta).input_shape(), dtype=np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example))
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *out.shape[1:]))]))
    sha = sha256_file(model_path)
    with tempfile.TemporaryDirectory(prefix="pseudovad-logmodel-") as tmp:
        meta_file = Path(tmp) / META_FILE
        meta_file.write_text(json.dumps(pre, indent=2) + "\n")
        model_file = model_path
        if model_path.name != MODEL_FILE:
            model_file = Path(tmp) / MODEL_FILE
            shutil.copyfile(model_path, model_file)
        common = dict(name=name, signature=signature, input_example=example,
                      extra_files=[str(model_file), str(meta_file)],
                      pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                      metadata={"pseudovad": pre},
                      tags={"model_sha256": sha, "method": str(meta.get("method"))})
        with errors(f"MLflow log_model {model_path}", _active[-1]["uri"]):
            try:
                info = mlflow.pytorch.log_model(net, serialization_format="pt2", **common)
            except Exception as e:  # torch.export cannot trace every model; pickle always works
                if isinstance(e, (OSError, ConnectionError)) or "API request" in str(e):
                    raise
                log.warning("torch.export failed for %s (%s); logging the model pickled instead",
                            model_path, str(e).splitlines()[0][:160] if str(e) else type(e).__name__)
                info = mlflow.pytorch.log_model(net, serialization_format="pickle", **common)
    parent = _active[-1]["pipeline_parent"]
    if parent:   # evaluate and register of this model file find their pipeline run by it
        with errors("MLflow set_tag", _active[-1]["uri"]):
            client().set_tag(parent, MODEL_SHA_TAG, sha)
    return {"model_uri": info.model_uri, "model_id": info.model_id, "run_id": active_run_id(), "sha256": sha}
