"""One DVC remote for a laptop's `dvc repro` and the cluster's extract step (kfp.local, real S3):
the step pulls what the laptop pushed instead of decoding, extracts and pushes what the remote
lacks so that a fresh clone gets it without decoding, finds it again in the remote's run cache,
and detects, names and replaces a corrupt object instead of using it.

The extract component runs alone through kfp.local (SubprocessRunner): the graph around it is
compiled and checked in tests/test_kfp.py, and the rest of the training pipeline does not care
where the store came from."""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from pseudovad import config as config_mod
from pseudovad.data.versioning import dvc_hash
from pseudovad.storage import configure_dvc_remote
from tests.conftest import TINY
from tests.s3_server import ACCESS_KEY, SECRET_KEY, make_bucket, s3_endpoint, s3_endpoint_session  # noqa: F401
from tests.test_dvc_remote import BIN, project_pipeline, same_tree, sh

REMOTE = "s3://pseudovad/dvc"


def laptop_repo(root: Path) -> Path:
    """The project as a user has it: params.yaml, the data stages of dvc.yaml, the DVC remote."""
    root.mkdir()
    params = config_mod.deep_merge(TINY, {"storage": {"dvc_remote": REMOTE}})
    (root / "params.yaml").write_text(config_mod.dump(config_mod.from_dict(params)))
    (root / "dvc.yaml").write_text(yaml.safe_dump(project_pipeline(), sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh([str(BIN / "dvc"), "init", "-q"], root)
    configure_dvc_remote(config_mod.load(root / "params.yaml"), repo=root)
    return root


def lock_md5(repo: Path, stage: str = "extract") -> str:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]["outs"][0]["md5"]


def remote_object(client, md5: str) -> str:
    return f"dvc/files/md5/{md5[:2]}/{md5[2:]}"


@pytest.mark.integration
def test_extract_step_shares_one_dvc_remote_with_the_laptop(s3_endpoint, tmp_path, monkeypatch, capfd):  # noqa: F811
    from kfp import local

    from components import extract

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)           # as the pipeline's S3 secret sets it
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))   # DVC's state: in tmp, also in the steps
    client = make_bucket(s3_endpoint, "pseudovad")
    laptop = laptop_repo(tmp_path / "laptop")

    # the laptop: extract, push, commit, tag the data version
    sh([str(BIN / "dvc"), "repro", "extract"], laptop)
    sh([str(BIN / "dvc"), "push"], laptop)
    sh(["git", "add", "-A"], laptop)
    sh(["git", "commit", "-q", "-m", "data v1"], laptop)
    sh(["git", "tag", "data-v1"], laptop)
    v1 = lock_md5(laptop)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))

    def step(revision: str):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            task = extract(repo_url=str(laptop), revision=revision, dvc_remote=REMOTE)
        out = capfd.readouterr().out
        assert SECRET_KEY not in out and ACCESS_KEY not in out
        return task.outputs["store"], out

    # 1. the cluster on the tagged revision: pulled, nothing decoded, the laptop's hash and bytes
    store, log = step("data-v1")
    assert store.metadata["dvc_how"] == "pulled" and store.metadata["decoded"] is False
    assert store.metadata["inputs_pulled"] == []            # not even the footage came down
    assert f"names data/store {v1} for these params; pulled it from the DVC remote (nothing decoded)" in log
    assert "pseudovad extract" not in log and "Running stage" not in log
    assert store.metadata["data_version"] == v1 == dvc_hash(store.path)
    assert store.metadata["evaluation_version"].endswith(".dir")
    assert store.metadata["videos"] == {"testing": 2, "training": 2}
    same_tree(laptop / "data/store", Path(store.path))

    # 2. new footage on the laptop (pushed, but never extracted there): the cluster extracts and pushes
    params = yaml.safe_load((laptop / "params.yaml").read_text())
    params["synthetic"]["seed"] = 7
    (laptop / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh([str(BIN / "dvc"), "repro", "synthesize"], laptop)
    sh([str(BIN / "dvc"), "push"], laptop)
    sh(["git", "commit", "-q", "-am", "footage v2"], laptop)
    store2, log = step("")                                   # "" = the branch's head
    assert store2.metadata["dvc_how"] == "extracted" and store2.metadata["decoded"] is True
    assert store2.metadata["inputs_pulled"] == ["data/synthetic", "data/store-ingested"]
    assert "does not name data/store" in log and "pushed it and its run cache" in log
    v2 = store2.metadata["data_version"]
    assert v2 not in (v1, lock_md5(laptop)) and v2 == dvc_hash(store2.path)
    # ... training footage changed, the test split too (the synthetic seed renders both)
    assert store2.metadata["evaluation_version"] != store.metadata["evaluation_version"]

    # a fresh clone gets the cluster's frames from the remote's run cache: byte-identical, not decoded
    fresh = tmp_path / "fresh"
    sh(["git", "clone", "-q", str(laptop), str(fresh)], tmp_path)
    configure_dvc_remote(config_mod.load(fresh / "params.yaml"), repo=fresh)
    out = sh([str(BIN / "dvc"), "repro", "--pull", "extract"], fresh)
    assert "Stage 'extract' is cached - skipping run, checking out outputs" in out
    assert "Running stage 'extract'" not in out
    same_tree(Path(store2.path), fresh / "data/store")
    assert lock_md5(fresh) == v2

    # 3. the next cluster run on that revision restores it from the run cache: nothing decoded
    store3, log = step("")
    assert store3.metadata["dvc_how"] == "restored" and store3.metadata["decoded"] is False
    assert "run cache has data/store" in log and store3.metadata["data_version"] == v2

    # 4. a corrupt (truncated) object in the remote: named in one line, deleted, never used; re-extracted
    listing = json.loads(client.get_object(Bucket="pseudovad", Key=remote_object(client, v1))["Body"].read())
    victim = next(e for e in listing if e["relpath"] == "testing/01.npy")
    key = remote_object(client, victim["md5"])
    good = client.get_object(Bucket="pseudovad", Key=key)["Body"].read()
    client.put_object(Bucket="pseudovad", Key=key, Body=good[: len(good) // 2])
    store4, log = step("data-v1")
    (line,) = [x for x in log.splitlines() if "corrupt" in x and "data/store/testing/01.npy" in x]
    assert f"s3://pseudovad/{key}" in line and "not used" in line
    assert store4.metadata["dvc_how"] == "extracted"
    assert store4.metadata["data_version"] == v1 == dvc_hash(store4.path)    # extraction is deterministic
    same_tree(laptop / "data/store", Path(store4.path))
    repaired = client.get_object(Bucket="pseudovad", Key=key)["Body"].read()
    assert hashlib.md5(repaired).hexdigest() == victim["md5"]                # the good copy is back

    # no secret in any file the steps wrote
    for p in (tmp_path / "kfp").rglob("*"):
        if p.is_file() and p.suffix in (".json", ".yaml", ".lock", "") and p.stat().st_size < 1 << 20:
            text = p.read_text(errors="replace")
            assert SECRET_KEY not in text and ACCESS_KEY not in text, p
    shutil.rmtree(tmp_path / "dvc-site", ignore_errors=True)
