"""The frame store: one uint8 `.npy` per video plus `manifest.json`.

Training reads clips straight from these arrays memory-mapped, so no image is decoded inside the
training loop. The manifest records what each array came from (source checksum) and how it was
made (size, channels), which is what lets extraction skip unchanged videos, lets `ingest` add
footage without touching the rest, and gives MLflow a fingerprint of the data a model saw.

Layout:
  <store>/manifest.json
  <store>/<split>/<video>.npy            T×H×W (gray) or T×H×W×3 (RGB), uint8
  <store>/testing/<video>.labels.npy     T uint8 0/1 frame labels (when labels were given)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pseudovad.errors import DataError
from pseudovad.files import settle, write_json

MANIFEST = "manifest.json"
VERSION = 1


def write_array_stream(dest: Path, frames: Iterable[np.ndarray]) -> tuple[int, tuple[int, ...]]:
    """Write frames of unknown count to a `.npy` with constant memory.

    Frames go to a raw temp file first; the `.npy` header needs the final count, so it is written
    once the stream ends and the raw bytes are copied behind it.
    """
    raw = dest.with_suffix(".raw")
    n = 0
    shape: tuple[int, ...] | None = None
    with open(raw, "wb") as f:
        for fr in frames:
            if shape is None:
                shape = fr.shape
            f.write(np.ascontiguousarray(fr, dtype=np.uint8).tobytes())
            n += 1
    try:
        if shape is None:
            raise DataError(f"{dest.stem}: no frames")
        full = (n, *shape)
        with open(dest, "wb") as out, open(raw, "rb") as src:
            np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": full})
            shutil.copyfileobj(src, out, 1 << 22)
    finally:
        raw.unlink(missing_ok=True)
    return n, full


@dataclass
class VideoEntry:
    id: str
    split: str
    frames: int
    height: int
    width: int
    channels: int
    source: str
    checksum: str
    file: str
    labels: str | None = None
    anomalous_frames: int | None = None
    fps: float | None = None        # the video file's frame rate (None: a frame folder, or an older store)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class FrameStore:
    """Read side of the store (write side: `pseudovad.data.extraction`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        settle(self.root.parent)   # an extract or ingest killed while swapping the store in: finish it
        path = self.root / MANIFEST
        if not path.is_file():
            raise DataError(f"{path}: no frame store here (run `pseudovad extract` first)")
        try:
            self.manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: corrupt manifest ({e.msg})") from None
        self.entries = [VideoEntry(**v) for v in self.manifest.get("videos", [])]

    @property
    def params(self) -> dict[str, Any]:
        return self.manifest.get("params", {})

    def videos(self, split: str, only: Iterable[str] | None = None) -> list[VideoEntry]:
        vids = [e for e in self.entries if e.split == split]
        if only:
            wanted = list(only)
            known = {e.id for e in vids}
            missing = [v for v in wanted if v not in known]
            if missing:
                raise DataError(f"{self.root / MANIFEST}: no {split} video(s) {', '.join(missing)}")
            vids = [e for e in vids if e.id in set(wanted)]
        return vids

    def array(self, entry: VideoEntry) -> np.ndarray:
        path = self.root / entry.file
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable frame array ({e})") from None
        if arr.shape[0] != entry.frames:
            raise DataError(f"{path}: {arr.shape[0]} frames, manifest says {entry.frames}")
        return arr

    def labels(self, entry: VideoEntry) -> np.ndarray:
        if entry.labels is None:
            raise DataError(f"{self.root / MANIFEST}: test video {entry.id} has no frame labels "
                            "(give data.labels or put labels in <root>/testing)")
        return np.load(self.root / entry.labels)

    def fingerprint(self, split: str | None = None, only: Iterable[str] | None = None) -> str:
        """Checksum of the data a model was trained or evaluated on (sources + labels + params)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.params, sort_keys=True).encode())
        entries = self.entries if split is None else self.videos(split, only)
        for e in entries:
            h.update(f"{e.split}/{e.id}:{e.checksum}:{e.frames}".encode())
            if e.labels is not None:
                h.update(hashlib.sha256(np.load(self.root / e.labels).tobytes()).hexdigest().encode())
        return h.hexdigest()


def complete_store(staged: Path, old: Path, entries: list[VideoEntry], params: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> None:
    """Make `staged` (holding the arrays decoded this run) the whole new store: the arrays of
    `old` that `entries` reuse are hard-linked in (copied where the file system cannot link),
    then the manifest is written. The caller swaps `staged` in for the old store in one commit
    (`files.staged_outputs`), so a reader sees the old store or the new one, never a mix; arrays
    the new manifest does not list are gone with the old store.
    """
    staged.mkdir(parents=True, exist_ok=True)
    for rel in [e.file for e in entries] + [e.labels for e in entries if e.labels]:
        dest = staged / rel
        if dest.exists():
            continue
        src = old / rel
        if not src.is_file():
            raise DataError(f"{src}: frame array listed in the store is missing (re-run `pseudovad extract`)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
    manifest = {"version": VERSION, "params": params, "videos": [e.to_dict() for e in entries]}
    if extra:
        manifest.update(extra)
    write_json(staged / MANIFEST, manifest)
