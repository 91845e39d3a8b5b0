"""The frame store: both source kinds, idempotence, labels, and every bad input."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from pseudovad.cli import main as cli_main
from pseudovad.data.clips import ClipDataset
from pseudovad.data.store import FrameStore
from pseudovad.errors import DataError
from pseudovad.stages import extract, synthesize
from tests.conftest import tiny_cfg, write_frame_folder


def test_synthesize_then_extract_videos(tmp_path):
    cfg = tiny_cfg(tmp_path)
    s = synthesize.run(cfg)
    assert s["training"] == 2 and s["testing"] == 2
    assert 0 < s["anomalous_frames"] < s["test_frames"]  # both classes present
    out = extract.run(cfg, progress=False)
    assert out["videos"] == {"training": 2, "testing": 2}
    store = FrameStore(cfg.data.store)
    for e in store.entries:
        arr = store.array(e)
        assert arr.dtype == np.uint8 and arr.shape == (40, 32, 32)
    labels = [store.labels(e) for e in store.videos("testing")]
    assert sum(len(lab) for lab in labels) == 80
    assert out["anomalous_frames"] == int(sum(lab.sum() for lab in labels)) == s["anomalous_frames"]


def test_synthetic_is_deterministic(tmp_path):
    a, b = tiny_cfg(tmp_path / "a"), tiny_cfg(tmp_path / "b")
    synthesize.run(a), synthesize.run(b)
    la = np.load(tmp_path / "a/synthetic/testing/frame_labels.npy")
    lb = np.load(tmp_path / "b/synthetic/testing/frame_labels.npy")
    assert (la == lb).all()
    fa = (tmp_path / "a/synthetic/training/videos/01.avi").read_bytes()
    fb = (tmp_path / "b/synthetic/training/videos/01.avi").read_bytes()
    assert fa == fb


def test_frame_folders_natural_order_color_and_labels(tmp_path):
    root = tmp_path / "ds"
    frames = write_frame_folder(root / "training/frames/v1", 12)
    write_frame_folder(root / "testing/frames/t1", 10, seed=1)
    write_frame_folder(root / "testing/frames/t2", 6, seed=2)
    lab = np.zeros(16, np.uint8)
    lab[3:7] = 1
    np.save(root / "testing/frame_labels.npy", lab)
    cfg = tiny_cfg(tmp_path, data={"root": str(root), "size": [32, 48], "channels": 3})
    extract.run(cfg, progress=False)
    store = FrameStore(cfg.data.store)
    arr = store.array(store.videos("training")[0])
    assert arr.shape == (12, 32, 48, 3)
    # frame "10.png" is the 10th frame, not the 2nd: natural sort
    stamps = [int(arr[i, 0, 0, 0]) for i in range(12)]
    assert stamps == list(range(12))
    t1, t2 = store.videos("testing")
    assert store.labels(t1).tolist() == lab[:10].tolist()
    assert store.labels(t2).tolist() == lab[10:].tolist()


def test_rerun_reuses_unchanged_videos(tmp_path):
    cfg = tiny_cfg(tmp_path)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    first = (tmp_path / "store/training/01.npy").stat().st_mtime_ns
    out = extract.run(cfg, progress=False)
    assert out["reused"] == 4
    assert (tmp_path / "store/training/01.npy").stat().st_mtime_ns == first
    # a changed size invalidates everything
    cfg2 = tiny_cfg(tmp_path, data={"size": [16, 16]})
    assert extract.run(cfg2, progress=False)["reused"] == 0


def test_clip_dataset_ranges_and_shapes(tmp_path):
    cfg = tiny_cfg(tmp_path)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    store = FrameStore(cfg.data.store)
    ds = ClipDataset(store, store.videos("training"), clip_len=8, stride=2)
    assert len(ds) == 2 * len(range(0, 40 - 8 + 1, 2))
    x, vi, s = ds[3]
    assert x.shape == (1, 8, 32, 32) and -1.0 <= x.min() and x.max() <= 1.0
    img = ClipDataset(store, store.videos("training"), clip_len=8, value_range="unit")[0][0]
    assert 0.0 <= img.min() and img.max() <= 1.0


# -- bad input: one-line error naming the file, nothing half-written -----------------------------

def _assert_store_untouched(cfg, before: dict):
    after = json.loads((cfg.data.store and open(f"{cfg.data.store}/manifest.json").read()))
    assert after == before


@pytest.fixture
def extracted(tmp_path):
    cfg = tiny_cfg(tmp_path)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    return cfg, json.loads(open(f"{cfg.data.store}/manifest.json").read())


def test_corrupt_video(extracted, tmp_path):
    cfg, before = extracted
    bad = tmp_path / "synthetic/training/videos/03.avi"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(DataError, match="03.avi"):
        extract.run(cfg, progress=False)
    _assert_store_untouched(cfg, before)
    assert not list(tmp_path.glob(".store.*"))  # no staging folder left behind


def test_empty_video(extracted, tmp_path):
    cfg, before = extracted
    (tmp_path / "synthetic/training/videos/04.avi").write_bytes(b"")
    with pytest.raises(DataError, match="04.avi: empty"):
        extract.run(cfg, progress=False)
    _assert_store_untouched(cfg, before)


def test_folder_without_frames(tmp_path):
    root = tmp_path / "ds"
    write_frame_folder(root / "training/frames/v1", 4)
    (root / "training/frames/v2").mkdir(parents=True)
    (root / "training/frames/v2/readme.txt").write_text("no frames")
    cfg = tiny_cfg(tmp_path, data={"root": str(root)})
    with pytest.raises(DataError, match="v2: no frames"):
        extract.run(cfg, progress=False)
    assert not (tmp_path / "store").exists()


def test_unreadable_image(tmp_path):
    root = tmp_path / "ds"
    write_frame_folder(root / "training/frames/v1", 4)
    (root / "training/frames/v1/5.png").write_bytes(b"not a png")
    cfg = tiny_cfg(tmp_path, data={"root": str(root)})
    with pytest.raises(DataError, match="5.png: unreadable image"):
        extract.run(cfg, progress=False)


def test_mixed_frame_sizes(tmp_path):
    root = tmp_path / "ds"
    write_frame_folder(root / "training/frames/v1", 4, size=(40, 50))
    cv2.imwrite(str(root / "training/frames/v1/5.png"), np.zeros((30, 30), np.uint8))
    cfg = tiny_cfg(tmp_path, data={"root": str(root)})
    with pytest.raises(DataError, match="5.png: frame size 30x30 differs"):
        extract.run(cfg, progress=False)


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_label_file_of_wrong_length(extracted, tmp_path, fmt):
    cfg, before = extracted
    if fmt == "npy":
        path = tmp_path / "short.npy"
        np.save(path, np.zeros(79, np.uint8))
        match = "short.npy: 79 labels but the 2 test videos have 80 frames"
    else:
        path = tmp_path / "short.csv"
        rows = ["video,frame,label"] + [f"01,{i},0" for i in range(40)] + [f"02,{i},0" for i in range(39)]
        path.write_text("\n".join(rows) + "\n")
        match = "video 02 has labels for 39 frames but 40 frames were extracted"
    with pytest.raises(DataError, match=match):
        extract.run(cfg, labels=path, progress=False)
    _assert_store_untouched(cfg, before)


def test_mat_interval_labels(extracted, tmp_path):
    from scipy.io import savemat

    cfg, _ = extracted
    gt = np.empty(2, dtype=object)
    gt[0] = np.array([[3], [5]])
    gt[1] = np.array([[1, 39], [2, 40]])
    savemat(tmp_path / "gt.mat", {"gt": gt})
    extract.run(cfg, labels=tmp_path / "gt.mat", progress=False)
    store = FrameStore(cfg.data.store)
    a, b = (store.labels(e) for e in store.videos("testing"))
    assert a.nonzero()[0].tolist() == [2, 3, 4]
    assert b.nonzero()[0].tolist() == [0, 1, 38, 39]


def test_cli_error_is_one_line_and_nonzero(tmp_path, capsys):
    code = cli_main(["extract", "-P", "/nonexistent/params.yaml"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "params.yaml: params file not found" in err
    code = cli_main(["extract", "-p", f"data.root={tmp_path}/none", "-p", f"data.store={tmp_path}/s"])
    err = capsys.readouterr().err
    assert code == 2 and "dataset root not found" in err and err.count("\n") == 1


def test_cli_help_for_every_stage(capsys):
    from pseudovad.cli import build_parser

    parser, modules = build_parser()
    for name in modules:
        with pytest.raises(SystemExit) as e:
            cli_main([name, "--help"])
        assert e.value.code == 0
        assert "usage: pseudovad " + name in capsys.readouterr().out


def test_outputs_get_normal_permissions(tmp_path):
    """Temp files are owner-only; what is renamed into place must not stay so."""
    import os

    from pseudovad.files import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_unknown_model_uri_scheme_is_refused():
    from pseudovad.errors import DataError
    from pseudovad.registry import resolve

    with pytest.raises(DataError, match="unsupported model URI scheme 's3'"):
        resolve("s3://bucket/model.pt")
    assert str(resolve("file:///tmp/m.pt")) == "/tmp/m.pt"
