"""MLflow run tracking: a run around each stage, its params, metrics, tags, artifacts and the logged detector.

Stages call a handful of functions and never touch MLflow directly, so tracking can be switched
off (`tracking.enabled: false`) without an `if` in every stage, and every MLflow failure reaches
the user as one `TrackingError` line instead of a retry storm and a traceback:

    with tracking.run(cfg, "train", fingerprint=fp):
        tracking.log_epoch(record)            # inside the block; no-ops when tracking is off
        tracking.log_model("runs/train/model.pt")

Where runs go: `MLFLOW_TRACKING_URI` if set, else `tracking.uri` (default `sqlite:///mlflow.db`
in the working folder). One experiment per dataset (`cfg.experiment_name`), a model-training
experiment (the UI opens it on its runs, not on GenAI traces); on a local store it is created with
its artifact folder at `tracking.artifact_location` (default `mlruns/`, absolute), so artifacts
stay inside the project.

One pipeline run, one parent run: train, evaluate and register of one pipeline run (a `dvc repro`,
a `dvc exp run`, a Kubeflow run, a retraining round) are children of one parent run named after
the method and its key settings (`ltgpa-learned-λ0.1-p0.5`), found by the pipeline run's key
(`PSEUDOVAD_PIPELINE_RUN`, else the DVC experiment name) or, without one, by the model file they
share (train tags its parent with the model's sha256; evaluate and register look it up). Runs
opened inside another run (a retraining round, a tune search) are its children instead.

The parts: `store` (where, and MLflow failures as one line), `runs` (a run around a stage, its
params and tags, the pipeline's parent run), `record` (metrics, tags, artifacts of the active run),
`model` (the logged detector), `datasets` (what a run trained or was evaluated on). Callers use the
names re-exported here (`tracking.run`, `tracking.log_model`, …).

Mid-run metric logging (`log_epoch`, `log_metrics`) only warns when the server drops out: a
long training run is not killed by a tracking hiccup. Starting a run, artifacts and models raise.
The model registry (champion, versions, aliases, MLflow URIs → files) is `pseudovad.registry`."""
from __future__ import annotations

from pseudovad.tracking.datasets import DATASET_TAGS, dataset, log_dataset
from pseudovad.tracking.model import META_FILE, MODEL_FILE, PREPROCESSING_KEYS, log_model
from pseudovad.tracking.record import log_artifacts, log_epoch, log_metrics, log_model_metrics, log_text, set_tags
from pseudovad.tracking.runs import (EXPERIMENT_KIND, KFP_TAGS, MODEL_SHA_TAG, OUT_TAG, PIPELINE, PIPELINE_ENV,
                                     PIPELINE_STAGES, Terminated, active_run_id, close_stale_runs, experiment_id,
                                     out_tag, params, pipeline_key, run, run_label, run_tags)
from pseudovad.tracking.store import ENV_URI, client, configure, errors, has_error_code, redact, tracking_uri

__all__ = ["DATASET_TAGS", "ENV_URI", "EXPERIMENT_KIND", "KFP_TAGS", "META_FILE", "MODEL_FILE", "MODEL_SHA_TAG",
           "OUT_TAG", "PIPELINE", "PIPELINE_ENV", "PIPELINE_STAGES", "PREPROCESSING_KEYS", "Terminated",
           "active_run_id", "client", "close_stale_runs", "configure", "dataset", "errors", "experiment_id",
           "has_error_code", "log_artifacts", "log_dataset", "log_epoch", "log_metrics", "log_model",
           "log_model_metrics", "log_text", "out_tag", "params", "pipeline_key", "redact", "run", "run_label",
           "run_tags", "set_tags", "tracking_uri"]
