"""What a stage records into its active run: metrics (per epoch too), metrics on a logged model,
tags, text and artifacts. Each is a no-op outside a run (`tracking.enabled: false`); mid-run metric
logging (`log_epoch`, `log_metrics`) only warns when the server drops out, so a long training run
is not killed by a tracking hiccup; tags, text and artifacts raise.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from pseudovad.errors import DataError
from pseudovad.tracking.runs import _active, active_run_id
from pseudovad.tracking.store import _describe, errors

log = logging.getLogger(__name__)


def _soft(what: str, fn, *args, **kwargs) -> None:
    """Mid-run logging: warn once per run on failure instead of stopping the stage."""
    h = _active[-1]
    try:
        fn(*args, **kwargs)
    except Exception as e:
        if not h["warned"]:
            log.warning("MLflow %s failed, continuing without it: %s", what, _describe(e, h["uri"]))
            h["warned"] = True


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Finite numbers of `metrics` (others skipped) to the active run."""
    if not _active:
        return
    import mlflow

    m = _numeric(metrics)
    if m:
        _soft("log_metrics", mlflow.log_metrics, m, step=step)


def log_model_metrics(model_id: str, metrics: dict[str, Any], dataset=None) -> None:
    """Finite numbers of `metrics` on a logged model (MLflow 3: they show as its metrics and its
    registered versions'), from the active run, linked to `dataset` (`dataset()`)."""
    if not _active:
        return
    import mlflow

    m = _numeric(metrics)
    if m:
        with errors(f"MLflow log_metrics on model {model_id}", _active[-1]["uri"]):
            mlflow.log_metrics(m, model_id=model_id, dataset=dataset, run_id=active_run_id())


def log_epoch(record: dict[str, Any], step: int | None = None) -> None:
    """One history record (losses, noise norm, lrs, clips/s) at step = its epoch (1-based)."""
    if step is None:
        step = int(record.get("epoch", 0)) + 1
    m = {k: v for k, v in record.items() if k not in ("epoch", "step")}
    if "step" in record:
        m["train_steps"] = record["step"]
    log_metrics(m, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    if not _active:
        return
    import mlflow

    with errors("MLflow set_tags", _active[-1]["uri"]):
        mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})


def log_text(text: str, name: str) -> None:
    """A text file (e.g. the settings a run used, params.yaml) into the active run's artifacts."""
    if not _active:
        return
    import mlflow

    with errors(f"MLflow log_text {name}", _active[-1]["uri"]):
        mlflow.log_text(text, name)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    """A file or a folder (recursively) into the active run's artifacts."""
    if not _active:
        return
    import mlflow

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: artifact to log does not exist")
    with errors(f"MLflow log_artifacts {path}", _active[-1]["uri"]):
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path)
