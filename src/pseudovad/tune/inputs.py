"""What a search starts from: the validation / held-out test split, the params with absolute paths
for Ray's workers (each runs in its own working folder), and the key that says whether the
search in `tune.out` is this one (restored) or another (cleared).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.config import Config
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import ConfigError
from pseudovad.tune import space
from pseudovad.tune.trial import BEST_MODEL

log = logging.getLogger(__name__)

EXPERIMENT = "search"        # Ray's experiment folder inside tune.out
TRIALS = "trials"
STATE = "search.json"        # what the experiment in search/ was started with



def split_videos(cfg: Config, store: FrameStore) -> tuple[list[VideoEntry], list[VideoEntry]]:
    """(validation entries, held-out test entries); each must hold normal and anomalous frames."""
    tests = store.videos("testing")
    ids = [e.id for e in tests]
    val_ids = list(cfg.tune.val_videos)
    if not val_ids:
        raise ConfigError(f"tune.val_videos: empty; name the labelled test videos to tune on, e.g. "
                          f"[{', '.join(ids[:max(1, len(ids) // 3)])}] (test videos in {store.root}: {', '.join(ids)})")
    missing = [v for v in val_ids if v not in ids]
    if missing:
        raise ConfigError(f"tune.val_videos: no test video(s) {', '.join(missing)} in {store.root} "
                          f"(test videos: {', '.join(ids)})")
    val = [e for e in tests if e.id in val_ids]
    held = [e for e in tests if e.id not in val_ids]
    if not held:
        raise ConfigError(f"tune.val_videos: lists every test video of {store.root}; leave some out for the "
                          "held-out test AUC")
    for name, entries in (("validation", val), ("held-out test", held)):
        y = np.concatenate([store.labels(e) for e in entries])
        if y.min() == y.max():
            raise ConfigError(f"tune.val_videos: the {name} videos ({', '.join(e.id for e in entries)}) are all "
                              f"{'anomalous' if y[0] else 'normal'}; an AUC needs both kinds of frames")
    return val, held


def _abs(path: str | None, base: Path) -> str | None:
    if not path or "://" in path or path.startswith(("models:/", "runs:/")):
        return path
    return str((base / path).resolve())


def absolute_uri(uri: str, base: Path) -> str:
    """A tracking URI that means the same from any working folder (sqlite:///rel.db → absolute)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((base / uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return str((base / uri).resolve())
    return uri


def worker_tree(cfg: Config, store: Path, base: Path) -> dict[str, Any]:
    """cfg as a tree whose paths are absolute: Ray runs trials in their own working folders."""
    return config_mod.with_values(cfg, {
        "data.store": str(store), "data.root": _abs(cfg.data.root, base), "data.labels": _abs(cfg.data.labels, base),
        "train.init": _abs(cfg.train.init, base), "train.cifar_root": _abs(cfg.train.cifar_root, base),
        "model.mae.pretrained": _abs(cfg.model.mae.pretrained, base),
        "tracking.artifact_location": _abs(cfg.tracking.artifact_location, base)}).to_dict()


def search_key(cfg: Config, dims: dict[str, space.Dim], store: FrameStore) -> str:
    """What makes a search the same search: restoring is only right when none of it changed."""
    tree = cfg.to_dict()
    keep = {k: tree[k] for k in ("seed", "model", "pseudo")}
    keep["data"] = {k: v for k, v in tree["data"].items() if k not in ("root", "store", "labels", "num_workers")}
    keep["train"] = {k: v for k, v in tree["train"].items() if k not in ("out", "epochs", "checkpoint_every")}
    keep["tune"] = {k: tree["tune"][k] for k in ("num_samples", "max_epochs", "grace_period", "reduction_factor",
                                                 "scheduler", "search", "val_videos")}
    keep["space"] = {k: [d.type, d.low, d.high, list(d.values)] for k, d in dims.items()}
    keep["data_fingerprint"] = store.fingerprint()
    keep["evaluate"] = {"batch_size": tree["evaluate"]["batch_size"]}
    keep["inference"] = {"amp": tree["inference"]["amp"]}   # bf16 or fp32 validation AUCs: not one search
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def restorable(out: Path, key: str) -> bool:
    """True if out/search holds this search (interrupted or done); another search there is cleared."""
    from ray.tune import Tuner

    exp = out / EXPERIMENT
    state = out / STATE
    if not exp.exists():
        return False
    same = state.is_file() and json.loads(state.read_text()).get("key") == key
    if same and Tuner.can_restore(str(exp)):
        return True
    log.warning("%s holds a search made with other params (or an unfinished start): starting a new search", exp)
    shutil.rmtree(exp)
    shutil.rmtree(out / TRIALS, ignore_errors=True)
    for name in ("best_params.yaml", BEST_MODEL, results.METRICS, results.PROVENANCE, "results.csv"):  # the old verdict
        (out / name).unlink(missing_ok=True)
    return False
