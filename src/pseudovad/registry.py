"""The MLflow model registry: the champion, what a version was trained on, registering a candidate
through the promotion gate, and model files behind MLflow URIs.

Everything that reads or moves a registered model lives here, so the CLI, a retraining round and a
Kubeflow step ask the same questions the same way: `champion` (the version `score` and warm starts
use), `trained_on` (was this training split already learned?), `register` (a new or reused version,
`challenger`, and `champion` if `pseudovad.gate` says so), and `resolve` / `fetch_model_file`
(`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/…` → a local model.pt). `models/` only ever
loads local files; run logging is `pseudovad.tracking`.
"""
from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from pseudovad import tracking
from pseudovad.config import Config
from pseudovad.errors import DataError, TrackingError
from pseudovad.files import exclusive_lock, settle, sha256_file
from pseudovad.gate import Entry, decide
from pseudovad.models import model_file

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer")
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")
_RUN_URI = re.compile(r"^runs:/(?P<run>[0-9a-zA-Z]+)/(?P<path>.+)$")


def does_not_exist(e: BaseException) -> bool:
    """An MLflow error saying the registered model, version or artifact asked for is not there."""
    return tracking.has_error_code(e, "RESOURCE_DOES_NOT_EXIST") or "not found" in str(e).lower()


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or "unknown"


def champion_uri(cfg: Config) -> str:
    """`models:/NAME@champion` of the configured model (what `score` uses by default)."""
    return f"models:/{cfg.registered_model_name}@{CHAMPION}"


# ----------------------------------------------------------------------------------------------
# Questions about what is registered

@dataclass(frozen=True)
class Version:
    """A registered version: its number, the training split it was trained on, its pinned URI."""

    version: str
    train_fingerprint: str
    uri: str


def champion(cfg: Config) -> Version | None:
    """The registered champion, or None when there is none yet."""
    name = cfg.registered_model_name
    uri = tracking.configure(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
        from mlflow.exceptions import MlflowException

        c = tracking.client()
        try:
            rm = c.get_registered_model(name)
        except MlflowException as e:
            if does_not_exist(e):
                return None
            raise
        version = (rm.aliases or {}).get(CHAMPION)
        if version is None:
            return None
        mv = c.get_model_version(name, str(version))
        return Version(str(version), mv.tags.get("train_fingerprint", ""), f"models:/{name}/{version}")


def trained_on(cfg: Config, fingerprint: str) -> str | None:
    """The newest version of the configured model trained on exactly the training split
    `fingerprint` (register tags each version with it, promoted or not), or None."""
    name = cfg.registered_model_name
    uri = tracking.configure(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
        done = tracking.client().search_model_versions(f"name = '{name}' and tags.train_fingerprint = '{fingerprint}'")
    return str(max(int(v.version) for v in done)) if done else None


# ----------------------------------------------------------------------------------------------
# Registering a candidate: the gate's MLflow side

@dataclass(frozen=True)
class Candidate:
    """A model file and its evaluation, checked to belong together."""

    model: Path
    metrics: dict[str, Any]
    meta: dict[str, Any]
    sha256: str

    @property
    def fingerprint(self) -> str:
        return self.metrics["fingerprint"]

    @classmethod
    def read(cls, model: Path, metrics: Path) -> Candidate:
        ev = read_metrics(metrics)    # (both reads settle a half-done commit of their folder first)
        meta = model_file.read_model_file(model)["meta"]
        for key in ("method", "train_fingerprint"):
            if ev.get(key) and meta.get(key) and ev[key] != meta[key]:
                raise DataError(f"{metrics}: {key} {ev[key]!r} does not match {model} ({meta[key]!r}); "
                                "evaluate this model first")
        return cls(model, ev, meta, sha256_file(model))


def read_metrics(path: Path) -> dict[str, Any]:
    """An evaluate metrics.json with the two things the gate needs: auc_micro and the test-set fingerprint."""
    settle(path.parent)
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found (run `pseudovad evaluate` first or pass --metrics)")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise DataError(f"{path}: expected a JSON object")
    auc = m.get("auc_micro")
    if not isinstance(auc, (int, float)) or isinstance(auc, bool) or not math.isfinite(auc):
        raise DataError(f"{path}: auc_micro missing or not a number ({auc!r})")
    if not isinstance(m.get("fingerprint"), str) or not m["fingerprint"]:
        raise DataError(f"{path}: fingerprint of the evaluation set missing")
    return m


def _float_tag(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _version_entry(mv) -> Entry:
    return Entry(str(mv.version), _float_tag(mv.tags.get("auc_micro")), mv.tags.get("eval_fingerprint"))


def _ensure_registered_model(c, cfg: Config, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return
    except MlflowException as e:
        if not does_not_exist(e):
            raise
    try:
        c.create_registered_model(
            name, tags={"method": cfg.model.method},
            description=(f"pseudovad {cfg.model.method} detector. Alias `{CHAMPION}`: the version the promotion "
                         "gate (or a forced `pseudovad register --force`) chose; `challenger`: the latest "
                         "registered. Each version's tags hold its metrics and gate decision."))
    except MlflowException as e:  # registered concurrently
        if not tracking.has_error_code(e, "RESOURCE_ALREADY_EXISTS"):
            raise


def _same_versions(c, name: str, sha: str, fingerprint: str) -> list:
    """The versions of this exact model file evaluated on this exact test set, oldest first."""
    found = c.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{sha}'")
    return sorted((mv for mv in found if mv.tags.get("eval_fingerprint") == fingerprint), key=lambda mv: int(mv.version))


def _find_version(c, name: str, sha: str, fingerprint: str):
    """An existing version of this exact model file evaluated on this exact test set."""
    same = _same_versions(c, name, sha, fingerprint)
    return same[-1] if same else None


def _keep_first(c, name: str, mine, sha: str, fingerprint: str):
    """(the version to use, whether it is another's) after creating `mine`: a register running at
    the same moment on a server (no shared lock) may have created a version of the same file on
    the same test set too. The oldest wins, on both sides; ours, if younger, is deleted before
    any alias or gate tag points at it."""
    same = _same_versions(c, name, sha, fingerprint)
    first = same[0] if same else mine
    if int(first.version) < int(mine.version):
        c.delete_model_version(name, str(mine.version))
        return first, True
    return mine, False


def _store_folder(uri: str) -> Path | None:
    """The folder of a tracking store on this machine's file system (sqlite file, file: or path),
    where a lock file can serialise registrations; None for a server or a database service."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if scheme == "sqlite":
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        return Path(path).resolve().parent if path and path != ":memory:" else None
    if scheme == "file":
        return Path(parts.path).resolve()
    if scheme == "" and uri:
        return Path(uri).resolve()
    return None


@contextlib.contextmanager
def _one_registration(uri: str, name: str) -> Iterator[None]:
    """Registrations of `name` one at a time where the store is a local file (a lock beside it);
    on a server, `_keep_first` settles a race after the fact."""
    folder = _store_folder(uri)
    if folder is None:
        yield
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    with exclusive_lock(folder / f".register-{safe}.lock", f"register of {name}", wait=True):
        yield


def find_logged_model(cfg: Config, sha256: str) -> str | None:
    """models:/<model_id> of a logged model in the experiment whose model.pt has this sha256."""
    c = tracking.client()
    exp = tracking.experiment_id(cfg)
    found = c.search_logged_models(experiment_ids=[exp], filter_string=f"tags.model_sha256 = '{sha256}'",
                                   max_results=1)
    return f"models:/{found[0].model_id}" if found else None


def register(cfg: Config, cand: Candidate, force: bool = False) -> dict[str, Any]:
    """Register `cand` inside the active MLflow run (a new version, or the version of the same file
    on the same test set), alias it `challenger`, run the gate against the champion, move
    `champion` if it says so, tag the version with the decision. Returns the decision record."""
    import mlflow

    name = cfg.registered_model_name
    user = current_user()
    ev, meta, sha, fp = cand.metrics, cand.meta, cand.sha256, cand.fingerprint
    run_id = tracking.active_run_id()
    uri = tracking.tracking_uri(cfg)
    with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri), _one_registration(uri, name):
        c = tracking.client()
        tracking.log_metrics({k: ev.get(k) for k in METRIC_KEYS})
        _ensure_registered_model(c, cfg, name)
        mv = _find_version(c, name, sha, fp)
        reused = mv is not None
        if mv is None:
            source = find_logged_model(cfg, sha) or tracking.log_model(cand.model, meta)["model_uri"]
            tags = {k: repr(float(ev[k])) for k in METRIC_KEYS if _float_tag(ev.get(k)) is not None}
            tags.update({"eval_fingerprint": fp, "model_sha256": sha, "method": str(meta.get("method")),
                         "train_fingerprint": str(meta.get("train_fingerprint")), "dataset": cfg.data.name,
                         "registered_by": user, "register_run_id": run_id})
            if meta.get("data_version"):     # the DVC hash of the store it was trained on
                tags["data_version"] = str(meta["data_version"])
            mv, reused = _keep_first(c, name, mlflow.register_model(source, name, tags=tags), sha, fp)
        version = str(mv.version)
        aliases = dict(c.get_registered_model(name).aliases or {})
        before = aliases.get(CHAMPION)
        champ = _version_entry(c.get_model_version(name, before)) if before is not None else None
        d = decide(Entry(version, float(ev["auc_micro"]), fp), champ, cfg.registry.min_delta, force, user)
        c.set_registered_model_alias(name, CHALLENGER, version)
        if d.promote:
            c.set_registered_model_alias(name, CHAMPION, version)
        after = version if d.promote else (str(before) if before is not None else None)
        gate = {"gate.decision": "forced" if d.forced else ("promoted" if d.promote else "kept"),
                "gate.reason": d.reason, "gate.champion_before": str(before) if before is not None else "none",
                "gate.min_delta": repr(cfg.registry.min_delta),
                "gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if d.forced:
            gate["gate.forced_by"] = user
        if d.promote or not reused:  # a re-run that changes nothing keeps the version's first decision
            for k, v in gate.items():
                c.set_model_version_tag(name, version, k, v)
        tracking.set_tags({**gate, "registered_version": version})
    return {
        "model_name": name, "version": version, "model_uri": f"models:/{name}/{version}",
        "promoted": d.promote, "forced": d.forced, "forced_by": user if d.forced else None, "reason": d.reason,
        "champion_before": str(before) if before is not None else None, "champion_after": after,
        "auc_micro": float(ev["auc_micro"]), "champion_auc_micro": champ.auc if champ else None,
        "min_delta": cfg.registry.min_delta, "fingerprint": fp, "model_sha256": sha, "reused_version": reused,
        "run_id": run_id, "tracking_uri": tracking.redact(uri),
    }


# ----------------------------------------------------------------------------------------------
# Model files behind MLflow URIs

def bad_uri(uri: str) -> TrackingError:
    return TrackingError(f"{uri}: not a valid model URI (expected models:/NAME@ALIAS, models:/NAME/VERSION, "
                         "runs:/RUN_ID/PATH or a model.pt path)")


def resolve_version(name: str, alias: str | None = None, version: str | None = None) -> str:
    """The version number an alias points to (or the given version), with errors naming what is missing."""
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    uri = tracking.tracking_uri()
    try:
        rm = c.get_registered_model(name)
    except MlflowException as e:
        if does_not_exist(e):
            raise TrackingError(f"models:/{name}: no registered model {name!r} in {tracking.redact(uri)}") from None
        raise
    if alias is not None:
        aliases = dict(rm.aliases or {})
        if alias not in aliases:
            known = ", ".join(sorted(aliases)) or "none"
            raise TrackingError(f"models:/{name}@{alias}: registered model {name!r} has no alias {alias!r} "
                                f"(aliases: {known})")
        return str(aliases[alias])
    try:
        c.get_model_version(name, str(version))
    except MlflowException as e:
        if does_not_exist(e):
            raise TrackingError(f"models:/{name}/{version}: registered model {name!r} has no version {version}") from None
        raise
    return str(version)


def _download(artifact_uri: str, key: str) -> Path:
    """Download one file into a per-model cache folder, replacing any older copy atomically."""
    import mlflow
    from mlflow.exceptions import MlflowException

    root = Path(os.environ.get("PSEUDOVAD_MODEL_CACHE") or Path(tempfile.gettempdir()) / f"pseudovad-models-{os.getuid()}")
    dest = root / hashlib.sha256(key.encode()).hexdigest()[:16] / tracking.MODEL_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp:
        try:
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp,
                                                           tracking_uri=tracking.tracking_uri()))
        except MlflowException as e:
            if not does_not_exist(e):
                raise
            raise TrackingError(f"{artifact_uri}: no such artifact (not a model logged by pseudovad?)") from None
        if got.is_dir():
            raise DataError(f"{artifact_uri}: is a folder, not a model file")
        os.replace(got, dest)
    return dest


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference pinned down: the local file and, for MLflow URIs, what the reference
    pointed to when it was read (an alias moves; the version it resolved to does not)."""

    ref: str                       # what the user passed
    path: Path                     # the local model.pt
    name: str | None = None        # registered model name (models:/NAME…)
    version: str | None = None     # the registered version the reference resolved to
    alias: str | None = None       # the alias that was resolved, if any
    run_id: str | None = None      # the MLflow run that logged the model
    uri: str | None = None         # the pinned URI: models:/NAME/VERSION, runs:/…, models:/<model_id>


def fetch_model_file(uri: str) -> Path:
    """A local copy of the pseudovad model.pt behind an MLflow URI.

    models:/NAME@ALIAS and models:/NAME/VERSION (registry), models:/<model_id> (a logged model),
    runs:/RUN_ID/<logged model name> or runs:/RUN_ID/<path>.pt (an artifact), mlflow-artifacts:/….pt.
    The tracking URI is MLFLOW_TRACKING_URI, else the one the running stage configured.
    """
    return fetch_model(uri).path


def fetch_model(uri: str) -> ResolvedModel:
    """`fetch_model_file`, with what the URI resolved to: an alias is resolved once, and that
    version is the one downloaded and reported."""
    uri = str(uri).strip()
    tracking_uri = tracking.configure(uri=tracking.tracking_uri())
    model = tracking.MODEL_FILE
    with tracking.errors(f"{uri} (tracking {tracking.redact(tracking_uri)})"):
        if uri.startswith("models:/"):
            m = _MODEL_URI.match(uri)
            if not m:
                raise bad_uri(uri)
            name, alias, version = m["name"], m["alias"], m["version"]
            if alias is None and version is None:
                if not name.startswith("m-"):
                    raise bad_uri(uri)
                logged = tracking.client().get_logged_model(name)
                path = _download(f"{logged.artifact_location}/extra_files/{model}", f"{tracking_uri}|{uri}")
                return ResolvedModel(uri, path, run_id=logged.source_run_id, uri=uri)
            v = resolve_version(name, alias, version)
            run_id = tracking.client().get_model_version(name, v).run_id
            path = _download(f"models:/{name}/{v}/extra_files/{model}", f"{tracking_uri}|{name}|{v}")
            return ResolvedModel(uri, path, name, v, alias, run_id or None, f"models:/{name}/{v}")
        if uri.startswith("runs:/"):
            m = _RUN_URI.match(uri)
            if not m:
                raise bad_uri(uri)
            target = uri if m["path"].endswith(".pt") else f"{uri.rstrip('/')}/extra_files/{model}"
            return ResolvedModel(uri, _download(target, f"{tracking_uri}|{uri}"), run_id=m["run"], uri=uri)
        if uri.startswith("mlflow-artifacts:/") and uri.endswith(".pt"):
            return ResolvedModel(uri, _download(uri, f"{tracking_uri}|{uri}"), uri=uri)
        raise bad_uri(uri)


def resolve_model(model_ref: str | Path, cfg: Config | None = None) -> ResolvedModel:
    """`resolve`, keeping what an MLflow URI resolved to (name, version, run id) for provenance."""
    ref = str(model_ref)
    if ref.startswith(MLFLOW_SCHEMES):
        if cfg is not None:
            tracking.configure(cfg)
        return fetch_model(ref)
    return ResolvedModel(ref, resolve(ref, cfg))


def resolve(model_ref: str | Path, cfg: Config | None = None) -> Path:
    """A local model.pt for a path, `file://…`, or an MLflow URI (downloaded from the tracking
    server `cfg` names, or MLFLOW_TRACKING_URI / the one configured last)."""
    ref = str(model_ref)
    if ref.startswith(MLFLOW_SCHEMES):
        if cfg is not None:
            tracking.configure(cfg)
        return fetch_model_file(ref)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):/", ref)
    if scheme and scheme.group(1).lower() != "file":
        raise DataError(f"{ref}: unsupported model URI scheme {scheme.group(1)!r} "
                        "(use a local path, models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH)")
    return Path(ref[len("file://"):] if ref.startswith("file://") else ref)


def load_model(model_ref: str | Path, device="cpu", cfg: Config | None = None):
    """(model, meta) of a model.pt path or MLflow URI: `resolve`, then `models.model_file.load_model`."""
    return model_file.load_model(resolve(model_ref, cfg), device)
