"""Ingest against a real S3 server: new footage in, bad footage quarantined, nothing twice,
downloads that survive broken streams, and credentials that never reach the terminal."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ResponseStreamingError

from pseudovad import config as config_mod
from pseudovad.cli import main as cli_main
from pseudovad.data.store import FrameStore
from pseudovad.data.synthetic import render_video, write_video
from pseudovad.errors import DataError, StorageError
from pseudovad.stages import extract, ingest, synthesize
from pseudovad.storage import S3, redact
from tests.conftest import tiny_cfg
from tests.s3_server import ACCESS_KEY, SECRET_KEY, make_bucket, s3_endpoint, s3_endpoint_session  # noqa: F401

BUCKET = "cameras"


def footage(path: Path, cfg, seed: int, frames: int | None = None) -> Path:
    """A normal-footage clip like a camera would upload (another day: another seed)."""
    syn = cfg.synthetic.model_copy(update={"seed": seed, "frames": frames or cfg.synthetic.frames})
    video, _ = render_video(syn, "training", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, video, syn.fps)
    return path


def store_cfg(tmp_path, endpoint, **sections):
    """Tiny store already extracted, S3 pointing at the test server, quarantine inside tmp_path."""
    cfg = tiny_cfg(tmp_path, storage={"endpoint_url": endpoint, "bucket": BUCKET, "prefix": "footage/",
                                      "max_attempts": 3},
                   ingest={"quarantine": str(tmp_path / "quarantine")}, **sections)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    return cfg


def write_params(cfg, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return path


def test_ingest_twice_quarantines_bad_files_and_rebuild_matches(s3_endpoint, tmp_path, capfd):
    cfg = store_cfg(tmp_path, s3_endpoint)
    client = make_bucket(s3_endpoint, BUCKET)
    src = tmp_path / "upload"
    for i, key in enumerate(["cam1/2024-05-01.avi", "cam1/2024-05-02.avi"]):
        client.upload_file(str(footage(src / f"{i}.avi", cfg, seed=10 + i)), BUCKET, f"footage/{key}")
    good = (src / "0.avi").read_bytes()
    client.put_object(Bucket=BUCKET, Key="footage/cam2/corrupt.avi", Body=b"\x00RIFF not a video" * 64)
    client.put_object(Bucket=BUCKET, Key="footage/cam2/cut.avi", Body=good[: len(good) * 6 // 10])
    client.upload_file(str(footage(src / "short.avi", cfg, seed=20, frames=16)), BUCKET, "footage/cam2/short.avi")
    client.put_object(Bucket=BUCKET, Key="footage/cam1/notes.txt", Body=b"camera 1 moved on May 2")
    before = FrameStore(cfg.data.store)
    old_ids = [e.id for e in before.videos("training")]

    s = ingest.run(cfg, progress=False)
    assert s["listed"] == 5 and s["ignored"] == 1
    new_ids = [v["video"] for v in s["ingested"]]
    assert len(new_ids) == 2 and all(v.startswith("ingest-") and "cam1_2024-05-0" in v for v in new_ids)
    reasons = {Path(q["source"]).name: q["reason"] for q in s["quarantined"]}
    assert set(reasons) == {"corrupt.avi", "cut.avi", "short.avi"}
    assert "cannot be decoded" in reasons["corrupt.avi"]
    assert "truncated" in reasons["cut.avi"]
    assert "too short" in reasons["short.avi"] and "ingest.min_frames" in reasons["short.avi"]
    for q in s["quarantined"]:   # the file and its reason, side by side
        qfile = Path(q["file"])
        assert qfile.is_file() and qfile.parent == tmp_path / "quarantine"
        assert Path(f"{qfile}.reason.txt").read_text().startswith(q["reason"])

    store = FrameStore(cfg.data.store)
    assert [e.id for e in store.videos("training")] == old_ids + new_ids
    assert [e.id for e in store.videos("testing")] == [e.id for e in before.videos("testing")]
    for e in store.videos("training")[-2:]:
        assert store.array(e).shape == (cfg.synthetic.frames, *cfg.data.size)
    assert [r["video"] for r in store.manifest["ingested"]] == new_ids
    assert store.manifest["labels"] == before.manifest["labels"]      # the rest of the manifest is kept
    raw = Path(f"{cfg.data.store}-ingested/training/videos/{new_ids[0]}.avi")
    assert raw.read_bytes() == good                                 # raw footage kept, byte for byte
    assert not any("cut" in e.id or "short" in e.id or "corrupt" in e.id for e in store.entries)

    # second run: nothing new, says so, exit 0; the same bytes under a new key are not added again
    client.put_object(Bucket=BUCKET, Key="footage/cam1/copy-of-day1.avi", Body=good)
    capfd.readouterr()
    params = write_params(cfg, tmp_path / "params.yaml")
    assert cli_main(["ingest", "-P", str(params)]) == 0
    out = capfd.readouterr().out
    assert "nothing new" in out and "5 seen before, 1 duplicate content" in out
    assert [e.id for e in FrameStore(cfg.data.store).entries] == [e.id for e in store.entries]
    assert cli_main(["ingest", "-P", str(params)]) == 0
    assert "6 seen before" in capfd.readouterr().out                 # the duplicate is not even downloaded

    # rebuilding the store from scratch (what `dvc repro` does) gives the same store
    manifest = json.loads((Path(cfg.data.store) / "manifest.json").read_text())
    fingerprint = FrameStore(cfg.data.store).fingerprint("training")
    shutil.rmtree(cfg.data.store)
    extract.run(cfg, progress=False)
    assert json.loads((Path(cfg.data.store) / "manifest.json").read_text()) == manifest
    assert FrameStore(cfg.data.store).fingerprint("training") == fingerprint


def test_local_folder_fetch_only_then_extract(tmp_path, s3_endpoint):
    """`--no-store` (the dvc.yaml ingest stage) keeps raw footage; `extract` adds it to the store."""
    cfg = tiny_cfg(tmp_path, ingest={"quarantine": str(tmp_path / "q")})
    synthesize.run(cfg)
    drop = tmp_path / "drop"
    footage(drop / "morning.avi", cfg, seed=31)
    (drop / "evening.avi").write_bytes(b"")                         # an upload that never happened
    params = write_params(cfg, tmp_path / "params.yaml")
    assert cli_main(["ingest", "-P", str(params), "--source", str(drop), "--no-store"]) == 0
    assert not Path(cfg.data.store).exists()
    log = json.loads(Path(f"{cfg.data.store}-ingested/ingest.json").read_text())
    status = {Path(o["source"]).name: o["status"] for o in log["objects"]}
    assert status == {"morning.avi": "ingested", "evening.avi": "quarantined"}
    extract.run(cfg, progress=False)
    ids = [e.id for e in FrameStore(cfg.data.store).videos("training")]
    assert ids[:2] == ["01", "02"] and ids[2].startswith("ingest-") and ids[2].endswith("-morning")
    # the local source is read, never moved
    assert (drop / "morning.avi").is_file() and (drop / "evening.avi").is_file()


def test_interrupted_commit_leaves_no_half_added_video(tmp_path, s3_endpoint, monkeypatch):
    cfg = store_cfg(tmp_path, s3_endpoint)
    client = make_bucket(s3_endpoint, BUCKET)
    client.upload_file(str(footage(tmp_path / "a.avi", cfg, seed=41)), BUCKET, "footage/a.avi")
    before = (Path(cfg.data.store) / "manifest.json").read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    with monkeypatch.context() as m, pytest.raises(OSError):
        m.setattr("pseudovad.data.ingest.complete_store", crash)
        ingest.run(cfg, progress=False)
    assert (Path(cfg.data.store) / "manifest.json").read_bytes() == before
    assert not json.loads(Path(f"{cfg.data.store}-ingested/ingest.json").read_text())["objects"]
    # the raw file was moved in before the crash, but no log owns it: the next run cleans up and ingests
    s = ingest.run(cfg, progress=False)
    assert len(s["ingested"]) == 1
    assert len(list(Path(f"{cfg.data.store}-ingested/training/videos").iterdir())) == 1


def test_store_with_other_extraction_params_is_refused(tmp_path, s3_endpoint):
    cfg = store_cfg(tmp_path, s3_endpoint)
    make_bucket(s3_endpoint, BUCKET)
    other = config_mod.from_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "size": [16, 16]}})
    with pytest.raises(DataError, match="run `pseudovad extract`"):
        ingest.run(other, progress=False)


def test_no_source_configured_is_a_quiet_success(tmp_path, capfd):
    cfg = tiny_cfg(tmp_path)
    assert cli_main(["ingest", "-P", str(write_params(cfg, tmp_path / "p.yaml"))]) == 0
    assert "no source configured" in capfd.readouterr().out


# --------------------------------------------------------------------------------------------
# Transfers

class Recorder:
    """Wraps get_object: records each call's Range, optionally breaks the first body mid-stream."""

    def __init__(self, s3: S3, break_after: int | None = None):
        self.real = s3.client.get_object
        self.ranges: list[str | None] = []
        self.break_after = break_after
        s3.client.get_object = self

    def __call__(self, **kwargs):
        self.ranges.append(kwargs.get("Range"))
        r = self.real(**kwargs)
        if self.break_after is not None and len(self.ranges) == 1:
            r["Body"] = BrokenBody(r["Body"], self.break_after)
        return r


class BrokenBody:
    """A response stream whose connection drops after `limit` bytes."""

    def __init__(self, body, limit: int):
        self.body, self.limit = body, limit

    def iter_chunks(self, chunk_size):
        sent = 0
        for chunk in self.body.iter_chunks(chunk_size):
            if sent + len(chunk) > self.limit:
                yield chunk[: self.limit - sent]
                raise ResponseStreamingError(error="Connection broken: IncompleteRead")
            sent += len(chunk)
            yield chunk

    def close(self):
        self.body.close()


def test_partial_download_resumes_with_range(s3_endpoint, tmp_path):
    client = make_bucket(s3_endpoint, BUCKET)
    data = np.random.default_rng(0).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    client.put_object(Bucket=BUCKET, Key="footage/big.avi", Body=data)
    s3 = S3(BUCKET, s3_endpoint, max_attempts=3, backoff=0.01)
    dest = tmp_path / "big.avi"
    Path(f"{dest}.part").write_bytes(data[:1_234_567])               # a download killed earlier
    rec = Recorder(s3)
    got = s3.download("footage/big.avi", dest)
    assert rec.ranges == ["bytes=1234567-"]
    assert got.resumed_from == 1_234_567 and dest.read_bytes() == data
    assert not Path(f"{dest}.part").exists()


def test_partial_of_a_replaced_object_restarts(s3_endpoint, tmp_path):
    client = make_bucket(s3_endpoint, BUCKET)
    old = b"old-version " * 100_000
    new = b"new-version!" * 120_000
    client.put_object(Bucket=BUCKET, Key="k.avi", Body=new)
    s3 = S3(BUCKET, s3_endpoint, max_attempts=3, backoff=0.01)
    dest = tmp_path / "k.avi"
    Path(f"{dest}.part").write_bytes(old[:500_000])                  # partial of what used to be there
    rec = Recorder(s3)
    s3.download("k.avi", dest)
    assert dest.read_bytes() == new                                  # MD5 check caught the splice
    assert rec.ranges == ["bytes=500000-", None]


def test_stream_dropped_mid_body_is_retried_from_where_it_stopped(s3_endpoint, tmp_path):
    client = make_bucket(s3_endpoint, BUCKET)
    data = np.random.default_rng(1).integers(0, 256, 2_500_000, dtype=np.uint8).tobytes()
    client.put_object(Bucket=BUCKET, Key="f.avi", Body=data)
    s3 = S3(BUCKET, s3_endpoint, max_attempts=3, backoff=0.01)
    rec = Recorder(s3, break_after=1_000_000)
    got = s3.download("f.avi", tmp_path / "f.avi")
    assert rec.ranges == [None, "bytes=1000000-"]
    assert (tmp_path / "f.avi").read_bytes() == data and got.size == len(data)


def test_stream_that_keeps_failing_leaves_a_part_to_resume(s3_endpoint, tmp_path):
    client = make_bucket(s3_endpoint, BUCKET)
    client.put_object(Bucket=BUCKET, Key="f.avi", Body=b"x" * 300_000)
    s3 = S3(BUCKET, s3_endpoint, max_attempts=2, backoff=0.01)
    real = s3.client.get_object

    def always_breaks(**kw):
        r = real(**kw)
        r["Body"] = BrokenBody(r["Body"], 100_000)
        return r
    s3.client.get_object = always_breaks
    with pytest.raises(StorageError, match="download failed after 2 attempts.*rerun to resume"):
        s3.download("f.avi", tmp_path / "f.avi")
    assert Path(tmp_path / "f.avi.part").stat().st_size == 200_000
    assert not (tmp_path / "f.avi").exists()


def _inject_503(client, times: int) -> dict:
    """Make the next `times` ListObjectsV2 requests answer 503 before they reach the server."""
    count = {"sent": 0}

    class Empty:
        def stream(self, **kw):
            yield b""

    def handler(request, **kw):
        count["sent"] += 1
        if count["sent"] <= times:
            return AWSResponse(request.url, 503, {}, Empty())
        return None
    client.meta.events.register("before-send.s3.ListObjectsV2", handler)
    return count


def test_transient_5xx_are_retried_by_botocore(s3_endpoint):
    make_bucket(s3_endpoint, BUCKET).put_object(Bucket=BUCKET, Key="footage/a.avi", Body=b"1")
    s3 = S3(BUCKET, s3_endpoint, max_attempts=3, backoff=0.01)
    count = _inject_503(s3.client, 2)
    assert [o.key for o in s3.list("footage/")] == ["footage/a.avi"]
    assert count["sent"] == 3
    s3 = S3(BUCKET, s3_endpoint, max_attempts=2)
    _inject_503(s3.client, 2)
    with pytest.raises(StorageError, match="service error 503.*after 2 attempts"):
        s3.list("footage/")


def test_multipart_upload_round_trip(s3_endpoint, tmp_path):
    make_bucket(s3_endpoint, BUCKET)
    data = np.random.default_rng(2).integers(0, 256, 11 << 20, dtype=np.uint8).tobytes()
    (tmp_path / "model.pt").write_bytes(data)
    s3 = S3(BUCKET, s3_endpoint)
    obj = s3.upload(tmp_path / "model.pt", "artifacts/model.pt", part_size=5 << 20)
    assert obj.size == len(data) and obj.etag.endswith("-3")          # three parts
    assert obj.md5 is None                                            # multipart ETag: size check only
    s3.download(obj, tmp_path / "back.pt")
    assert (tmp_path / "back.pt").read_bytes() == data


# --------------------------------------------------------------------------------------------
# Errors and credentials

def test_errors_are_one_clear_line(s3_endpoint, tmp_path, monkeypatch):
    with pytest.raises(StorageError, match=r"^s3://no-such-bucket: bucket does not exist on http://127\.0\.0\.1"):
        S3("no-such-bucket", s3_endpoint).list("footage/")
    with pytest.raises(StorageError, match=r"endpoint http://127\.0\.0\.1:9 unreachable"):
        S3(BUCKET, "http://127.0.0.1:9", max_attempts=1).list("")
    make_bucket(s3_endpoint, BUCKET)
    with pytest.raises(StorageError, match=r"s3://cameras/gone\.avi: no such object"):
        S3(BUCKET, s3_endpoint).download("gone.avi", tmp_path / "x")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListObjectsV2")
    msg = str(S3(BUCKET, s3_endpoint).error(denied, "footage/"))
    assert msg.startswith("s3://cameras/footage/: access denied") and "AWS_ACCESS_KEY_ID" in msg
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(StorageError, match="no AWS credentials found"):
        S3(BUCKET, s3_endpoint, max_attempts=1).list("")


def test_redact_removes_secrets_passwords_and_signatures(s3_endpoint):
    text = (f"key {ACCESS_KEY} secret {SECRET_KEY} http://admin:hunter22@minio:9000/x "
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAX%2F2024&X-Amz-Signature=abcdef0123")
    clean = redact(text)
    for leaked in (ACCESS_KEY, SECRET_KEY, "hunter22", "abcdef0123", "AKIAX%2F2024"):
        assert leaked not in clean
    assert "http://***@minio:9000/x" in clean


def test_credentials_never_reach_output_logs_or_files(s3_endpoint, tmp_path, capfd, caplog):
    cfg = store_cfg(tmp_path, s3_endpoint)
    client = make_bucket(s3_endpoint, BUCKET)
    client.upload_file(str(footage(tmp_path / "a.avi", cfg, seed=51)), BUCKET, "footage/a.avi")
    client.put_object(Bucket=BUCKET, Key="footage/bad.avi", Body=b"garbage" * 50)
    params = write_params(cfg, tmp_path / "params.yaml")
    caplog.set_level(logging.DEBUG)
    assert cli_main(["-v", "ingest", "-P", str(params)]) == 0
    # and a failing run, whose error message names the endpoint
    assert cli_main(["ingest", "-P", str(params), "-p", "storage.endpoint_url=http://127.0.0.1:9",
                     "-p", "storage.max_attempts=1"]) == 2
    captured = capfd.readouterr()
    assert "unreachable" in captured.err
    texts = [captured.out, captured.err, caplog.text]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
              and p.suffix in (".json", ".txt", ".yaml", ".log")]
    for text in texts:
        assert SECRET_KEY not in text and ACCESS_KEY not in text
