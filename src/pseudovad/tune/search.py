"""A Ray Tune search of λ, p, σ, mask ratio, lr …, on validation videos, never on the test set
(what `pseudovad tune` and the Kubeflow tune step run).

Protocol. The labelled test videos are split in two: `tune.val_videos` (the tuning objective:
frame-level micro AUC on these, reported by every trial after every epoch) and the rest (the
held-out test videos). Each trial trains `tune.max_epochs` epochs from scratch; ASHA (default)
stops trials whose validation AUC falls behind at its rungs. The best trial is the one with the
highest validation AUC at any epoch; its detector at that epoch is scored once on the held-out
videos only, and that AUC is `test_auc`. No model is retrained after the search.

Writes to the output folder (`tune.out`):
  best_params.yaml  the base params with the best trial's values: `pseudovad train -P` takes it
  best_model.pt     the best trial's detector at its best validation epoch
  results.csv       one row per trial: values, outcome (completed / stopped_early / error), AUCs, error
  metrics.json      validation and test AUC, counts of trials (numbers; written last)
  provenance.json   the best trial and its values, the video split, the errors (`pseudovad.results`)
  search/           Ray Tune's experiment folder: a re-run with the same params restores it
  trials/<id>/      each trial's train output (checkpoints, history, best_model.pt)
MLflow: one parent run per invocation (best values as `best.<key>` params, test AUC, the files
above), one child run per trial (its params and per-epoch validation AUC and losses).
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pseudovad import results
from pseudovad.config import Config
from pseudovad.data.store import FrameStore
from pseudovad.errors import TrainingError
from pseudovad.files import claim, staged_outputs, write_json, write_text
from pseudovad.tune import space
from pseudovad.tune.inputs import EXPERIMENT, STATE, TRIALS, absolute_uri, restorable, search_key, split_videos, worker_tree
from pseudovad.tune.results import (METRIC, best_params_text, close_children, evaluate_held_out, results_csv,
                                    trial_rows, trial_statuses)
from pseudovad.tune.session import make_scheduler, make_searcher, ray_session
from pseudovad.tune.trial import BEST_MODEL, trial

log = logging.getLogger(__name__)


# the texts of the search's summary: provenance.json (`pseudovad.results`); the rest is metrics.json
PROVENANCE_KEYS = ("best_trial", "best_config", "val_videos", "test_videos", "search", "scheduler", "restored",
                   "errors", "method", "dataset", "mlflow_parent_run_id")

def run_search(cfg: Config, store: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """The search (module doc) inside an MLflow parent run; returns metrics.json's summary plus
    `out` and `best_params`."""
    from pseudovad import tracking

    t0 = time.perf_counter()
    base = Path.cwd()
    out = Path(out or cfg.tune.out).resolve()
    store_path = Path(store or cfg.data.store).resolve()
    fs = FrameStore(store_path)
    dims = space.parse_space(cfg)
    val, held = split_videos(cfg, fs)
    searcher = make_searcher(cfg)
    key = search_key(cfg, dims, fs)
    tu = cfg.tune

    with claim(out, "tune"), ray_session(cfg), contextlib.ExitStack() as stack:
        from ray import tune

        restore = restorable(out, key)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / STATE, {"key": key, "space": {k: d.describe() for k, d in dims.items()}})
        tags = {"tune.val_videos": ",".join(e.id for e in val), "tune.test_videos": ",".join(e.id for e in held),
                "tune.restored": str(restore).lower()}
        with tracking.run(cfg, "tune", fingerprint=fs.fingerprint("testing", [e.id for e in val]), tags=tags) as parent:
            setup = {"tree": worker_tree(cfg, store_path, base), "store": str(store_path), "trials": str(out / TRIALS),
                     "val_videos": [e.id for e in val], "max_epochs": tu.max_epochs,
                     "threads": max(1, int(tu.cpus_per_trial)), "tracking": None}
            if parent is not None:
                commit = tracking.run_tags(cfg, "tune").get("git.commit")
                setup["tracking"] = {"uri": absolute_uri(tracking.tracking_uri(cfg), base),
                                     "experiment_id": parent.info.experiment_id,
                                     "parent_run_id": parent.info.run_id,
                                     "tags": {"git.commit": commit} if commit else {}}
            trainable = tune.with_resources(tune.with_parameters(trial, setup=setup),
                                            {"cpu": tu.cpus_per_trial, "gpu": tu.gpus_per_trial})
            if restore:
                log.info("restoring the search in %s", out / EXPERIMENT)
                tuner = tune.Tuner.restore(str(out / EXPERIMENT), trainable, resume_errored=True)
            else:
                tuner = tune.Tuner(
                    trainable, param_space=space.to_ray(dims, tu.search),
                    tune_config=tune.TuneConfig(
                        metric=METRIC, mode="max", scheduler=make_scheduler(cfg), search_alg=searcher,
                        num_samples=1 if tu.search == "grid" else tu.num_samples,
                        max_concurrent_trials=tu.max_concurrent or None, reuse_actors=True),
                    run_config=tune.RunConfig(name=EXPERIMENT, storage_path=str(out), verbose=1,
                                              failure_config=tune.FailureConfig(max_failures=tu.max_failures)))
            grid = tuner.fit()   # not `results`: that is the module
            rows = trial_rows(grid, dims, tu.max_epochs, trial_statuses(out / EXPERIMENT), out / TRIALS)
            unfinished = [r["trial_id"] for r in rows if r["outcome"] == "unfinished"]
            if unfinished:  # Ctrl-C: Tune saved the experiment and returned early
                write_text(out / "results.csv", results_csv(rows))
                raise TrainingError(f"tune: search interrupted with {len(unfinished)} unfinished trial(s); run the same "
                                    f"command again to restore it from {out / EXPERIMENT} (so far: {out / 'results.csv'})")
            errors = [{"trial_id": r["trial_id"], "error": r["error"]} for r in rows if r["outcome"] == "error"]
            for e in errors:
                log.error("trial %s failed: %s", e["trial_id"], e["error"])
            scored = [r for r in rows if r["best_val_auc"] is not None]
            if not scored:
                write_text(out / "results.csv", results_csv(rows))
                first = f"; first error: {errors[0]['error']}" if errors else ""
                raise TrainingError(f"tune: none of {len(rows)} trials reported a validation AUC "
                                    f"(results in {out / 'results.csv'}){first}")
            best = max(scored, key=lambda r: r["best_val_auc"])   # ties: the first trial created
            best_model = out / TRIALS / best["trial_id"] / BEST_MODEL
            test = evaluate_held_out(best_model, fs, held, cfg)
            # the verdict (results.csv, best_model.pt, best_params.yaml, metrics.json, provenance.json) changes together
            stage = stack.enter_context(staged_outputs(out, "tune"))
            write_text(stage / "results.csv", results_csv(rows))
            shutil.copyfile(best_model, stage / BEST_MODEL)
            overrides = {k: best[k] for k in dims}
            summary: dict[str, Any] = {
                "best_trial": best["trial_id"], "best_val_auc": best["best_val_auc"], "best_epoch": best["best_epoch"],
                "test_auc": test["auc_micro"], "test_auc_macro": test["auc_macro"], "test_eer": test["eer"],
                "val_videos": [e.id for e in val], "test_videos": [e.id for e in held],
                "trials": len(rows), "completed": sum(r["outcome"] == "completed" for r in rows),
                "stopped_early": sum(r["outcome"] == "stopped_early" for r in rows), "errored": len(errors),
                "search": tu.search, "scheduler": tu.scheduler, "max_epochs": tu.max_epochs, "restored": restore,
                "best_config": overrides, "errors": errors, "method": cfg.model.method, "dataset": cfg.data.name,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            note = (f"pseudovad params from `pseudovad tune` ({cfg.data.name}, {cfg.model.method}): the base params with\n"
                    f"the best trial's values ({best['trial_id']}, epoch {best['best_epoch']} of {tu.max_epochs}):\n"
                    + "".join(f"  {k}: {v!r}\n" for k, v in overrides.items())
                    + f"validation AUC {best['best_val_auc']:.4f} on {', '.join(e.id for e in val)}; "
                    f"held-out test AUC {test['auc_micro']:.4f} on {', '.join(e.id for e in held)}.\n"
                    f"Train with it: pseudovad train -P {out / 'best_params.yaml'}")
            write_text(stage / "best_params.yaml", best_params_text(cfg, overrides, note))
            if parent is not None:
                summary["mlflow_parent_run_id"] = parent.info.run_id
                summary["mlflow_child_runs"] = close_children(parent.info.run_id, parent.info.experiment_id, rows)
                tracking.set_tags({"tune.best_trial": best["trial_id"],
                                   **{f"best.{k}": json.dumps(v) for k, v in overrides.items()}})
                tracking.log_metrics({k: summary[k] for k in ("best_val_auc", "test_auc", "test_auc_macro", "test_eer",
                                                              "trials", "completed", "stopped_early", "errored")})
            summary = results.write(stage, summary, PROVENANCE_KEYS)
            stack.close()   # commit
            if parent is not None:
                for name in ("best_params.yaml", "results.csv", results.METRICS, results.PROVENANCE):
                    tracking.log_artifacts(out / name)
    return {**summary, "out": str(out), "best_params": str(out / "best_params.yaml")}
