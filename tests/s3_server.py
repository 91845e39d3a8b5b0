"""A real S3-compatible server for tests: moto's ThreadedMotoServer on 127.0.0.1, a free port.

The server speaks the S3 REST API over HTTP, so boto3 in the test process and `dvc` in a
subprocess both talk to it exactly as they would to AWS or MinIO. Credentials are fake but go
through the standard environment chain, and are distinctive so tests can grep output for them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import urllib.request
from typing import Iterator

import pytest
from moto.server import ThreadedMotoServer

ACCESS_KEY = "AKIAPSEUDOVADTEST042"
SECRET_KEY = "pvad-secret-7c1e9b52d4a8f3e6b0c2"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
# Anything that could point boto3 or dvc somewhere else, or at other credentials.
_CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
            "AWS_REGION", "AWS_CA_BUNDLE")


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """Start the server on a free port, yield its endpoint URL, stop it."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)   # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def reset(endpoint: str) -> None:
    """Forget every bucket (moto keeps state per process, across tests)."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()


@pytest.fixture(scope="session")
def s3_endpoint_session() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_endpoint(s3_endpoint_session, monkeypatch, tmp_path) -> str:
    """A clean server and an environment whose only credentials are the fake ones."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset(s3_endpoint_session)
    return s3_endpoint_session


def make_bucket(endpoint: str, name: str):
    """A boto3 client on the server with `name` created: for tests to upload fixtures with."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return client


def environ() -> dict[str, str]:
    """The current environment, for subprocesses (dvc) that must see the same fake credentials."""
    return dict(os.environ)
