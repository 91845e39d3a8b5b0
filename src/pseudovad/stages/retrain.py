"""`retrain`: ingest → train → evaluate → register, one command for a schedule (cron, KFP).

Each run first ingests new footage (see `ingest`). Then it decides whether there is anything to
learn (`nothing_to_learn`, the rule the Kubeflow retraining pipeline applies too): the training
split's fingerprint names a *round*; if that round already finished, or a registered version of
the model was trained on exactly this data, the run says so and exits 0 without training. Else
it trains in `runs/retrain/<round>/train` — warm-started from the champion's weights when
`ingest.warm_start` is true and a champion exists (pinned as models:/NAME/VERSION, so the run
records which weights it started from), from scratch otherwise — evaluates on the store's fixed,
labelled test split and registers the model, where the promotion gate decides whether it becomes
champion. The detector in production can therefore only stay the same or get better.

A run killed mid-training is resumed by the next one (same round, same checkpoint folder).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from pseudovad import config as config_mod
from pseudovad import registry, tracking
from pseudovad.config import Config
from pseudovad.data.store import FrameStore
from pseudovad.errors import ConfigError, DataError, StorageError
from pseudovad.files import exclusive_lock, write_json
from pseudovad.data import ingest
from pseudovad.stages import evaluate, register, train

log = logging.getLogger(__name__)
DEFAULT_OUT = "runs/retrain"
SUMMARY = "retrain.json"


def _lock(out: Path):
    """A cron tick that fires while the last round still trains must not start a second one."""
    return exclusive_lock(out / ".lock", "retrain")


def nothing_to_learn(cfg: Config, fingerprint: str, round_dir: str | Path | None = None) -> tuple[bool, str]:
    """(True, why) when a model was already trained on exactly the training split `fingerprint`.

    The registry decides: register tags every version with its model's train fingerprint, so a
    version with this one means the footage brought nothing new (whether the gate promoted it or
    not), while a run after a failed one (nothing registered) still trains. A finished round
    folder of `retrain` (`round_dir`) answers first, without asking the registry.
    """
    if round_dir is not None and (Path(round_dir) / SUMMARY).is_file():
        return True, f"round {Path(round_dir).name} already done"
    name = cfg.registered_model_name
    version = registry.trained_on(cfg, fingerprint)
    if version is not None:
        return True, f"{name} v{version} was trained on exactly this training split"
    return False, f"no version of {name} was trained on this training split"


def ingest_step(cfg: Config, source: Optional[str] = None, store: str | Path | None = None,
                progress: bool = False) -> dict[str, Any]:
    """The retraining pipeline's first step: ingest, then decide whether there is anything to learn.

    Unlike `run`, failed downloads raise StorageError (after what was downloaded is committed):
    the step's retry, or the next run, fetches the rest, and the pipeline does not train on a
    split it knows is incomplete. Returns ingest's summary, its report lines and counts, the
    training split's fingerprint, `learn` and the reason.
    """
    store = Path(store or cfg.data.store)
    got = ingest.ingest_footage(cfg, source=source, store=store, progress=progress)
    lines = ingest.describe(got)
    if got["failed"]:
        raise StorageError(f"{len(got['failed'])} file(s) under {got['source']} could not be downloaded")
    fingerprint = FrameStore(store).fingerprint("training")
    skip, reason = nothing_to_learn(cfg, fingerprint)
    if skip:
        lines.append(f"nothing to learn: {reason}")
    return {"summary": got, "lines": lines, "counts": ingest.counts(got), "train_fingerprint": fingerprint,
            "learn": not skip, "reason": reason}


def init_weights(cfg: Config, init: str = "", warm_start: bool = False) -> Optional[str]:
    """What a pipeline's train step starts from: `init` (a model.pt or MLflow URI) when given;
    else with `warm_start` the champion pinned by version, or None (from scratch) while there is
    no champion yet; else train.init from the params."""
    if init:
        return init
    if warm_start:
        champ = registry.champion(cfg)
        return champ.uri if champ else None
    return cfg.train.init


def round_config(cfg: Config, rdir: Path, init: Optional[str]) -> Config:
    """The same params with this round's output folders and warm start."""
    return config_mod.with_values(cfg, {"train.out": str(rdir / "train"), "train.init": init,
                                        "evaluate.out": str(rdir / "evaluate"), "registry.out": str(rdir / "register")})


def run(cfg: Config, source: Optional[str] = None, out: str | Path | None = None,
        progress: bool = False) -> dict[str, Any]:
    out = Path(out or DEFAULT_OUT)
    store = Path(cfg.data.store)
    if not cfg.tracking.enabled:
        raise ConfigError("tracking.enabled: false, but retrain needs the MLflow registry (champion, gate)")
    with _lock(out):
        fs = FrameStore(store)              # fails early, naming the store, if it was never pulled/extracted
        if not fs.videos("testing"):
            raise DataError(f"{store}: no labelled test videos to evaluate on (run `dvc pull` or `pseudovad extract`)")
        got = ingest.ingest_footage(cfg, source=source, progress=progress)
        fingerprint = FrameStore(store).fingerprint("training")
        rdir = out / fingerprint[:12]
        summary: dict[str, Any] = {"round": rdir.name, "train_fingerprint": fingerprint,
                                   "ingested": [v["video"] for v in got["ingested"]],
                                   "quarantined": len(got["quarantined"]), "failed": got["failed"],
                                   "source": got["source"], "status": None}
        champ = registry.champion(cfg)
        summary["champion_before"] = champ.version if champ else None
        skip, reason = nothing_to_learn(cfg, fingerprint, rdir)
        if skip:
            summary.update(status="nothing-new", reason=reason)
            write_json(out / "last.json", summary)
            return summary

        init = champ.uri if (champ and cfg.ingest.warm_start) else cfg.train.init   # default null: scratch
        rcfg = round_config(cfg, rdir, init)
        summary["warm_start"] = init
        with tracking.run(rcfg, "retrain", fingerprint=fingerprint,
                          tags={"retrain.round": rdir.name, "retrain.ingested": len(got["ingested"]),
                                "retrain.warm_start": init or "scratch"}):
            trained = train.run(rcfg, progress=progress)
            metrics = evaluate.run(rcfg, model=trained["model"], progress=progress)
            decision = register.run(rcfg, model=trained["model"], metrics=Path(rcfg.evaluate.out) / "metrics.json")
            tracking.set_tags({"retrain.decision": "promoted" if decision["promoted"] else "kept",
                               "retrain.version": decision["version"]})
        summary.update(status="promoted" if decision["promoted"] else "kept", reason=decision["reason"],
                       version=decision["version"], champion_after=decision["champion_after"],
                       auc_micro=metrics["auc_micro"], champion_auc_micro=decision["champion_auc_micro"],
                       model=trained["model"], steps=trained["steps"])
        write_json(rdir / SUMMARY, summary)
        write_json(out / "last.json", summary)
        return summary


def add_arguments(p) -> None:
    p.add_argument("--source", help="s3://bucket/prefix or a local folder (default: ingest.source, "
                                    "else s3://storage.bucket/storage.prefix)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"one folder per round, plus last.json (default: {DEFAULT_OUT})")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.source, args.out, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    new = f"{len(s['ingested'])} new video(s), {s['quarantined']} quarantined"
    if s["status"] == "nothing-new":
        print(f"retrain: no new footage to learn from ({new}; {s['reason']}); nothing to do")
    else:
        start = f"warm start from {s['warm_start']}" if s["warm_start"] else "from scratch"
        print(f"retrain: round {s['round']} ({new}), trained {start} for {s['steps']} steps, "
              f"auc_micro {s['auc_micro']:.4f} → v{s['version']} {s['status']}; {s['reason']}")
    for f in s["failed"]:
        print(f"retrain: not downloaded (the next run resumes): {f['error']}")
    return 1 if s["failed"] else 0
