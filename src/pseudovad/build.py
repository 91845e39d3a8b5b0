"""What this installation of pseudovad was built from: its version and, in an image, its git commit.

A checkout knows its commit from git. An image has no `.git`, so docker/Dockerfile bakes the
commit in as PSEUDOVAD_GIT_COMMIT / PSEUDOVAD_GIT_DIRTY (and /etc/pseudovad/build.json, for
people): MLflow runs from a cluster are tagged with it (`tracking.run_tags`), like runs from a
checkout.
"""
from __future__ import annotations

import os

ENV_COMMIT = "PSEUDOVAD_GIT_COMMIT"
ENV_DIRTY = "PSEUDOVAD_GIT_DIRTY"
BUILD_FILE = "/etc/pseudovad/build.json"


def version() -> str:
    """The installed package's version (= [project] version in pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pseudovad")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without an install
        from pseudovad import __version__

        return __version__


def image_commit() -> tuple[str, bool] | None:
    """(commit, dirty) baked into the image this process runs in; None outside an image."""
    commit = os.environ.get(ENV_COMMIT, "").strip()
    if not commit or commit == "unknown":
        return None
    return commit, os.environ.get(ENV_DIRTY, "false").strip().lower() == "true"
