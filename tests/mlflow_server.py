"""A real `mlflow server` (SQLite backend, proxied artifacts) on a free 127.0.0.1 port, for tests.

Use as a module-scoped fixture: `from tests.mlflow_server import mlflow_server  # noqa: F401`,
then take `mlflow_server` (its http:// URI) as an argument. The server runs from this venv,
is polled on /health, and is stopped by killing its process group (it forks workers).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

STARTUP_S = 120  # first start creates the SQLite schema (alembic migrations): slow on 2 cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(root: Path) -> tuple[subprocess.Popen, str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    logf = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # mlflow 3.x starts a job runner (huey consumers, ~7 processes) for GenAI jobs by default;
    # pseudovad uses none of them, and on a 2-core CI machine they slow every test module.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(logf, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{logf.read_text()[-3000:]}")
        if _healthy(uri):
            return proc, uri, logf
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"mlflow server not healthy after {STARTUP_S}s:\n{logf.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """http://127.0.0.1:<port> of a fresh server; MLFLOW_TRACKING_URI is left untouched."""
    proc, uri, _ = start(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield uri
    finally:
        stop(proc)
