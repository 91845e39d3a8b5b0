"""One DVC remote for a laptop's `dvc repro` and the cluster's extract step (kfp.local, real S3):
the training pipeline on the laptop's tagged revision pulls what the laptop pushed instead of
decoding and registers a model tagged with that data version; the extract step extracts and
pushes what the remote lacks so that a fresh clone gets it without decoding, finds it again in
the remote's run cache, and detects, names and replaces a corrupt object instead of using it.

After the first whole-pipeline run the extract component runs alone through kfp.local
(SubprocessRunner): the graph around it is compiled and checked in tests/test_kfp.py."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import yaml

from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.data.store import FrameStore
from pseudovad.data.versioning import dvc_hash
from pseudovad.storage import configure_dvc_remote
from tests.conftest import TINY
from tests.s3_server import _CLEARED, ACCESS_KEY, CREDENTIALS, SECRET_KEY, make_bucket, reset, s3_endpoint_session  # noqa: F401
from tests.mlflow_server import mlflow_server  # noqa: F401
from tests.test_dvc_remote import BIN, project_pipeline, same_tree, sh
from tests.test_kfp import TINY_PARAMS, _artifact, _outputs

REMOTE = "s3://pseudovad/dvc"


@pytest.fixture(scope="module")
def laptop(s3_endpoint_session, tmp_path_factory):  # noqa: F811
    """A laptop's clone after `dvc repro extract && dvc push`, committed and tagged `data-v1`, with
    the S3 server as its DVC remote; the environment holds only the fake credentials (for the
    steps too: kfp.local's subprocesses inherit it) and DVC's state stays in tmp."""
    tmp = tmp_path_factory.mktemp("kfp-dvc")
    with pytest.MonkeyPatch.context() as mp:
        for name in _CLEARED:
            mp.delenv(name, raising=False)
        for name, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
                            "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
                            "AWS_ENDPOINT_URL": s3_endpoint_session,        # as the pipeline's S3 secret sets it
                            "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site")}.items():
            mp.setenv(name, value)
        reset(s3_endpoint_session)
        client = make_bucket(s3_endpoint_session, "pseudovad")
        repo = laptop_repo(tmp / "laptop")
        sh([str(BIN / "dvc"), "repro", "extract"], repo)
        sh([str(BIN / "dvc"), "push"], repo)
        sh(["git", "add", "-A"], repo)
        sh(["git", "commit", "-q", "-m", "data v1"], repo)
        sh(["git", "tag", "data-v1"], repo)
        yield {"repo": repo, "client": client, "tmp": tmp}


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
def test_extract_step_shares_one_dvc_remote_with_the_laptop(laptop, mlflow_server, tmp_path, capfd):  # noqa: F811
    from kfp import local
    from mlflow import MlflowClient

    from components import extract
    from pipelines import cli

    client, laptop = laptop["client"], laptop["repo"]
    v1 = lock_md5(laptop, "extract")

    # 1. the training pipeline on the tagged revision: extract pulled, nothing decoded, the laptop's
    # hash and bytes; train → evaluate → register on them, the version tagged with that data version
    params = config_mod.deep_merge(yaml.safe_load((laptop / "params.yaml").read_text()),
                                   {k: v for k, v in TINY_PARAMS.items() if k != "tune"})
    params["tracking"] = {**params.get("tracking", {}), "enabled": True}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    root = tmp_path / "pipeline"
    assert cli.main(["local", "training", "-P", str(tmp_path / "params.yaml"), "-a", f"repo_url={laptop}",
                     "-a", "revision=data-v1", "-a", f"dvc_remote={REMOTE}", "-a", f"mlflow_uri={mlflow_server}",
                     "-a", "epochs=1", "--root", str(root)]) == 0
    log = capfd.readouterr().out
    assert SECRET_KEY not in log and ACCESS_KEY not in log
    run = _outputs(root, "pseudovad-training")
    steps = {p.name.rsplit("-", 1)[0] if p.name[-1].isdigit() else p.name: p.name for p in run.iterdir() if p.is_dir()}
    assert {"extract", "train", "evaluate", "register"} <= set(steps) and "importer" not in steps
    meta = _artifact(run, steps["extract"], "store")["metadata"]
    assert meta["dvc_how"] == "pulled" and meta["decoded"] is False
    assert meta["inputs_pulled"] == []                      # not even the footage came down
    assert f"names data/store {v1} for these params; pulled it from the DVC remote (nothing decoded)" in log
    assert "pseudovad extract" not in log and "Running stage" not in log
    assert meta["data_version"] == v1 == dvc_hash(run / steps["extract"] / "store")
    assert meta["videos"] == {"testing": 2, "training": 2}
    same_tree(laptop / "data/store", run / steps["extract"] / "store")
    evaluation = results.read(run / steps["evaluate"] / "evaluation")   # metrics.json + provenance.json
    assert evaluation["fingerprint"] == meta["evaluation_version"]
    decision = _artifact(run, steps["register"], "decision")["metadata"]
    version = MlflowClient(tracking_uri=mlflow_server).get_model_version(decision["model_name"], decision["version"])
    assert version.tags["data_version"] == v1 and version.tags["eval_fingerprint"] == meta["evaluation_version"]
    assert _artifact(run, steps["train"], "model")["metadata"]["data_version"] == v1
    no_secret_in(root)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))

    def step(revision: str):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            task = extract(repo_url=str(laptop), revision=revision, dvc_remote=REMOTE)
        out = capfd.readouterr().out
        assert SECRET_KEY not in out and ACCESS_KEY not in out
        return task.outputs["store"], out

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
    assert store2.metadata["evaluation_version"] != meta["evaluation_version"]

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

    no_secret_in(tmp_path / "kfp")


def no_secret_in(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".yaml", ".lock", "") and p.stat().st_size < 1 << 20:
            text = p.read_text(errors="replace")
            assert SECRET_KEY not in text and ACCESS_KEY not in text, p


@pytest.mark.integration
def test_retraining_ingest_step_seeds_and_versions_the_volume_through_dvc(laptop, tmp_path, capfd):
    """The retraining pipeline's ingest step, in-process: an empty volume is filled from the
    tagged revision's DVC data (pulled, nothing decoded); the round's new footage and store are
    recorded as `dvc commit -f ingest extract` would and pushed; the step's dvc.lock in a fresh
    clone makes `dvc pull` bring exactly the volume's folders."""
    from kfp.dsl import Artifact, Markdown, Metrics

    from components import ingest
    from tests.test_ingest import footage

    client, repo = laptop["client"], laptop["repo"]
    cfg = config_mod.load(repo / "params.yaml")
    client.upload_file(str(footage(tmp_path / "day1.avi", cfg, seed=61)), "pseudovad", "footage/cam1/day1.avi")
    volume = tmp_path / "volume"
    out = {n: cls(uri=str(tmp_path / "kfp" / n)) for n, cls in (("report", Markdown), ("counts", Metrics),
                                                                 ("lock", Artifact))}
    (tmp_path / "kfp").mkdir()
    learn = ingest.python_func(source="s3://pseudovad/footage/", store_dir=str(volume / "store"), **out,
                               overrides=[f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
                                          f"ingest.quarantine={volume / 'quarantine'}"],
                               repo_url=str(repo), revision="data-v1", dvc_remote=REMOTE)
    assert learn is True
    report = Path(out["report"].path).read_text()
    assert "dvc.lock at" in report and "pulled it from the DVC remote (nothing decoded)" in report
    meta = out["lock"].metadata
    assert meta["data_version"] == dvc_hash(volume / "store") != lock_md5(repo, "extract")
    assert meta["ingested_version"] == dvc_hash(volume / "store-ingested")
    assert [e.id[-4:] for e in FrameStore(volume / "store").videos("training")] == ["01", "02", "day1"]

    # a laptop checkout of that revision + the step's dvc.lock: `dvc pull` brings the round's data
    fresh = tmp_path / "fresh"
    sh(["git", "clone", "-q", "--branch", "data-v1", str(repo), str(fresh)], tmp_path)
    configure_dvc_remote(cfg, repo=fresh)
    (fresh / "dvc.lock").write_text(Path(out["lock"].path).read_text())
    sh([str(BIN / "dvc"), "pull", "ingest", "extract"], fresh)
    same_tree(volume / "store", fresh / "data/store")
    same_tree(volume / "store-ingested", fresh / "data/store-ingested")
    assert SECRET_KEY not in capfd.readouterr().out
    no_secret_in(tmp_path / "kfp")


def test_repository_urls_with_credentials_are_refused_before_anything_is_cloned(tmp_path):
    from pseudovad.dvc_cache import Checkout, check_repo_url
    from pseudovad.errors import ConfigError, DataError

    for url in ("https://x-access-token:ghp_secret@github.com/you/project.git", "http://me@git.local/p.git"):
        with pytest.raises(ConfigError, match=r"^repo_url: must not contain credentials .*GIT_TOKEN") as e:
            Checkout.clone(url, "main", tmp_path / "work")
        assert "ghp_secret" not in str(e.value)
    assert not (tmp_path / "work").exists()
    with pytest.raises(ConfigError, match="^repo_url: required with a DVC remote"):
        check_repo_url("")
    for url in ("https://github.com/you/project.git", "file:///srv/project", "../project"):
        assert check_repo_url(url) == url

    # a git repository without DVC: named with its revision, in one line
    plain = tmp_path / "plain"
    plain.mkdir()
    sh(["git", "init", "-q", "-b", "main"], plain)
    (plain / "README").write_text("no dvc here\n")
    sh(["git", "add", "README"], plain)
    sh(["git", "commit", "-q", "-m", "x"], plain)
    with pytest.raises(DataError, match=r"plain@main: not a DVC project \(no \.dvc/ folder\)$"):
        Checkout.clone(str(plain), "main", tmp_path / "work")
