"""Where runs go and what an MLflow failure says: the tracking URI (`MLFLOW_TRACKING_URI`, else
`tracking.uri`), `configure` (HTTP retries capped by `_HTTP_DEFAULTS`, so an unreachable server
fails in seconds; set the MLFLOW_HTTP_REQUEST_* variables to override), `errors` (MLflow / HTTP /
database failures → one `TrackingError` line), `redact` (URIs without credentials).
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

from pseudovad.errors import DataError, TrackingError

ENV_URI = "MLFLOW_TRACKING_URI"
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_LOCAL_SCHEMES = {"", "file", "sqlite", "postgresql", "mysql", "mssql"}

_configured_uri: str | None = None


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
