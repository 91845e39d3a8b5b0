"""The container images every component runs in: named in this one place.

Both flavours come from one docker/Dockerfile (`FLAVOUR=cpu|cuda`); `docker/build.sh` builds
them as `<registry>/pseudovad:<git-sha>[-cuda]`. `PSEUDOVAD_IMAGE` / `PSEUDOVAD_CUDA_IMAGE`
override the names at compile time (the image build.sh printed); components read them when
imported, so set them before importing `components` (the `pseudovad-kfp --image` flags do).
"""
from __future__ import annotations

import os

REPOSITORY = "ghcr.io/pseudovad/pseudovad"
VERSION = "0.1.0"          # = [project] version in pyproject.toml (a test checks)
CUDA_SUFFIX = "-cuda"

IMAGE = os.environ.get("PSEUDOVAD_IMAGE") or f"{REPOSITORY}:{VERSION}"
CUDA_IMAGE = os.environ.get("PSEUDOVAD_CUDA_IMAGE") or f"{IMAGE}{CUDA_SUFFIX}"
