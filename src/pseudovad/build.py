"""What this installation of pseudovad was built from: its version and its git commit.

A checkout knows its commit from git. An image has no `.git`, so docker/Dockerfile bakes the
commit in as PSEUDOVAD_GIT_COMMIT / PSEUDOVAD_GIT_DIRTY (and /etc/pseudovad/build.json, for
people): MLflow runs from a cluster are tagged with it (`tracking.run_tags`), like runs from a
checkout. The same identity (`<version>@<commit>`) tags the image (`image_tag`, as
docker/build.sh does), is recorded in every step of a compiled Kubeflow pipeline, and is checked
by each step against the image it runs in (`check_compiled_from`).
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
        return "unknown"


def image_commit() -> tuple[str, bool] | None:
    """(commit, dirty) baked into the image this process runs in; None outside an image."""
    commit = os.environ.get(ENV_COMMIT, "").strip()
    if not commit or commit == "unknown":
        return None
    return commit, os.environ.get(ENV_DIRTY, "false").strip().lower() == "true"


# ----------------------------------------------------------------------------------------------
# The drift guard: a compiled pipeline and the image its steps run in must come from one commit

ENV_COMPILED_FROM = "PSEUDOVAD_COMPILED_FROM"   # set on every Kubeflow step at compile time
ENV_ALLOW_DRIFT = "PSEUDOVAD_ALLOW_IMAGE_DRIFT"  # set while compiling: record no identity, no check


def _git(*args: str) -> str | None:
    import subprocess
    from pathlib import Path

    try:
        r = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), *args], capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def source_commit() -> str | None:
    """The commit this code is: the image's baked one, else the checkout the package is installed
    from (an editable install); `-dirty` appended when files it tracks are modified."""
    baked = image_commit()
    if baked is not None:
        commit, dirty = baked
    else:
        commit = _git("rev-parse", "HEAD")
        if commit is None:
            return None
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return commit + ("-dirty" if dirty else "")


def image_tag(commit: str | None = None) -> str:
    """The tag docker/build.sh gives the image of `commit` (default: this code's): the commit's
    first 12 hex digits, `-dirty` kept; the package version when there is no commit."""
    commit = commit if commit is not None else source_commit()
    if not commit:
        return version()
    sha, dirty = (commit[:-len("-dirty")], True) if commit.endswith("-dirty") else (commit, False)
    return sha[:12] + ("-dirty" if dirty else "")


def identity() -> str:
    """`<version>@<commit>`: what a pipeline records at compile time and each step checks."""
    return f"{version()}@{source_commit() or 'unknown'}"


def check_compiled_from(expected: str | None) -> None:
    """Refuse to run a step of a pipeline compiled from other code than this image holds.

    Lightweight components carry their own source in the pipeline YAML but import pseudovad from
    the image, so a YAML and an image of different commits would mix silently. `expected` empty:
    the check is off (`pseudovad-kfp compile --allow-image-drift`).
    """
    if not expected:
        return
    actual = identity()
    if actual != expected:
        from pseudovad.errors import ConfigError

        raise ConfigError(f"image drift: the pipeline was compiled from pseudovad {expected}, this image holds "
                          f"{actual}; build and push the image of that commit (docker/build.sh), or compile "
                          "from this image's commit (--allow-image-drift skips the check)")
