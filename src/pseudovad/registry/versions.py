"""What is registered: the aliases (`CHAMPION`, `CHALLENGER`), the tags a version carries, the
champion of the configured model (`champion`, `Version`) and whether a training split was already
learned (`trained_on`)."""
from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

from pseudovad import tracking
from pseudovad.config import Config


CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer", "auc_floor")
# label-free evidence (evaluate's check on held-out normal footage) and the operating point's numbers
LABEL_FREE_KEYS = ("holdout_flagged_share", "holdout_false_alarms_per_hour", "synthetic_auc")
OPERATING_KEYS = ("event_recall", "false_alarms_per_hour")
TAG_KEYS = (*METRIC_KEYS, *OPERATING_KEYS, *LABEL_FREE_KEYS)
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[0-9a-zA-Z]+)/(?P<path>.+)$")


def does_not_exist(e: BaseException) -> bool:
    """An MLflow error saying the registered model, version or artifact asked for is not there."""
    return tracking.has_error_code(e, "RESOURCE_DOES_NOT_EXIST") or "not found" in str(e).lower()


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or "unknown"


def champion_uri(cfg: Config) -> str:
    """`models:/NAME@champion` of the configured model (what `score` uses by default)."""
    return f"models:/{cfg.registered_model_name}@{CHAMPION}"



@dataclass(frozen=True)
class Version:
    """A registered version: its number, the training split it was trained on, its pinned URI."""

    version: str
    train_fingerprint: str
    uri: str


def champion(cfg: Config) -> Version | None:
    """The registered champion, or None when there is none yet."""
    name = cfg.registered_model_name
    uri = tracking.configure(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
        from mlflow.exceptions import MlflowException

        c = tracking.client()
        try:
            rm = c.get_registered_model(name)
        except MlflowException as e:
            if does_not_exist(e):
                return None
            raise
        version = (rm.aliases or {}).get(CHAMPION)
        if version is None:
            return None
        mv = c.get_model_version(name, str(version))
        return Version(str(version), mv.tags.get("train_fingerprint", ""), f"models:/{name}/{version}")


def trained_on(cfg: Config, fingerprint: str) -> str | None:
    """The newest version of the configured model trained on exactly the training split
    `fingerprint` (register tags each version with it, promoted or not), or None."""
    name = cfg.registered_model_name
    uri = tracking.configure(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
        done = tracking.client().search_model_versions(f"name = '{name}' and tags.train_fingerprint = '{fingerprint}'")
    return str(max(int(v.version) for v in done)) if done else None


