"""Finding and decoding footage: video files and frame folders in the benchmark layout.

Layouts accepted under a dataset root, per split (`training`, `testing`):
  <root>/<split>/frames/<video>/<frame>.{jpg,png,tif,bmp}   (UCSD / Avenue / ShanghaiTech frames)
  <root>/<split>/videos/<video>.{avi,mp4,...}               (anything OpenCV decodes)
  <root>/<video>.{avi,mp4,...}                              (a folder of one camera's recordings:
                                                             all training footage, no test split)
Frames are yielded one at a time, already resized and converted, so memory stays bounded by one
frame whatever the length of the footage.

Footage that decodes only in part is an error wherever it is read (`extract`, `score`, `ingest`
all decode through here): a video whose decodable frames fall short of the count its container
declares (a cut-off upload or copy), and a JPEG frame without its end-of-image marker, which
OpenCV would return with the missing rows filled grey. `allow_truncated` keeps what decodes of
such a video, with a warning.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pseudovad.errors import DataError
from pseudovad.files import sha256_file

log = logging.getLogger(__name__)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
VIDEO_EXTS = {".avi", ".mp4", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv", ".webm", ".flv"}
SPLITS = ("training", "testing")
TRUNCATION_TOLERANCE = 0.01   # containers may over-count by a frame or two; more is a cut-off file
JPEG_EXTS = {".jpg", ".jpeg"}


class TruncatedVideo(DataError):
    """A video that decodes fewer frames than its container declares."""

    def __init__(self, path: Path, decoded: int, declared: int):
        self.path, self.decoded, self.declared = path, decoded, declared
        super().__init__(f"{path}: {self.reason} (a cut-off file; --allow-truncated keeps the frames that decode)")

    @property
    def reason(self) -> str:
        return f"truncated: decoded {self.decoded} of the {self.declared} frames the container declares"


def check_frame_count(path: Path, decoded: int, declared: int, allow_truncated: bool = False) -> None:
    """The one truncation rule: decodable frames short of the declared count (beyond a container's
    usual over-count) raise `TruncatedVideo`, or, with `allow_truncated`, warn."""
    if declared > 0 and decoded < declared - max(2, int(TRUNCATION_TOLERANCE * declared)):
        if not allow_truncated:
            raise TruncatedVideo(path, decoded, declared)
        log.warning("%s: truncated: decoded %d of the %d frames the container declares; keeping them "
                    "(--allow-truncated)", path, decoded, declared)


def jpeg_complete(path: Path) -> bool:
    """Whether a JPEG file ends with its end-of-image marker (FF D9), allowing a short trailer.

    A cut-off JPEG still decodes (libjpeg fills the missing rows with grey and only warns); its
    tail is then entropy-coded data, where FF D9 cannot occur.
    """
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 4096))
        return b"\xff\xd9" in f.read()


def natural_key(name: str) -> list:
    """'frame10' after 'frame9': digits compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Source:
    video_id: str
    split: str
    path: Path
    kind: str  # "video" | "frames"

    def checksum(self) -> str:
        if self.kind == "video":
            return sha256_file(self.path)
        h = hashlib.sha256()
        for f in frame_files(self.path):
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
        return h.hexdigest()


def frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=lambda p: natural_key(p.name))


def discover(root: str | Path, split: str) -> list[Source]:
    """All videos of one split, sorted naturally by id. Missing split folder → []. A root that is
    just a folder of video files (no training/ or testing/ in it: one camera's recordings) is
    the training split."""
    root = Path(root)
    base = root / split
    if split == "training" and not any((root / s).is_dir() for s in SPLITS) and root.is_dir():
        videos = [f for f in root.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_EXTS]
        return [Source(f.stem, split, f, "video") for f in sorted(videos, key=lambda p: natural_key(p.name))]
    found: dict[str, Source] = {}
    frames_dir = base / "frames"
    if frames_dir.is_dir():
        for d in sorted(frames_dir.iterdir(), key=lambda p: natural_key(p.name)):
            if d.is_dir():
                found[d.name] = Source(d.name, split, d, "frames")
    videos_dir = base / "videos"
    if videos_dir.is_dir():
        for f in sorted(videos_dir.iterdir(), key=lambda p: natural_key(p.name)):
            if f.is_file() and f.suffix.lower() in VIDEO_EXTS:
                if f.stem in found:
                    raise DataError(f"{f}: video id {f.stem!r} also exists as a frame folder")
                found[f.stem] = Source(f.stem, split, f, "video")
    return [found[k] for k in sorted(found, key=natural_key)]


def convert(frame: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """BGR/gray uint8 frame → uint8 at (H, W) with the configured channels (gray or RGB)."""
    if frame.dtype != np.uint8:
        if frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        else:
            frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if channels == 1:
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    else:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    h, w = size
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def read_frames(src: Source, size: tuple[int, int], channels: int, allow_truncated: bool = False
                ) -> Iterator[np.ndarray]:
    """Decode a source frame by frame. Raises DataError naming the file on any bad frame, and on
    a truncated video unless `allow_truncated` (module doc)."""
    for frame in decode_frames(src, allow_truncated):
        yield convert(frame, size, channels)


def decode_frames(src: Source, allow_truncated: bool = False) -> Iterator[np.ndarray]:
    """A source's frames as decoded, at their own size (what `score`'s annotated video shows);
    the same checks as `read_frames`."""
    if src.kind == "frames":
        files = frame_files(src.path)
        if not files:
            raise DataError(f"{src.path}: no frames (expected {', '.join(sorted(IMAGE_EXTS))} files)")
        first_shape = None
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise DataError(f"{f}: unreadable image")
            if f.suffix.lower() in JPEG_EXTS and not jpeg_complete(f):
                raise DataError(f"{f}: truncated JPEG (no end-of-image marker): only part of the frame decodes")
            if first_shape is None:
                first_shape = img.shape[:2]
            elif img.shape[:2] != first_shape:
                raise DataError(f"{f}: frame size {img.shape[1]}x{img.shape[0]} differs from the video's "
                                f"{first_shape[1]}x{first_shape[0]}")
            yield img
        return
    yield from decode_video(src.path, allow_truncated)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """A decoded frame (gray, BGR, BGRA; 8 or 16 bit) as 8-bit BGR at its own size, for display."""
    if frame.dtype != np.uint8:
        frame = (frame >> 8).astype(np.uint8) if frame.dtype == np.uint16 else np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


def open_video(path: Path) -> cv2.VideoCapture:
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError(f"{path}: empty or missing video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"{path}: cannot be decoded (corrupt or unsupported video)")
    return cap


def read_video(path: Path, size: tuple[int, int], channels: int, allow_truncated: bool = False
               ) -> Iterator[np.ndarray]:
    for frame in decode_video(path, allow_truncated):
        yield convert(frame, size, channels)


def decode_video(path: Path, allow_truncated: bool = False) -> Iterator[np.ndarray]:
    """Decode a video frame by frame at its own size; after the last frame, `check_frame_count`
    against the count the container declares."""
    cap = open_video(path)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    n = 0
    first_shape = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if first_shape is None:
                first_shape = frame.shape[:2]
            elif frame.shape[:2] != first_shape:
                raise DataError(f"{path}: frame {n} size changes mid-video")
            n += 1
            yield frame
    finally:
        cap.release()
    if n == 0:
        raise DataError(f"{path}: no decodable frames (corrupt or empty video)")
    check_frame_count(path, n, declared, allow_truncated)


def video_info(path: Path) -> dict:
    """fps, frame size and an approximate frame count from the container, for validation."""
    cap = open_video(path)
    try:
        return {
            "fps": float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
        }
    finally:
        cap.release()
