"""The MLflow model registry: the champion, what a version was trained on, registering a candidate
through the promotion gate, and model files behind MLflow URIs.

Everything that reads or moves a registered model lives here, so the CLI, a retraining round and a
Kubeflow step ask the same questions the same way: `champion` (the version `score` and warm starts
use), `trained_on` (was this training split already learned?), `register` (a new or reused version,
`challenger`, and `champion` if `pseudovad.gate` says so), and `resolve` / `fetch_model_file`
(`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/…` → a local model.pt). `models/` only ever
loads local files; run logging is `pseudovad.tracking`.
"""

from __future__ import annotations

from pseudovad.registry.versions import (  # noqa: F401
    CHALLENGER, CHAMPION, LABEL_FREE_KEYS, METRIC_KEYS, MLFLOW_SCHEMES, OPERATING_KEYS, TAG_KEYS, Version,
    champion, champion_uri, current_user, does_not_exist, trained_on)
from pseudovad.registry.promote import (  # noqa: F401
    ARTIFACT_LINKS, Candidate, find_logged_model, read_metrics, register, run_link, version_description)
from pseudovad.registry.uris import (  # noqa: F401
    ResolvedModel, bad_uri, fetch_model, fetch_model_file, load_model, missing_local_store, resolve,
    resolve_model, resolve_version)
