"""A search's results: one row per trial (outcome, AUCs, values, error), results.csv, the best
params file, the best detector scored on the held-out videos, the trials' MLflow child runs closed.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pseudovad import config as config_mod
from pseudovad.config import Config
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.tune import space
from pseudovad.tune.trial import BEST_STATE, error_line

METRIC = "val_auc"



def trial_statuses(exp: Path) -> dict[str, tuple[str, str]]:
    """{trial folder name: (trial id, Tune's status)}: TERMINATED, ERROR, or PENDING / RUNNING /
    PAUSED when the search was interrupted."""
    from ray.tune import ExperimentAnalysis

    return {Path(t.path).name: (t.trial_id, t.status) for t in ExperimentAnalysis(str(exp)).trials}


def trial_rows(results, dims: dict[str, space.Dim], max_epochs: int, statuses: dict[str, tuple[str, str]],
               trials: Path) -> list[dict[str, Any]]:
    """One row per trial from Ray's ResultGrid, with the best epoch from the trial's own best.json
    (what its best_model.pt holds; Ray's history of a trial restarted by a restore is partial)."""
    rows = []
    for r in results:
        m = r.metrics or {}
        cfg = {k: space.plain(v) for k, v in (r.config or {}).items()}
        tid, status = statuses.get(Path(r.path).name,
                                   (m.get("trial_id", ""), "ERROR" if r.error is not None else "TERMINATED"))
        epochs = int(m["epoch"]) if m.get("epoch") is not None else 0
        if status == "ERROR":
            outcome = "error"
        elif status != "TERMINATED":
            outcome = "unfinished"
        else:
            outcome = "completed" if epochs >= max_epochs else "stopped_early"
        best_file = trials / tid / BEST_STATE
        best = json.loads(best_file.read_text()) if tid and best_file.is_file() else {}
        row = {"trial_id": tid, "outcome": outcome, "epochs": epochs, "val_auc": m.get(METRIC),
               "best_val_auc": best.get("val_auc"), "best_epoch": best.get("epoch")}
        row.update({k: cfg.get(k) for k in dims})
        row["error"] = error_line(r.error) if r.error is not None and outcome == "error" else ""
        row["mlflow_run_id"] = m.get("mlflow_run_id", "")
        row["node_id"] = m.get("node_id", "")
        row["threads"], row["num_workers"] = m.get("threads"), m.get("num_workers")
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial_id"])   # Tune's creation order: stable across restores


def results_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
                        for k, v in r.items()})
    return buf.getvalue()


def best_params_text(cfg: Config, overrides: dict[str, Any], note: str) -> str:
    """The base params with the best values set, checked by the same loader `train -P` uses."""
    tree = space.apply(cfg.to_dict(), overrides)
    config_mod.from_dict(tree)
    header = "".join(f"# {line}\n" for line in note.splitlines())
    return header + yaml.safe_dump(tree, sort_keys=False)


def evaluate_held_out(model_path: Path, store: FrameStore, entries: list[VideoEntry], cfg: Config) -> dict[str, Any]:
    from pseudovad.device import resolve_device
    from pseudovad.evaluation import score_videos
    from pseudovad.evaluation.protocol import summarize
    from pseudovad.geometry import ClipGeometry
    from pseudovad.models.model_file import load_model

    device = resolve_device(cfg.device)
    net, meta = load_model(model_path, device)
    labels = {e.id: store.labels(e).astype(np.int64) for e in entries}
    psnr = score_videos(net, meta, store, entries, device, cfg.evaluate.batch_size,
                        amp=cfg.inference.amp, memory_format=cfg.inference.memory_format)
    return summarize(labels, psnr, ClipGeometry.from_meta(meta), cfg.evaluate.protocol)


def close_children(parent_run_id: str, experiment_id: str, rows: list[dict[str, Any]]) -> int:
    """Child runs of the parent, closed with their trial's outcome (a stopped trial's process may
    have been ended before it could close its run); returns how many child runs exist."""
    from pseudovad import tracking

    c = tracking.client()
    by_id = {r["trial_id"]: r for r in rows}
    with tracking.errors("MLflow: closing the trials' child runs"):
        children = c.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                 max_results=10_000)
        for run in children:
            row = by_id.get(run.data.tags.get("tune.trial_id"))
            if row is None:
                continue
            if run.data.tags.get("tune.outcome") != row["outcome"]:
                c.set_tag(run.info.run_id, "tune.outcome", row["outcome"])
            if run.info.status == "RUNNING":
                c.set_terminated(run.info.run_id, "FAILED" if row["outcome"] == "error" else "FINISHED")
    return len(children)
