"""`retrain`: ingest → train → evaluate → register, one command for a schedule (cron).

Each run plans a round (`pseudovad.retrain.plan_round`, the plan the Kubeflow retraining
pipeline makes too): ingest new footage, and if the training split was not learned already,
train in `runs/retrain/<round>/train` — warm-started from the champion pinned by version when
`ingest.warm_start` is true and there is one — evaluate on the store's fixed, labelled test split
or, without one, on the held-out end of every training video beside the champion (label-free),
and register the model, where the promotion gate decides whether it becomes champion. The
detector in production can therefore only stay the same or get better. A run killed mid-training
is resumed by the next one (same round, same checkpoint folder); downloads that failed are
reported and make the command exit 1, after the round trained on what arrived.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from pseudovad import retrain, tracking
from pseudovad.config import Config
from pseudovad.errors import ConfigError
from pseudovad.files import exclusive_lock, write_json
from pseudovad.stages import evaluate, register, train

DEFAULT_OUT = "runs/retrain"


def run(cfg: Config, source: Optional[str] = None, out: str | Path | None = None,
        progress: bool = False) -> dict[str, Any]:
    out = Path(out or DEFAULT_OUT)
    if not cfg.tracking.enabled:
        raise ConfigError("tracking.enabled: false, but retrain needs the MLflow registry (champion, gate)")
    # a cron tick that fires while the last round still trains must not start a second one
    with exclusive_lock(out / ".lock", "retrain"):
        rnd = retrain.plan_round(cfg, cfg.data.store, source, rounds=out, progress=progress)
        got = rnd.ingest
        summary: dict[str, Any] = {"round": rnd.name, "train_fingerprint": rnd.fingerprint,
                                   "ingested": [v["video"] for v in got["ingested"]],
                                   "quarantined": len(got["quarantined"]), "failed": rnd.failed,
                                   "source": got["source"], "status": None, "champion_before": rnd.champion}
        if not rnd.learn:
            summary.update(status="nothing-new", reason=rnd.reason)
            write_json(out / "last.json", summary)
            return summary

        rdir = out / rnd.name
        rcfg = retrain.round_config(cfg, rdir, rnd.init)
        summary["warm_start"] = rnd.init
        with tracking.run(rcfg, "retrain", fingerprint=rnd.fingerprint,
                          tags={"retrain.round": rnd.name, "retrain.ingested": len(got["ingested"]),
                                "retrain.warm_start": rnd.init or "scratch"}):
            trained = train.run(rcfg, progress=progress)
            metrics = evaluate.run(rcfg, model=trained["model"], progress=progress)
            decision = register.run(rcfg, model=trained["model"], metrics=Path(rcfg.evaluate.out) / "metrics.json")
            tracking.set_tags({"retrain.decision": "promoted" if decision["promoted"] else "kept",
                               "retrain.version": decision["version"]})
        summary.update(status="promoted" if decision["promoted"] else "kept", reason=decision["reason"],
                       version=decision["version"], champion_after=decision["champion_after"],
                       evidence=decision["evidence"], auc_micro=metrics.get("auc_micro"),
                       champion_auc_micro=decision["champion_auc_micro"],
                       **{k: metrics.get(k) for k in ("holdout_flagged_share", "synthetic_auc")},
                       model=trained["model"], steps=trained["steps"])
        write_json(rdir / retrain.ROUND_SUMMARY, summary)
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
              f"{register.evidence(s)} → v{s['version']} {s['status']}; {s['reason']}")
    for f in s["failed"]:
        print(f"retrain: not downloaded (the next run resumes): {f['error']}")
    return 1 if s["failed"] else 0
