"""Kubeflow Pipelines components, one per stage: each maps KFP inputs/outputs to
`pseudovad.stages.<stage>.run` and runs in the project image (`components.image`). Each takes
every typed parameter (`pseudovad.kubeflow.TYPED`), unset unless the user set it, so every step
resolves the same settings."""
from components.evaluate import evaluate
from components.extract import extract
from components.ingest import ingest
from components.register import register
from components.train import train
from components.tune import tune

__all__ = ["evaluate", "extract", "ingest", "register", "train", "tune"]
