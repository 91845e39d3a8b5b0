"""MLflow run tracking: a run around each stage, its params, metrics, tags, artifacts and the logged detector.

Stages call a handful of functions and never touch MLflow directly, so tracking can be switched
off (`tracking.enabled: false`) without an `if` in every stage, and every MLflow failure reaches
the user as one `TrackingError` line instead of a retry storm and a traceback:

    with tracking.run(cfg, "train", fingerprint=fp):
        tracking.log_epoch(record)            # inside the block; no-ops when tracking is off
        tracking.log_model("runs/train/model.pt")

Where runs go: `MLFLOW_TRACKING_URI` if set, else `tracking.uri` (default `sqlite:///mlflow.db`
in the working folder). One experiment per dataset (`cfg.experiment_name`), a model-training
experiment (the UI opens it on its runs, not on GenAI traces); on a local store it is created with
its artifact folder at `tracking.artifact_location` (default `mlruns/`, absolute), so artifacts
stay inside the project.

One pipeline run, one parent run: train, evaluate and register of one pipeline run (a `dvc repro`,
a `dvc exp run`, a Kubeflow run, a retraining round) are children of one parent run named after
the method and its key settings (`ltgpa-learned-λ0.1-p0.5`), found by the pipeline run's key
(`PSEUDOVAD_PIPELINE_RUN`, else the DVC experiment name) or, without one, by the model file they
share (train tags its parent with the model's sha256; evaluate and register look it up). Runs
opened inside another run (a retraining round, a tune search) are its children instead.

HTTP retries are capped (see `_HTTP_DEFAULTS`) so an unreachable server fails in seconds; set the
MLFLOW_HTTP_REQUEST_* variables to override.

Mid-run metric logging (`log_epoch`, `log_metrics`) only warns when the server drops out: a
long training run is not killed by a tracking hiccup. Starting a run, artifacts and models raise.
The model registry (champion, versions, aliases, MLflow URIs → files) is `pseudovad.registry`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from pseudovad import build, results
from pseudovad.errors import DataError, TrackingError
from pseudovad.methods.spec import get_method

log = logging.getLogger(__name__)

ENV_URI = "MLFLOW_TRACKING_URI"
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
MODEL_FILE = "model.pt"
META_FILE = "pseudovad_meta.json"
# what `score` needs to rebuild pre-processing, copied out of model.pt's meta into the logged model
PREPROCESSING_KEYS = ("method", "size", "channels", "clip_len", "scored_index", "frame_step", "value_range",
                      "calibration", "train_fingerprint")
_SECRET_WORDS = {"secret", "password", "passwd", "key", "token", "credential", "credentials", "auth"}
_LOCAL_SCHEMES = {"", "file", "sqlite", "postgresql", "mysql", "mssql"}

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

_active: list[dict[str, Any]] = []       # runs opened by `run()` in this process, innermost last
_configured_uri: str | None = None


# ----------------------------------------------------------------------------------------------
# Where, and turning MLflow's failures into one line

def redact(uri: str) -> str:
    """A URI without user:password@ (safe to print, log or write to decision.json)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))
    return uri


def tracking_uri(cfg=None) -> str:
    """MLFLOW_TRACKING_URI, else cfg.tracking.uri, else the last configured, else the default."""
    env = os.environ.get(ENV_URI)
    if env:
        return env
    if cfg is not None:
        return cfg.tracking.uri
    if _configured_uri:
        return _configured_uri
    from pseudovad.config import TrackingConfig

    return TrackingConfig().uri


def configure(cfg=None, uri: str | None = None) -> str:
    """Point MLflow at the tracking URI (and cap HTTP retries); returns the URI."""
    global _configured_uri
    for k, v in _HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)
    import mlflow

    uri = uri or tracking_uri(cfg)
    user_env = os.environ.get(ENV_URI)
    mlflow.set_tracking_uri(uri)
    # mlflow also exports the URI as MLFLOW_TRACKING_URI; undo that, or this process's next stage
    # would take it for the user's override and ignore its own params
    if user_env is None:
        os.environ.pop(ENV_URI, None)
    else:
        os.environ[ENV_URI] = user_env
    _configured_uri = uri
    return uri


def _is_local(uri: str) -> bool:
    return urlsplit(uri).scheme.split("+")[0] in _LOCAL_SCHEMES


def _describe(e: BaseException, uri: str) -> str:
    msg = " ".join(str(e).split())
    if re.search(r"Max retries exceeded|Connection refused|NewConnectionError|Failed to establish|"
                 r"ConnectTimeout|Name or service not known|Temporary failure in name resolution", msg):
        return f"tracking server {redact(uri)} is unreachable"
    if "unable to open database file" in msg:
        return f"cannot open the tracking database {redact(uri)}"
    code = getattr(e, "error_code", None)
    msg = re.sub(r"^(API request to \S+ failed with exception )", "", msg)
    return f"{msg[:240]}{' (' + code + ')' if code and code not in msg else ''}"


@contextlib.contextmanager
def errors(what: str, uri: str | None = None) -> Iterator[None]:
    """MLflow / HTTP / database failures inside the block → TrackingError('<what>: <why>')."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        import sqlalchemy.exc

        db_errors: tuple[type[BaseException], ...] = (sqlalchemy.exc.SQLAlchemyError,)
    except ImportError:  # pragma: no cover - sqlalchemy ships with mlflow
        db_errors = ()
    try:
        yield
    except (TrackingError, DataError):
        raise
    except (MlflowException, requests.RequestException, OSError, *db_errors) as e:
        raise TrackingError(f"{what}: {_describe(e, uri or tracking_uri())}") from None


def client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def has_error_code(e: BaseException, code: str) -> bool:
    """Whether an MLflow exception carries `code` (RESOURCE_DOES_NOT_EXIST, RESOURCE_ALREADY_EXISTS, …)."""
    return code in str(getattr(e, "error_code", ""))


# ----------------------------------------------------------------------------------------------
# Runs

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


def _soft(what: str, fn, *args, **kwargs) -> None:
    """Mid-run logging: warn once per run on failure instead of stopping the stage."""
    h = _active[-1]
    try:
        fn(*args, **kwargs)
    except Exception as e:
        if not h["warned"]:
            log.warning("MLflow %s failed, continuing without it: %s", what, _describe(e, h["uri"]))
            h["warned"] = True


def _numeric(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Finite numbers of `metrics` (others skipped) to the active run."""
    if not _active:
        return
    import mlflow

    m = _numeric(metrics)
    if m:
        _soft("log_metrics", mlflow.log_metrics, m, step=step)


def log_model_metrics(model_id: str, metrics: dict[str, Any], dataset=None) -> None:
    """Finite numbers of `metrics` on a logged model (MLflow 3: they show as its metrics and its
    registered versions'), from the active run, linked to `dataset` (`dataset()`)."""
    if not _active:
        return
    import mlflow

    m = _numeric(metrics)
    if m:
        with errors(f"MLflow log_metrics on model {model_id}", _active[-1]["uri"]):
            mlflow.log_metrics(m, model_id=model_id, dataset=dataset, run_id=active_run_id())


def log_epoch(record: dict[str, Any], step: int | None = None) -> None:
    """One history record (losses, noise norm, lrs, clips/s) at step = its epoch (1-based)."""
    if step is None:
        step = int(record.get("epoch", 0)) + 1
    m = {k: v for k, v in record.items() if k not in ("epoch", "step")}
    if "step" in record:
        m["train_steps"] = record["step"]
    log_metrics(m, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    if not _active:
        return
    import mlflow

    with errors("MLflow set_tags", _active[-1]["uri"]):
        mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})


def log_text(text: str, name: str) -> None:
    """A text file (e.g. the settings a run used, params.yaml) into the active run's artifacts."""
    if not _active:
        return
    import mlflow

    with errors(f"MLflow log_text {name}", _active[-1]["uri"]):
        mlflow.log_text(text, name)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    """A file or a folder (recursively) into the active run's artifacts."""
    if not _active:
        return
    import mlflow

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: artifact to log does not exist")
    with errors(f"MLflow log_artifacts {path}", _active[-1]["uri"]):
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path)
        else:
            mlflow.log_artifact(str(path), artifact_path)


# ----------------------------------------------------------------------------------------------
# The logged detector

def log_model(model_path: str | Path, meta: dict[str, Any] | None = None, name: str = "model") -> dict[str, Any] | None:
    """Log model.pt as an MLflow PyTorch model of the active run; returns {model_uri, model_id, run_id}.

    The MLflow flavor holds the detector exported with torch.export ("pt2": loads without
    pseudovad or pickle; batch dimension dynamic), with a signature and an input example of its
    forward shape, e.g. (B, C, L, H, W) float32 for LTGPA. Beside it, as extra files, the
    pseudovad model.pt itself (what `load_model` / `score` use: weights + config + calibration)
    and its pre-processing meta as JSON; the same meta is in the MLmodel `metadata`. Tagged with
    the file's sha256 so `register` reuses this logged model instead of uploading it again.
    """
    if not _active:
        return None
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from pseudovad.evaluation.streaming import Detector
    from pseudovad.files import sha256_file
    from pseudovad.models.model_file import load_model

    model_path = Path(model_path)
    net, file_meta = load_model(model_path, "cpu")
    meta = meta or file_meta
    pre = {k: meta.get(k) for k in PREPROCESSING_KEYS}
    example = np.zeros(Detector(net, meta).input_shape(), dtype=np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example))
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]))]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *out.shape[1:]))]))
    sha = sha256_file(model_path)
    with tempfile.TemporaryDirectory(prefix="pseudovad-logmodel-") as tmp:
        meta_file = Path(tmp) / META_FILE
        meta_file.write_text(json.dumps(pre, indent=2) + "\n")
        model_file = model_path
        if model_path.name != MODEL_FILE:
            model_file = Path(tmp) / MODEL_FILE
            shutil.copyfile(model_path, model_file)
        common = dict(name=name, signature=signature, input_example=example,
                      extra_files=[str(model_file), str(meta_file)],
                      pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                      metadata={"pseudovad": pre},
                      tags={"model_sha256": sha, "method": str(meta.get("method"))})
        with errors(f"MLflow log_model {model_path}", _active[-1]["uri"]):
            try:
                info = mlflow.pytorch.log_model(net, serialization_format="pt2", **common)
            except Exception as e:  # torch.export cannot trace every model; pickle always works
                if isinstance(e, (OSError, ConnectionError)) or "API request" in str(e):
                    raise
                log.warning("torch.export failed for %s (%s); logging the model pickled instead",
                            model_path, str(e).splitlines()[0][:160] if str(e) else type(e).__name__)
                info = mlflow.pytorch.log_model(net, serialization_format="pickle", **common)
    parent = _active[-1]["pipeline_parent"]
    if parent:   # evaluate and register of this model file find their pipeline run by it
        with errors("MLflow set_tag", _active[-1]["uri"]):
            client().set_tag(parent, MODEL_SHA_TAG, sha)
    return {"model_uri": info.model_uri, "model_id": info.model_id, "run_id": active_run_id(), "sha256": sha}


# ----------------------------------------------------------------------------------------------
# Datasets: what a run trained or was evaluated on

def dataset(name: str, source: str | Path, fingerprint: str, **profile: Any):
    """An MLflow dataset (metadata only: the frames stay in the store) named `name`, its digest the
    fingerprint's head; its profile (the run page's dataset panel) holds the full fingerprint, the
    git commit and `profile` (the DVC hash of the store: `dvc_md5`, videos, frames …)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource, S3ArtifactDatasetSource

    where = str(source)
    origin = S3ArtifactDatasetSource(where) if where.startswith("s3://") else \
        LocalArtifactDatasetSource(str(Path(where).resolve()))
    info = {k: v for k, v in {"fingerprint": fingerprint, "git_commit": results.git("rev-parse", "HEAD"),
                              **profile}.items() if v is not None}

    class FrameStoreDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return info

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(info)}

    return FrameStoreDataset(origin, name=name, digest=fingerprint[:16])


# the dataset profile entries that are also input tags (searchable, shown beside the dataset)
DATASET_TAGS = ("fingerprint", "dvc_md5", "evaluation_version", "git_commit")


def log_dataset(ds, context: str) -> None:
    """`ds` (from `dataset`, or a dataset another run logged) as an input of the active run, its
    fingerprint, DVC hash and git commit also as input tags."""
    if not _active or ds is None:
        return
    import mlflow
    from mlflow.entities import DatasetInput, InputTag

    profile = ds.profile if isinstance(ds.profile, dict) else json.loads(ds.profile or "{}")
    tags = {k: str(profile[k]) for k in DATASET_TAGS if profile.get(k) is not None}
    with errors(f"MLflow log_input {ds.name}", _active[-1]["uri"]):
        if hasattr(ds, "_to_mlflow_entity"):
            mlflow.log_input(ds, context=context, tags=tags)
        else:                                   # an mlflow.entities.Dataset
            tags["mlflow.data.context"] = context
            client().log_inputs(active_run_id(), [DatasetInput(ds, [InputTag(k, v) for k, v in tags.items()])])
