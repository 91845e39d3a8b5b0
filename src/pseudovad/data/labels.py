"""Frame-level ground truth: read `.npy`, `.mat` or `.csv` and align it to the extracted videos.

Formats:
  .npy  one flat 0/1 array over all test frames, videos in natural id order (MNAD's
        `frame_labels_<dataset>.npy`, the most common distribution of the benchmarks' labels)
  .mat  either a flat array (`labels` / `frame_labels`) or `gt`: one 2×k matrix of 1-based
        inclusive [start; end] anomaly intervals per video (ano_pred's `ped2.mat`)
  .csv  `video,frame,label` rows with a header; frames are 0-based; every frame listed
Counts are checked against the videos: a mismatch names the video (or, for the flat formats,
the file) and both counts.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pseudovad.errors import DataError

LABEL_CANDIDATES = ("labels.csv", "frame_labels.npy", "labels.npy")


def find_label_file(root: str | Path) -> Path | None:
    test = Path(root) / "testing"
    for name in LABEL_CANDIDATES:
        if (test / name).is_file():
            return test / name
    mats = sorted(test.glob("*.mat")) if test.is_dir() else []
    return mats[0] if mats else None


def _binary(path: Path, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr).reshape(-1)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise DataError(f"{path}: labels must be 0/1")
    return arr.astype(np.uint8)


def _split_flat(path: Path, flat: np.ndarray, counts: dict[str, int]) -> dict[str, np.ndarray]:
    total = sum(counts.values())
    if flat.size != total:
        raise DataError(f"{path}: {flat.size} labels but the {len(counts)} test videos have {total} frames")
    out, i = {}, 0
    for vid, n in counts.items():
        out[vid] = flat[i:i + n]
        i += n
    return out


def read_labels(path: str | Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Labels per video id, in the order of `counts` (video id → extracted frame count)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a label file")
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            flat = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable .npy ({e})") from None
        return _split_flat(path, _binary(path, flat), counts)
    if suffix == ".mat":
        return _read_mat(path, counts)
    if suffix == ".csv":
        return _read_csv(path, counts)
    raise DataError(f"{path}: unsupported label format (use .npy, .mat or .csv)")


def _read_mat(path: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as e:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: unreadable .mat ({e})") from None
    for key in ("labels", "frame_labels"):
        if key in mat:
            return _split_flat(path, _binary(path, mat[key]), counts)
    if "gt" not in mat:
        raise DataError(f"{path}: no 'gt', 'labels' or 'frame_labels' variable")
    gt = np.asarray(mat["gt"]).reshape(-1)
    if gt.size != len(counts):
        raise DataError(f"{path}: intervals for {gt.size} videos but there are {len(counts)} test videos")
    out = {}
    for (vid, n), iv in zip(counts.items(), gt):
        lab = np.zeros(n, np.uint8)
        iv = np.asarray(iv, dtype=np.int64).reshape(2, -1)
        for s, e in iv.T:
            if s < 1 or e > n or s > e:
                raise DataError(f"{path}: video {vid} interval [{s}, {e}] outside its {n} frames")
            lab[s - 1:e] = 1
        out[vid] = lab
    return out


def _read_csv(path: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    rows: dict[str, dict[int, int]] = {}
    first_line: dict[tuple[str, int], int] = {}
    try:
        text = path.read_bytes().decode("utf-8-sig")   # a spreadsheet's BOM is fine
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or not {"video", "frame", "label"} <= set(reader.fieldnames):
        raise DataError(f"{path}: expected a header with columns video,frame,label")
    for r in reader:
        lineno = reader.line_num
        try:
            frame, label = int(r["frame"]), int(r["label"])
        except (TypeError, ValueError):
            raise DataError(f"{path}:{lineno}: frame and label must be integers") from None
        if label not in (0, 1):
            raise DataError(f"{path}:{lineno}: label must be 0 or 1, got {label}")
        vid = str(r["video"])
        old = rows.setdefault(vid, {}).get(frame)
        if old is not None and old != label:   # the last would silently win
            raise DataError(f"{path}:{lineno}: video {vid} frame {frame} labelled {label}, but {old} on line "
                            f"{first_line[(vid, frame)]}")
        first_line.setdefault((vid, frame), lineno)
        rows[vid][frame] = label
    out = {}
    for vid, n in counts.items():
        if vid not in rows:
            raise DataError(f"{path}: no labels for video {vid}")
        got = rows[vid]
        if len(got) != n or set(got) != set(range(n)):
            raise DataError(f"{path}: video {vid} has labels for {len(got)} frames but {n} frames were extracted")
        out[vid] = np.array([got[i] for i in range(n)], np.uint8)
    extra = sorted(set(rows) - set(counts))
    if extra:
        raise DataError(f"{path}: labels for unknown video(s) {', '.join(extra)}")
    return out
