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

REPO = Path(__file__).resolve().parents[1]
# what tests and the tools they run may write inside the checkout: caches, never data
_UNWATCHED = {".git", ".venv", ".pytest_cache", "__pycache__", ".mypy_cache", ".ruff_cache"}

TINY = {
    "synthetic": {"train_videos": 2, "test_videos": 2, "frames": 40, "height": 48, "width": 64, "walkers": 2},
    "data": {"size": [32, 32], "clip_len": 8, "scored_index": 4, "clip_stride": 2},
    # no bootstrap intervals (1000 resamples × each AUC, seconds per evaluate): tests/test_evaluate.py
    # asks for them where it checks them
    "evaluate": {"bootstrap": 0},
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


@pytest.fixture(scope="session", autouse=True)
def dvc_site_cache(tmp_path_factory):
    """DVC's site cache (its per-repository state and indexes, and the hash cache
    pseudovad.data.versioning keeps for folders outside a DVC repository) in the session's tmp
    instead of /var/tmp/dvc: tests write nowhere else. Subprocesses (dvc repro, kfp.local steps)
    inherit it; a test may point it elsewhere with monkeypatch."""
    path = tmp_path_factory.mktemp("dvc-site")
    before = os.environ.get("DVC_SITE_CACHE_DIR")
    os.environ["DVC_SITE_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("DVC_SITE_CACHE_DIR", None)
    else:
        os.environ["DVC_SITE_CACHE_DIR"] = before


@pytest.fixture
def tiny(tmp_path):
    return tiny_cfg(tmp_path)


@pytest.fixture
def tiny_store(tmp_path):
    """The tiny synthetic footage synthesized and extracted into tmp_path (returned)."""
    from pseudovad.stages import extract, synthesize

    cfg = tiny_cfg(tmp_path)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    return tmp_path


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


# ----------------------------------------------------------------------------------------------
# No test writes outside its tmp dirs

def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file and folder of the checkout outside the caches. Not `git status`:
    the outputs a test could leak (mlflow.db, mlruns/, runs/, data/) are git-ignored, and an
    ignored file that changes is invisible to git."""
    out: dict[str, tuple[int, int]] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _UNWATCHED and not d.endswith(".egg-info")]
        for name in [*dirs, *names]:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            out[str(path.relative_to(root))] = (st.st_size if not path.is_dir() else 0, st.st_mtime_ns)
    return out


def pytest_sessionstart(session):
    session.config._repo_tree = _tree(REPO)


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_repo_tree", None)
    if before is None:
        return
    after = _tree(REPO)
    changed = sorted({*before, *after} - {k for k in before if after.get(k) == before[k]})
    if changed:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"tests wrote into the checkout {REPO} (they must write only in their tmp dirs):"]
        lines += [f"  {'added' if k not in before else 'removed' if k not in after else 'changed'} {k}"
                  for k in changed[:40]]
        for line in lines:
            (tr.write_line(line, red=True) if tr else print(line))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def _session_outside_the_checkout(tmp_path_factory):
    """Module fixtures run before function ones: they too start in a tmp working folder, with no
    MLflow server of the user's in the environment and a model cache in tmp."""
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path_factory.mktemp("cwd-session"))
    # unset rather than pointed at tmp: a tracking.uri a test sets must win (MLFLOW_TRACKING_URI beats it)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("PSEUDOVAD_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _test_outside_the_checkout(tmp_path_factory, monkeypatch):
    """Each test runs in a tmp working folder of its own: a default relative output (mlflow.db,
    mlruns/, runs/…) lands there, never in the checkout or another test's folder."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

