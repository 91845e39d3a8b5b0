"""Checkpoints: everything a preempted run needs to continue exactly where it stopped.

A checkpoint holds every module, optimiser and schedule, the seeded generator the method draws
from, torch's global RNG, and the loop position (epoch, step, batch within the epoch, partial
epoch statistics). It is written to a temp file and renamed over `last.pt`, after the previous
one is kept as `prev.pt`, so a kill at any instant leaves at least one complete checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from pseudovad.files import atomic_path

log = logging.getLogger(__name__)


def params_hash(cfg_dict: dict[str, Any]) -> str:
    """Hash of the settings that shape a run; a checkpoint from other settings is not resumed."""
    keep = {k: cfg_dict[k] for k in ("seed", "data", "model", "pseudo")}
    # layout, compilation and loader workers change how a step runs, not what it computes: a run
    # may resume with other values (train.amp does change the arithmetic, so it stays in)
    keep["data"] = {k: v for k, v in cfg_dict["data"].items() if k != "num_workers"}
    keep["train"] = {k: v for k, v in cfg_dict["train"].items()
                     if k not in ("checkpoint_every", "out", "compile", "memory_format")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(path: Path, method, gen: torch.Generator, state: dict[str, Any], phash: str) -> None:
    blob = {
        "params_hash": phash,
        "state": state,
        "modules": {k: m.state_dict() for k, m in method.modules().items()},
        "optimizers": {k: o.state_dict() for k, o in method.optimizers().items()},
        "schedulers": {k: s.state_dict() for k, s in method.schedulers().items()},
        "gen": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
        if path.exists():
            os.replace(path, path.with_name("prev.pt"))


def _group_sizes(opt) -> list[int] | None:
    """Parameters per group of an optimiser or of its state_dict (None: no state)."""
    if opt is None:
        return None
    groups = opt["param_groups"] if isinstance(opt, dict) else opt.param_groups
    return [len(g["params"]) for g in groups]


def load(path: Path, method, gen: torch.Generator, phash: str) -> dict[str, Any] | None:
    """Restore from `last.pt` (or `prev.pt` if `last.pt` is unreadable); None: start fresh."""
    for candidate in (path, path.with_name("prev.pt")):
        if not candidate.is_file():
            continue
        try:
            blob = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated file from a crash mid-write of an older version
            log.warning("checkpoint %s unreadable (%s); trying the previous one", candidate, e)
            continue
        if blob.get("params_hash") != phash:
            log.warning("checkpoint %s was made with other params: starting fresh", candidate)
            return None
        other = [k for k, o in method.optimizers().items() if _group_sizes(blob["optimizers"].get(k)) != _group_sizes(o)]
        if other:   # e.g. MAE-NCT's optimiser before it had parameter groups: resuming would fail midway
            log.warning("checkpoint %s holds %s optimiser state of another layout (parameter groups differ, "
                        "e.g. from an older pseudovad): starting fresh", candidate, ", ".join(other))
            return None
        for k, m in method.modules().items():
            m.load_state_dict(blob["modules"][k])
        for k, o in method.optimizers().items():
            o.load_state_dict(blob["optimizers"][k])
        for k, s in method.schedulers().items():
            s.load_state_dict(blob["schedulers"][k])
        gen.set_state(blob["gen"])
        torch.set_rng_state(blob["torch_rng"])
        if blob["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(blob["cuda_rng"])
        log.info("resuming from %s at step %d", candidate, blob["state"]["step"])
        return blob["state"]
    return None
