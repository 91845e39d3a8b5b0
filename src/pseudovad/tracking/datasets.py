"""Datasets: what a run trained or was evaluated on (metadata only: the frames stay in the store)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pseudovad import results
from pseudovad.tracking.runs import _active, active_run_id
from pseudovad.tracking.store import client, errors


def dataset(name: str, source: str | Path, fingerprint: str, **profile: Any):
    """An MLflow dataset (metadata only: the frames stay in the store) named `name`, its digest the
    fingerprint's head; its profile (the run page's dataset panel) holds the full fingerprint, the
    git commit and `profile` (the DVC hash of the store: `dvc_md5`, videos, frames …)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    where = str(source)
    origin = S3ArtifactDatasetSource(where) if where.startswith("s3://") else \
        LocalArtifactDatasetSource(str(Path(where).resolve()))
    info = {k: v for k, v in {"fingerprint": fingerprint, "git_commit": results.git("rev-parse", "HEAD"),
                              **profile}.items() if v is not None}

    class FrameStoreDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return info

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(info)}

    return FrameStoreDataset(origin, name=name, digest=fingerprint[:16])


# the dataset profile entries that are also input tags (searchable, shown beside the dataset)
DATASET_TAGS = ("fingerprint", "dvc_md5", "evaluation_version", "git_commit")


def log_dataset(ds, context: str) -> None:
    """`ds` (from `dataset`, or a dataset another run logged) as an input of the active run, its
    fingerprint, DVC hash and git commit also as input tags."""
    if not _active or ds is None:
        return
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    profile = ds.profile if isinstance(ds.profile, dict) else json.loads(ds.profile or "{}")
    tags = {k: str(profile[k]) for k in DATASET_TAGS if profile.get(k) is not None}
    with errors(f"MLflow log_input {ds.name}", _active[-1]["uri"]):
        if hasattr(ds, "_to_mlflow_entity"):
            mlflow.log_input(ds, context=context, tags=tags)
        else:                                   # an mlflow.entities.Dataset
            tags["mlflow.data.context"] = context
            client().log_inputs(active_run_id(), [DatasetInput(ds, [InputTag(k, v) for k, v in tags.items()])])
