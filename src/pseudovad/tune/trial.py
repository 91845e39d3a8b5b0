"""One Ray Tune trial: train a point of the search space, report validation AUC every epoch.

Runs in a Ray worker process, so everything it needs arrives explicitly in `setup` (built by
`pseudovad.tune.search`): the base params tree with absolute paths (Ray moves the worker into its
own working folder), the trial output root, the validation video ids, and the MLflow tracking URI,
experiment and parent run id. Nothing here reads the driver's environment or working folder.

Each trial:
- builds its Config from the base tree + its sampled values (an invalid point raises ConfigError:
  Tune records the trial as errored, the search goes on), with train.epochs = tune.max_epochs
  and train.out = <trials>/<trial id> (persistent, so a restored search resumes the trial from
  train's own checkpoint);
- after every epoch scores the validation videos with the live detector (micro AUC, the papers'
  protocol), saves the detector as best_model.pt when validation AUC improves, and calls
  `ray.tune.report` (ASHA stops bad trials on these reports);
- logs into an MLflow child run of the search's parent run. The child run is driven through
  MlflowClient by run id, not as the process's active run; a trial trains with
  `training.fit.fit_detector` and never opens train's own MLflow run: no model export per
  trial, no run nested in a run.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pseudovad import config as config_mod
from pseudovad.files import write_json
from pseudovad.tune.space import apply, plain

log = logging.getLogger(__name__)

BEST_MODEL = "best_model.pt"
BEST_STATE = "best.json"
TRIAL_FILE = "trial.json"


def trial_config(setup: dict[str, Any], overrides: dict[str, Any], out: Path) -> config_mod.Config:
    """The Config of one trial: base + sampled values; fixed epochs, output folder, no train run."""
    return config_mod.from_dict(apply(setup["tree"], {
        **overrides, "train.epochs": setup["max_epochs"], "train.out": str(out), "tracking.enabled": False}))


class ChildRun:
    """The MLflow child run of one trial, addressed by id (safe across Ray's threads and actor reuse)."""

    def __init__(self, tracking_setup: dict[str, Any], cfg, trial_id: str, trial_name: str,
                 overrides: dict[str, Any]):
        from mlflow import MlflowClient
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        from pseudovad import tracking

        self.uri = tracking_setup["uri"]
        tracking.configure(uri=self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.warned = False
        tags = tracking.run_tags(cfg, "tune-trial", extra={
            **tracking_setup.get("tags", {}), MLFLOW_PARENT_RUN_ID: tracking_setup["parent_run_id"],
            MLFLOW_RUN_NAME: trial_name, "tune.trial_id": trial_id,
            "tune.overrides": json.dumps(overrides, sort_keys=True)})
        with tracking.errors(f"tracking {tracking.redact(self.uri)}", self.uri):
            run = self.client.create_run(tracking_setup["experiment_id"], tags=tags, run_name=trial_name)
            self.run_id = run.info.run_id
            self._log_params(tracking.params(cfg))

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Per-epoch metrics; a tracking hiccup warns once instead of killing the trial."""
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
        try:
            self.client.log_batch(self.run_id, metrics=items)
        except Exception as e:
            if not self.warned:
                log.warning("MLflow logging for trial run %s failed, continuing without it: %s", self.run_id, e)
                self.warned = True

    def end(self, status: str, outcome: str, error: str | None = None) -> None:
        try:
            self.client.set_tag(self.run_id, "tune.outcome", outcome)
            if error:
                self.client.set_tag(self.run_id, "tune.error", error[:4000])
            self.client.set_terminated(self.run_id, status)
        except Exception as e:  # the driver reconciles runs left RUNNING
            log.warning("could not close MLflow run %s: %s", self.run_id, e)


def error_line(e: BaseException) -> str:
    """One line naming the exception (Ray wraps a trial's exception; its `cause` is the original)."""
    cause = getattr(e, "cause", None) or e
    return f"{type(cause).__name__}: {' '.join(str(cause).split())}"[:500]


def trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """The Ray Tune function trainable (see the module doc)."""
    from ray import tune

    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device, set_threads
    from pseudovad.evaluation import score_videos
    from pseudovad.evaluation.protocol import summarize
    from pseudovad.geometry import ClipGeometry
    from pseudovad.models.model_file import model_meta, save_model
    from pseudovad.training.fit import fit_detector

    import ray

    ctx = tune.get_context()
    trial_id, trial_name = ctx.get_trial_id(), ctx.get_trial_name()
    # the Ray node running this trial (on a cluster: which worker pod; Tune's own `hostname` and
    # `node_ip` cannot tell two nodes of one host apart)
    node_id = ray.get_runtime_context().get_node_id()
    overrides = {k: plain(v) for k, v in config.items()}
    out = Path(setup["trials"]) / trial_id
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / TRIAL_FILE, {"trial_id": trial_id, "trial_name": trial_name, "overrides": overrides,
                                  "node_id": node_id})
    if setup.get("tracking"):
        os.environ["MLFLOW_TRACKING_URI"] = setup["tracking"]["uri"]
    cfg = trial_config(setup, overrides, out)
    # Ray reserved tune.cpus_per_trial CPUs for this trial: torch gets exactly that many threads
    # (intra- and inter-op), and data.num_workers: null then resolves from it (none on CPU)
    set_threads(max(1, int(setup.get("threads", 1))))

    store = FrameStore(setup["store"])
    val = store.videos("testing", setup["val_videos"])
    labels = {e.id: store.labels(e).astype(np.int64) for e in val}
    device = resolve_device(cfg.device)
    best_path = out / BEST_STATE
    best = json.loads(best_path.read_text()) if best_path.is_file() else {"val_auc": None, "epoch": None}
    child = ChildRun(setup["tracking"], cfg, trial_id, trial_name, overrides) if setup.get("tracking") else None

    def on_epoch(epoch: int, record: dict, method) -> None:
        net = method.predictor()
        m = summarize(labels, score_videos(net, model_meta(cfg), store, val, device, cfg.evaluate.batch_size,
                                           amp=cfg.inference.amp, memory_format=cfg.inference.memory_format),
                      ClipGeometry.from_config(cfg), cfg.evaluate.protocol)
        auc = float(m["auc_micro"])
        if best["val_auc"] is None or auc > best["val_auc"]:
            best.update(val_auc=auc, epoch=epoch + 1)
            save_model(out / BEST_MODEL, net, model_meta(cfg, tune={
                "trial_id": trial_id, "epoch": epoch + 1, "val_auc": auc, "val_videos": list(labels),
                "overrides": overrides}))
            write_json(best_path, best)
        metrics = {"epoch": epoch + 1, "val_auc": auc, "best_val_auc": best["val_auc"], "val_eer": m["eer"], "node_id": node_id,
                   **({"val_auc_macro": m["auc_macro"]} if m["auc_macro"] is not None else {}),
                   "threads": method.runtime.threads, "num_workers": method.runtime.num_workers,
                   **{k: v for k, v in record.items() if k.startswith(("loss", "noise_norm", "lr"))}}
        log.info("trial %s epoch %d: val_auc=%.4f", trial_id, epoch + 1, auc)
        if child:
            child.log(metrics, step=epoch + 1)
            metrics["mlflow_run_id"] = child.run_id
        tune.report(metrics)

    try:
        fit_detector(cfg, store=setup["store"], out=out, callbacks=[on_epoch], progress=False)
    except SystemExit:  # Ray ends a trial the scheduler stopped by exiting its thread
        if child:
            child.end("FINISHED", "stopped_early")
        raise
    except BaseException as e:
        if child:
            child.end("FAILED", "error", error_line(e))
        raise
    if child:
        child.end("FINISHED", "completed")
