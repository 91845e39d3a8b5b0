"""DVC on S3: the project's ingest → extract stages run under `dvc repro`, `dvc push` sends the
footage and the store to a real S3 server, and a second checkout gets them with `dvc pull` —
then a retraining-style `pseudovad ingest` + `dvc commit` travels the same way."""
from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pseudovad import config as config_mod
from pseudovad.data.store import FrameStore
from pseudovad.stages import ingest
from pseudovad.storage import configure_dvc_remote
from tests.conftest import TINY
from tests.s3_server import ACCESS_KEY, SECRET_KEY, make_bucket, s3_endpoint, s3_endpoint_session  # noqa: F401
from tests.test_ingest import footage

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STAGES = ("synthesize", "ingest", "extract")


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "PSEUDOVAD_NO_PROGRESS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert SECRET_KEY not in out and ACCESS_KEY not in out
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-3000:]}"
    return out


def project_pipeline() -> dict:
    """The repository's own dvc.yaml, cut to the data stages (source-code deps dropped)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = {}
    for name in STAGES:
        st = dict(spec["stages"][name])
        if "deps" in st:
            st["deps"] = [d for d in st["deps"] if not str(d).startswith("src/")]
        stages[name] = st
    return {"stages": stages}


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and files_a
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


@pytest.mark.integration
def test_dvc_push_pull_between_laptop_and_cluster(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)   # endpoint from the environment, not params
    client = make_bucket(s3_endpoint, "pseudovad")
    laptop, cluster = tmp_path / "laptop", tmp_path / "cluster"
    laptop.mkdir()
    params = config_mod.deep_merge(TINY, {
        "storage": {"bucket": "pseudovad", "prefix": "footage/", "dvc_remote": "s3://pseudovad/dvc"}})
    (laptop / "params.yaml").write_text(config_mod.dump(config_mod.from_dict(params)))  # every key, as DVC wants
    (laptop / "dvc.yaml").write_text(yaml.safe_dump(project_pipeline(), sort_keys=False))
    cfg = config_mod.load(laptop / "params.yaml")
    client.upload_file(str(footage(tmp_path / "d1.avi", cfg, seed=61)), "pseudovad", "footage/day1.avi")

    sh(["git", "init", "-q"], laptop)
    sh([str(BIN / "dvc"), "init", "-q"], laptop)
    remote = configure_dvc_remote(cfg, repo=laptop)
    assert remote["url"] == "s3://pseudovad/dvc"
    project_config = (laptop / ".dvc/config").read_text()
    assert "s3://pseudovad/dvc" in project_config and "endpointurl" not in project_config
    assert f"endpointurl = {s3_endpoint}" in (laptop / ".dvc/config.local").read_text()
    for f in (laptop / ".dvc").rglob("config*"):
        assert SECRET_KEY not in f.read_text() and ACCESS_KEY not in f.read_text()

    sh([str(BIN / "dvc"), "repro"], laptop)
    store = FrameStore(laptop / "data/store")
    ids = [e.id for e in store.videos("training")]
    assert len(ids) == 3 and ids[2].endswith("-day1")
    sh([str(BIN / "dvc"), "push"], laptop)
    sh(["git", "add", "-A"], laptop)
    sh(["git", "commit", "-q", "-m", "data v1"], laptop)
    assert "config.local" not in sh(["git", "ls-files", ".dvc"], laptop)

    # the cluster: a clone has the pointers (dvc.lock), `dvc pull` brings the bytes from S3
    sh(["git", "clone", "-q", str(laptop), str(cluster)], tmp_path)
    configure_dvc_remote(cfg, repo=cluster)
    sh([str(BIN / "dvc"), "pull"], cluster)
    for folder in ("data/store", "data/store-ingested", "data/synthetic"):
        same_tree(laptop / folder, cluster / folder)
    assert "up to date" in sh([str(BIN / "dvc"), "status"], cluster)

    # a retraining round on the laptop: new footage, ingested straight into the store, versioned
    client.upload_file(str(footage(tmp_path / "d2.avi", cfg, seed=62)), "pseudovad", "footage/day2.avi")
    monkeypatch.chdir(laptop)
    s = ingest.run(config_mod.load("params.yaml"), progress=False)
    assert [v["video"][-4:] for v in s["ingested"]] == ["day2"]
    sh([str(BIN / "dvc"), "commit", "-f", "ingest", "extract"], laptop)   # as the README says
    sh([str(BIN / "dvc"), "push"], laptop)
    sh(["git", "commit", "-q", "-am", "data v2"], laptop)
    sh(["git", "pull", "-q"], cluster)
    sh([str(BIN / "dvc"), "pull"], cluster)
    assert [e.id[-4:] for e in FrameStore(cluster / "data/store").videos("training")][2:] == ["day1", "day2"]
    same_tree(laptop / "data/store-ingested", cluster / "data/store-ingested")
    same_tree(laptop / "data/store", cluster / "data/store")
    # and the pulled state is what the pipeline would build: nothing to re-run
    assert "up to date" in sh([str(BIN / "dvc"), "status"], cluster)
