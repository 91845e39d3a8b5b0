"""Kubeflow Pipelines components, one per stage: each maps KFP inputs/outputs to
`pseudovad.stages.<stage>.run` and runs in the project image (`components.image`)."""
from components.evaluate import evaluate
from components.extract import extract
from components.ingest import ingest
from components.register import register
from components.train import train
from components.tune import tune

__all__ = ["evaluate", "extract", "ingest", "register", "train", "tune"]
