"""A run around a stage: the dataset's experiment, the params (secrets dropped) and tags (git
commit, Kubeflow run, DVC experiment) a run starts with, the pipeline's parent run, stale runs
closed, SIGTERM turned into a FAILED run instead of one left RUNNING.

One pipeline run, one parent run: train, evaluate and register of one pipeline run (a `dvc repro`,
a `dvc exp run`, a Kubeflow run, a retraining round) are children of one parent run named after
the method and its key settings (`ltgpa-learned-λ0.1-p0.5`), found by the pipeline run's key
(`PSEUDOVAD_PIPELINE_RUN`, else the DVC experiment name) or, without one, by the model file they
share (train tags its parent with the model's sha256; evaluate and register look it up). Runs
opened inside another run (a retraining round, a tune search) are its children instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

from pseudovad import build, results
from pseudovad.errors import TrackingError
from pseudovad.method_spec import get_method
from pseudovad.tracking.store import _describe, _is_local, client, configure, errors, has_error_code, redact, tracking_uri

log = logging.getLogger(__name__)


# A Kubeflow step's run, as environment variables (pipelines/tasks.step sets the pipeline and the
# image at compile time, kubeflow.step_config the run id and the typed parameters the user set, as
# JSON, from the step's arguments): MLflow tags of every run the step opens, so a run in MLflow
# leads back to its KFP run and image, and says which settings came from typed parameters.
KFP_TAGS = {"kfp.run_id": "PSEUDOVAD_KFP_RUN_ID", "kfp.pipeline": "PSEUDOVAD_KFP_PIPELINE",
            "kfp.image": "PSEUDOVAD_KFP_IMAGE", "kfp.parameters_set": "PSEUDOVAD_KFP_PARAMETERS_SET"}

# The experiment tag the MLflow 3 UI reads to choose its layout: a model-training experiment opens
# on its runs (without it the UI guesses, and an empty experiment opens on GenAI traces)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# A pipeline run's key: set it (e.g. to the Kubeflow run id) and every stage run with it is a child
# of one parent run; `dvc exp run` gives each experiment's stages its name in DVC_EXP_NAME.
PIPELINE_ENV = "PSEUDOVAD_PIPELINE_RUN"
PIPELINE_STAGES = ("train", "evaluate", "register")
PIPELINE = "pipeline"                    # the parent runs' pseudovad.stage tag
MODEL_SHA_TAG = "pseudovad.model_sha256"
_SECRET_WORDS = {"secret", "password", "passwd", "key", "token", "credential", "credentials", "auth"}

_active: list[dict[str, Any]] = []       # runs opened by `run()` in this process, innermost last


def experiment_id(cfg) -> str:
    """The dataset's experiment, created on first use (artifacts under the project on a local store)."""
    from mlflow.exceptions import MlflowException

    c = client()
    name = cfg.experiment_name
    kind, training = EXPERIMENT_KIND
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(f"experiment {name!r} is deleted in {redact(tracking_uri())} (restore it in the "
                                "MLflow UI or set tracking.experiment)")
        if kind not in (exp.tags or {}):   # made before pseudovad set it (a kind the user chose stays)
            c.set_experiment_tag(exp.experiment_id, kind, training)
        return exp.experiment_id
    location = None
    if _is_local(tracking_uri()):
        location = Path(cfg.tracking.artifact_location).resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location, tags={"dataset": cfg.data.name, kind: training})
    except MlflowException as e:  # created concurrently (e.g. by another Ray trial)
        if not has_error_code(e, "RESOURCE_ALREADY_EXISTS") and "already exists" not in str(e):
            raise
        return c.get_experiment_by_name(name).experiment_id


def _secret_key(key: str) -> bool:
    return any(part in _SECRET_WORDS for part in re.split(r"[._\-]", key.lower()))


def params(cfg) -> dict[str, str]:
    """cfg.flat() as MLflow params: secrets dropped, URL credentials redacted, values ≤ 500 chars."""
    out = {}
    for k, v in cfg.flat().items():
        if _secret_key(k):
            continue
        s = json.dumps(v) if isinstance(v, (list, dict)) else ("null" if v is None else str(v))
        if "://" in s:
            s = redact(s)
        out[k] = s if len(s) <= 500 else s[:497] + "..."
    return out


def run_label(cfg) -> str:
    """Method, pseudo-anomaly kind and the settings that tell two runs apart, as the method's spec
    writes them: e.g. `ltgpa-learned-λ0.1-p0.5`, `ltgpa-baseline`, `mae-nct-r0.75-cst0.3`."""
    return get_method(cfg.model.method).run_label(cfg)


def pipeline_key() -> str | None:
    """The key of the pipeline run this process belongs to: PSEUDOVAD_PIPELINE_RUN, else the DVC
    experiment `dvc exp run` is running, else None."""
    key = os.environ.get(PIPELINE_ENV) or (f"dvc-exp-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME")
                                           else None)
    if key and not re.fullmatch(r"[A-Za-z0-9._:/@+-]{1,200}", key):   # it goes into a search filter
        key = "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return key


def run_tags(cfg, stage: str, fingerprint: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, str]:
    tags = {"pseudovad.stage": stage, "dataset": cfg.data.name, "method": cfg.model.method,
            "pseudovad.label": run_label(cfg)}
    commit = results.git("rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
        tags["git.dirty"] = "true" if results.git("status", "--porcelain", "--untracked-files=no") else "false"
    elif (source := build.source_commit()) is not None:
        # outside a checkout (a user's own folder, the project image): the commit of the code
        # that ran: the image's baked one, else the checkout pseudovad is installed from
        tags["git.commit"] = source.removesuffix("-dirty")
        tags["git.dirty"] = str(source.endswith("-dirty")).lower()
    if os.environ.get("DVC_STAGE"):
        tags["dvc.stage"] = os.environ["DVC_STAGE"]
    tags.update({tag: os.environ[env] for tag, env in KFP_TAGS.items() if os.environ.get(env)})
    if os.environ.get("DVC_EXP_NAME"):    # set by `dvc exp run` for every stage it runs
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    if fingerprint:
        tags["data.fingerprint"] = fingerprint
    tags.update({k: str(v) for k, v in (extra or {}).items() if v is not None})
    return tags


class Terminated(SystemExit):
    """SIGTERM (a preempted pod, `kill`, a scheduler's timeout) as an exception: the run's `finally`
    closes it KILLED and the process still exits with 128 + 15, as it would have."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM raises `Terminated` instead of ending the process on the spot, which would
    leave the MLflow run RUNNING forever. Only in the main thread (where Python runs signal
    handlers) and only over the default action, never over a handler someone else installed."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)   # a second SIGTERM during clean-up ends it
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


OUT_TAG = "pseudovad.out"   # the output folder of a train / evaluate run: a later run there closes it


def out_tag(out: str | Path) -> dict[str, str]:
    """The tag that lets `close_stale_runs` recognise a run writing into `out`."""
    return {OUT_TAG: str(Path(out).resolve())}


def close_stale_runs(cfg, stage: str, out: str | Path) -> list[str]:
    """Mark KILLED the runs of `stage` into `out` still RUNNING: their process died without closing
    them (SIGKILL, power loss). Call while holding `files.claim(out)`: no live process writes
    there then, so every such run is stale. Their pipeline parent run, left RUNNING by the same
    kill, is closed KILLED too (a later stage of that pipeline run sets it RUNNING again). Returns
    the stage runs' ids."""
    if not cfg.tracking.enabled:
        return []
    uri = configure(cfg)
    where = str(Path(out).resolve())
    with errors(f"MLflow {stage} runs in {where}", uri):
        c = client()
        exp = experiment_id(cfg)
        found = c.search_runs([exp], filter_string=f"attributes.status = 'RUNNING' and tags.`pseudovad.stage` = '{stage}'",
                              max_results=1000)
        stale_runs = [r for r in found if r.data.tags.get(OUT_TAG) == where]
        stale = [r.info.run_id for r in stale_runs]
        for run_id in stale:
            c.set_tag(run_id, "pseudovad.closed", "left RUNNING by a killed process; closed by the next run in its folder")
            c.set_terminated(run_id, "KILLED")
        for parent_id in {r.data.tags.get("mlflow.parentRunId") for r in stale_runs} - {None}:
            parent = c.get_run(parent_id)
            if parent.info.status == "RUNNING" and parent.data.tags.get("pseudovad.stage") == PIPELINE:
                c.set_tag(parent_id, "pseudovad.closed", f"its {stage} run was killed; closed by the next {stage} in {where}")
                c.set_terminated(parent_id, "KILLED")
    for run_id in stale:
        log.info("closed MLflow run %s (%s in %s): its process was killed", run_id, stage, where)
    return stale


def _pipeline_parent(c, exp: str, cfg, stage: str, model_sha256: str | None) -> str:
    """The parent run of this stage's pipeline run (module doc), created when it is the first stage."""
    key = pipeline_key()
    if key:
        where = f"tags.`pseudovad.pipeline_run` = '{key}'"
    elif model_sha256 and stage != "train":
        where = f"tags.`{MODEL_SHA_TAG}` = '{model_sha256}'"
    else:                                   # a train without a key starts a pipeline run of its own
        where = None
    if where:
        found = c.search_runs([exp], f"tags.`pseudovad.stage` = '{PIPELINE}' and {where}", max_results=1,
                              order_by=["attributes.start_time DESC"])
        if found:
            return found[0].info.run_id
    label = run_label(cfg)
    exp_name = os.environ.get("DVC_EXP_NAME")
    tags = run_tags(cfg, PIPELINE, extra={"pseudovad.pipeline_run": key or f"run-{os.urandom(6).hex()}",
                                          MODEL_SHA_TAG: model_sha256})
    return c.create_run(exp, tags=tags, run_name=f"{label} ({exp_name})" if exp_name else label).info.run_id


def _close_parent(c, parent: str, status: str) -> None:
    """A parent run ends as its last child did (and runs again while the next one runs)."""
    try:
        c.set_terminated(parent, status)
    except Exception as e:  # the server went away; the parent stays RUNNING there
        log.warning("could not close MLflow parent run %s: %s", parent, " ".join(str(e).split())[:200])


@contextlib.contextmanager
def run(cfg, stage: str, run_name: str | None = None, parent_run_id: str | None = None, nested: bool = False,
        fingerprint: str | None = None, tags: dict[str, Any] | None = None,
        model_sha256: str | None = None) -> Iterator[Any]:
    """An MLflow run around a stage: tags, all params; FINISHED / FAILED / KILLED on exit.

    Yields the mlflow ActiveRun, or None when `tracking.enabled` is false (then every log_* call
    inside is a no-op). A run opened while another is active becomes its child; Ray Tune trials
    in other processes pass `parent_run_id`. Otherwise train, evaluate and register become
    children of their pipeline run's parent (module doc; `model_sha256`: the model file the
    stage evaluates or registers). Named `<stage>-<run_label>` unless `run_name` is given.
    """
    if not cfg.tracking.enabled:
        yield None
        return
    import mlflow

    uri = configure(cfg)
    where = f"MLflow {stage} run"
    pipeline_parent = None
    with errors(where, uri):
        exp = experiment_id(cfg)
        nested = nested or parent_run_id is not None or mlflow.active_run() is not None
        if not nested and stage in PIPELINE_STAGES:
            c = client()
            pipeline_parent = parent_run_id = _pipeline_parent(c, exp, cfg, stage, model_sha256)
            c.update_run(pipeline_parent, status="RUNNING")
            nested = True
        active = mlflow.start_run(experiment_id=exp, run_name=run_name or f"{stage}-{run_label(cfg)}", nested=nested,
                                  parent_run_id=parent_run_id, tags=run_tags(cfg, stage, fingerprint, tags))
    try:
        with errors(where, uri):
            mlflow.log_params(params(cfg))
    except BaseException:
        mlflow.end_run("FAILED")
        if pipeline_parent:
            _close_parent(client(), pipeline_parent, "FAILED")
        raise
    handle = {"run_id": active.info.run_id, "uri": uri, "warned": False, "pipeline_parent": pipeline_parent,
              "experiment_id": exp}
    _active.append(handle)
    status = "FINISHED"
    try:
        with _sigterm_raises():
            yield active
    except (KeyboardInterrupt, Terminated):
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        _active.remove(handle)
        try:
            mlflow.end_run(status)
        except Exception as e:  # the server went away; the run stays RUNNING there
            log.warning("could not close MLflow run %s: %s", handle["run_id"], _describe(e, uri))
        if pipeline_parent:
            _close_parent(client(), pipeline_parent, status)


def active_run_id() -> str | None:
    return _active[-1]["run_id"] if _active else None
