"""Shared fixtures: tiny generated footage so every test runs in seconds without ../shared."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pseudovad import config as config_mod
from pseudovad.data.synthetic import generate

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PSEUDOVAD_NO_PROGRESS", "1")

TINY = {
    "synthetic": {"train_videos": 2, "test_videos": 2, "frames": 40, "height": 48, "width": 64, "walkers": 2},
    "data": {"size": [32, 32], "clip_len": 8, "scored_index": 4, "clip_stride": 2},
    # MLflow off unless a test turns it on (tests/test_registry.py): no mlflow.db in the working
    # folder, no model export in every train test
    "tracking": {"enabled": False},
}


def tiny_cfg(tmp_path: Path, **sections) -> config_mod.Config:
    """A Config with tiny data and all outputs inside tmp_path."""
    tree = config_mod.deep_merge(TINY, {
        "synthetic": {"out": str(tmp_path / "synthetic")},
        "data": {"root": str(tmp_path / "synthetic"), "store": str(tmp_path / "store")},
    })
    tree = config_mod.deep_merge(tree, sections)
    return config_mod.from_dict(tree)


@pytest.fixture
def tiny(tmp_path):
    return tiny_cfg(tmp_path)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    cfg = config_mod.from_dict(TINY)
    generate(cfg.synthetic, root)
    return root


def write_frame_folder(folder: Path, n: int, size=(40, 50), ext=".png", seed=0) -> list[np.ndarray]:
    """n frames named 1..n (unpadded, so natural sort matters), each a distinct image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        img = rng.integers(0, 255, size, dtype=np.uint8)
        img[:4, :4] = i  # frame index stamped in the corner (survives PNG losslessly)
        cv2.imwrite(str(folder / f"{i + 1}{ext}"), img)
        frames.append(img)
    return frames
