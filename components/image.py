"""The container images every component runs in: named in this one place.

Both flavours come from one docker/Dockerfile (`FLAVOUR=cpu|cuda`); `docker/build.sh` builds
them as `<registry>/pseudovad:<git-sha>[-cuda]`, a tag per commit, so a rebuilt image never
reuses a tag (and KFP's cache never matches steps of other code). `PSEUDOVAD_IMAGE` /
`PSEUDOVAD_CUDA_IMAGE` name the images at compile time (what build.sh printed); components read
them when imported, so set them before importing `components` (`pseudovad-kfp --image` does).
Without them the default is this checkout's tag under REPOSITORY, which nobody has pushed:
`pseudovad-kfp` refuses it unless `--allow-default-image`.
"""
from __future__ import annotations

import os

from pseudovad import build

REPOSITORY = "ghcr.io/pseudovad/pseudovad"   # = docker/build.sh's default registry + /pseudovad
VERSION = "0.1.0"          # = [project] version in pyproject.toml (a test checks)
CUDA_SUFFIX = "-cuda"

DEFAULT_IMAGE = f"{REPOSITORY}:{build.image_tag()}"
IMAGE = os.environ.get("PSEUDOVAD_IMAGE") or DEFAULT_IMAGE
CUDA_IMAGE = os.environ.get("PSEUDOVAD_CUDA_IMAGE") or f"{IMAGE}{CUDA_SUFFIX}"
