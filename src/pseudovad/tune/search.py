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
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.config import Config
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import ConfigError, TrainingError
from pseudovad.files import claim, staged_outputs, write_json, write_text
from pseudovad.tune import space
from pseudovad.tune.trial import BEST_MODEL, BEST_STATE, error_line, trial

log = logging.getLogger(__name__)

EXPERIMENT = "search"        # Ray's experiment folder inside tune.out
TRIALS = "trials"
STATE = "search.json"        # what the experiment in search/ was started with
METRIC = "val_auc"
CLIENT_TRIES = 3             # connecting to a Ray cluster through Ray Client (ray://)
CLIENT_RETRY_S = 5.0


# ----------------------------------------------------------------------------------------------
# Inputs: the validation / test split, absolute paths for the workers, the resume key

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


def _restorable(out: Path, key: str) -> bool:
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


# ----------------------------------------------------------------------------------------------
# Ray

THREAD_TIMEOUT_S = 60   # seconds Tune waits for a stopped trial's thread before reusing its actor


@contextlib.contextmanager
def ray_session(cfg: Config) -> Iterator[None]:
    """Use a running Ray (tests, notebooks), else start one: local by default, `tune.address` for a cluster.

    Where: `tune.address` (`ray://head:10001`, `host:port`, `auto`), else `RAY_ADDRESS` (what
    `ray job submit` sets for its entry point), else a fresh local Ray: `address="local"`, because
    a plain `ray.init()` would join whatever cluster `ray start` last ran on this machine (its
    address file in /tmp/ray), e.g. someone else's. A local Ray binds to 127.0.0.1
    (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set before Ray is imported): nothing else on the
    network can reach its ports.
    """
    address, source = cfg.tune.address, "tune.address"
    if address is None and os.environ.get("RAY_ADDRESS"):
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # With reuse_actors, Tune waits TUNE_FUNCTION_THREAD_TIMEOUT_S (default 2 s) for a stopped
    # trial's training thread to reach its next report before handing the actor to the next trial;
    # on a loaded 2-core machine an epoch step takes longer and the reuse fails. Workers of a local
    # Ray inherit this environment.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(THREAD_TIMEOUT_S))
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray Client (ray://) starts a server process per connection on the head; on a busy head that
    # start can fail ("Initialization failure from server") and work the next time: three tries
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
            break
        except (ConnectionError, RuntimeError, ValueError) as e:
            if address is None:
                raise
            why = " ".join(str(e).split())[:200]
            if attempt == CLIENT_TRIES or "Initialization failure from server" not in why:
                raise ConfigError(f"{source}: cannot connect to Ray at {address} ({why})") from None
            log.warning("Ray at %s: connection %d of %d failed (%s); trying again", address, attempt, CLIENT_TRIES, why)
            ray.shutdown()
            time.sleep(CLIENT_RETRY_S)
    try:
        yield
    finally:
        ray.shutdown()


def _scheduler(cfg: Config):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    t = cfg.tune
    if t.scheduler == "fifo":
        return FIFOScheduler()
    # time_attr is the trial's own epoch count, not Ray's report counter, so a trial resumed from its
    # train checkpoint after a restore sits on the right rung
    return ASHAScheduler(time_attr="epoch", max_t=t.max_epochs, grace_period=t.grace_period,
                         reduction_factor=t.reduction_factor)


def _searcher(cfg: Config):
    search = cfg.tune.search
    if search in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=cfg.seed)
    package = {"optuna": "optuna", "hyperopt": "hyperopt"}[search]
    try:
        __import__(package)
    except ImportError:
        raise ConfigError(f"tune.search: {search} needs the {package} package, which is not installed "
                          f"(pip install {package}, or use random or grid)") from None
    if search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=cfg.seed)
    from ray.tune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(random_state_seed=cfg.seed)


# ----------------------------------------------------------------------------------------------
# Results

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


def _close_children(parent_run_id: str, experiment_id: str, rows: list[dict[str, Any]]) -> int:
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


# ----------------------------------------------------------------------------------------------
# The search

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
    searcher = _searcher(cfg)
    key = search_key(cfg, dims, fs)
    tu = cfg.tune

    with claim(out, "tune"), ray_session(cfg), contextlib.ExitStack() as stack:
        from ray import tune

        restore = _restorable(out, key)
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
                        metric=METRIC, mode="max", scheduler=_scheduler(cfg), search_alg=searcher,
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
                summary["mlflow_child_runs"] = _close_children(parent.info.run_id, parent.info.experiment_id, rows)
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
