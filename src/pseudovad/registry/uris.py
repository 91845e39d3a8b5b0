"""Model files behind MLflow URIs: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/…` resolved
and downloaded to a local model.pt (`resolve`, `fetch_model_file`, `resolve_model` → `ResolvedModel`)."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pseudovad import tracking
from pseudovad.config import Config
from pseudovad.errors import DataError, TrackingError
from pseudovad.models import model_file
from pseudovad.registry.versions import MLFLOW_SCHEMES, _MODEL_URI, _RUN_URI, does_not_exist


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


def missing_local_store(uri: str) -> Path | None:
    """The SQLite file a tracking URI names, when it does not exist: reading a model from it would
    only create an empty store (an mlflow.db in whatever folder the command ran in)."""
    if urlsplit(uri).scheme.split("+")[0] != "sqlite" or ":///" not in uri:
        return None
    path = uri.split(":///", 1)[1]
    return Path(path) if path and path != ":memory:" and not Path(path).exists() else None


def fetch_model(uri: str) -> ResolvedModel:
    """`fetch_model_file`, with what the URI resolved to: an alias is resolved once, and that
    version is the one downloaded and reported."""
    uri = str(uri).strip()
    missing = missing_local_store(tracking.tracking_uri())
    if missing is not None:
        raise TrackingError(f"{uri}: nothing is registered here: no MLflow store {missing} "
                            f"(tracking.uri {tracking.tracking_uri()})")
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
