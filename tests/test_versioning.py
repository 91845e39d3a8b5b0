"""Data versions are DVC's own hashes: `dvc_hash` of a frame store equals the md5 `dvc repro`
writes into dvc.lock (inside the repository and for a copy outside any), repeated calls read no
file again, and the evaluation-set version ignores training footage but not a test label."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pseudovad import config as config_mod
from pseudovad.data import versioning
from pseudovad.data.store import FrameStore
from pseudovad.errors import DataError
from tests.conftest import TINY

BIN = Path(sys.executable).parent


def dvc(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PSEUDOVAD_NO_PROGRESS": "1"}
    r = subprocess.run([str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.fixture
def counted_hashing(monkeypatch):
    """How many files dvc_data reads to hash (what DVC's state cache saves)."""
    import dvc_data.hashfile.build as build

    calls = []
    real = build.hash_file

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(build, "hash_file", counting)
    return calls


@pytest.fixture(scope="module")
def site_cache(tmp_path_factory) -> Path:
    """DVC's site cache dir (its hash state) for this module, instead of /var/tmp/dvc."""
    return tmp_path_factory.mktemp("dvc-site")


@pytest.fixture(autouse=True)
def _site_cache(site_cache, monkeypatch):
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(site_cache))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, site_cache) -> Path:
    """A git + DVC repository whose `extract` stage `dvc repro` ran: tiny synthetic footage."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", str(site_cache))
        return _repro(tmp_path_factory.mktemp("versioned"))


def _repro(root: Path) -> Path:
    (root / "params.yaml").write_text(config_mod.dump(config_mod.from_dict(TINY)))
    stages = {"synthesize": {"cmd": "pseudovad synthesize", "params": ["synthetic"], "outs": ["data/synthetic"]},
              "extract": {"cmd": "pseudovad extract", "deps": ["data/synthetic"],
                          "params": ["data.root", "data.labels", "data.size", "data.channels"],
                          "outs": ["data/store"]}}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(["init", "-q"], root)
    dvc(["repro", "extract"], root)
    return root


def lock_entry(repo: Path, stage: str, path: str) -> dict:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (out,) = [o for o in lock["stages"][stage]["outs"] if o["path"] == path]
    return out


@pytest.mark.integration
def test_store_hash_is_what_dvc_repro_records_in_dvc_lock(repo, tmp_path, site_cache, counted_hashing):
    recorded = lock_entry(repo, "extract", "data/store")
    version = versioning.dir_version(repo / "data/store")
    assert version.lock_entry() == {k: recorded[k] for k in ("md5", "size", "nfiles", "hash")}
    assert version.md5.endswith(".dir") and version.nfiles == len(version.files) == 7   # 4 arrays, 2 labels, manifest
    assert counted_hashing == []          # `dvc repro` hashed these files already: DVC's state answered
    assert versioning.dvc_hash(repo / "data/synthetic") == lock_entry(repo, "synthesize", "data/synthetic")["md5"]

    outside = tmp_path / "copy"            # the same bytes in a folder no DVC repository holds
    shutil.copytree(repo / "data/store", outside)
    counted_hashing.clear()
    assert versioning.dvc_hash(outside) == recorded["md5"]
    assert len(counted_hashing) == 7
    counted_hashing.clear()
    assert versioning.dvc_hash(outside) == recorded["md5"]
    assert counted_hashing == []          # a repeated call only stats the files
    assert any((site_cache / "pseudovad").rglob("*")), "the state lives in DVC's site cache dir"

    (outside / "training" / "01.npy").write_bytes(b"changed")
    assert versioning.dvc_hash(outside) != recorded["md5"]
    # dvc commit agrees on the changed folder too
    shutil.copyfile(outside / "training" / "01.npy", repo / "data/store/training/01.npy")
    dvc(["commit", "-f", "extract"], repo)
    assert versioning.dvc_hash(repo / "data/store") == lock_entry(repo, "extract", "data/store")["md5"] \
        == versioning.dvc_hash(outside)


@pytest.mark.integration
def test_evaluation_version_is_the_test_split_alone(repo, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(repo / "data/store", store)
    before = versioning.evaluation_version(store)
    # what DVC records for a folder holding just the test split's arrays and labels
    tests = tmp_path / "repo2"
    tests.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tests, check=True)
    dvc(["init", "-q"], tests)
    shutil.copytree(store / "testing", tests / "testing")
    dvc(["add", "testing"], tests)
    assert yaml.safe_load((tests / "testing.dvc").read_text())["outs"][0]["md5"] == before

    # a retraining round adds training footage: the store's version changes, the evaluation set's does not
    old_store = versioning.dvc_hash(store)
    np.save(store / "training" / "ingest-day2.npy", np.zeros((3, 32, 32), np.uint8))
    assert versioning.dvc_hash(store) != old_store
    assert versioning.evaluation_version(store) == before
    # one video of the test split is another evaluation set
    ids = [e.id for e in FrameStore(store).videos("testing")]
    assert versioning.evaluation_version(store, ids[:1]) not in (before, versioning.evaluation_version(store, ids[1:]))
    # a flipped label is another evaluation set
    labels = store / "testing" / f"{ids[0]}.labels.npy"
    y = np.load(labels)
    y[0] = 1 - y[0]
    np.save(labels, y)
    flipped = versioning.evaluation_version(store)
    assert flipped != before
    labels.unlink()                        # so is one without that video's labels
    assert versioning.evaluation_version(store) not in (before, flipped)
    with pytest.raises(DataError, match="not a folder"):
        versioning.dvc_hash(tmp_path / "nope")
