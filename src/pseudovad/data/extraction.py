"""Decoding footage into the frame store (one uint8 array per video + manifest): what `extract`
runs over a dataset root, and what `ingest` runs on each accepted file.

Unchanged videos (same source checksum, same extraction params) are reused, so re-running, or
adding a few new videos with `ingest`, only decodes what is new. Footage accepted by `ingest`
(kept in its own folder, see `pseudovad.data.ingested`) joins the training split after
data.root's videos, so a rebuild keeps it. The new store is built in a staging folder (new
arrays decoded, unchanged ones hard-linked) and swapped in whole once every video decoded and
the labels lined up (`files.staged_outputs`), so a bad file, or a kill at any instant, leaves the
previous store exactly as it was. A video that decodes fewer frames than its container declares
is an error unless `allow_truncated` (`extract --allow-truncated`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pseudovad.config import Config
from pseudovad.data import ingested
from pseudovad.data import labels as label_io
from pseudovad.data.sources import SPLITS, Source, discover, read_frames, video_info
from pseudovad.data.store import MANIFEST, FrameStore, VideoEntry, complete_store, write_array_stream
from pseudovad.errors import DataError
from pseudovad.files import staged_outputs
from pseudovad.geometry import ClipGeometry

log = logging.getLogger(__name__)


def extraction_params(cfg: Config) -> dict:
    """What a store's arrays depend on: a store extracted with other values must be rebuilt."""
    return {"size": list(cfg.data.size), "channels": cfg.data.channels}


def _previous(store: Path, params: dict) -> dict[tuple[str, str], VideoEntry]:
    if not (store / MANIFEST).is_file():
        return {}
    try:
        old = FrameStore(store)
    except DataError:
        return {}
    if old.params != params:
        return {}
    return {(e.split, e.id): e for e in old.entries if (store / e.file).is_file()}


def extract_source(src: Source, staged: Path, cfg: Config, checksum: str, progress: bool = True,
                   allow_truncated: bool = False) -> VideoEntry:
    """Decode one video or frame folder into `staged`/<split>/<id>.npy; its manifest entry. A video
    that decodes fewer frames than its container declares is refused unless `allow_truncated`."""
    h, w = cfg.data.size
    rel = f"{src.split}/{src.video_id}.npy"
    dest = staged / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    frames = read_frames(src, (h, w), cfg.data.channels, allow_truncated)
    if progress:
        frames = tqdm(frames, desc=f"{src.split}/{src.video_id}", unit="frame", leave=False, disable=None)
    n, shape = write_array_stream(dest, frames)
    return VideoEntry(id=src.video_id, split=src.split, frames=n, height=h, width=w,
                      channels=cfg.data.channels, source=str(src.path), checksum=checksum, file=rel, fps=frame_rate(src))


def frame_rate(src: Source) -> float | None:
    """A video file's frame rate as its container declares it (None for frame folders or a bogus value)."""
    if src.kind != "video":
        return None
    fps = video_info(src.path)["fps"]
    return round(float(fps), 3) if 0 < fps < 1000 else None


def warn_short(cfg: Config, tests: list[VideoEntry]) -> None:
    """Test videos shorter than one clip of the configured model: `evaluate` will refuse them."""
    span = ClipGeometry.from_config(cfg).span
    short = [f"{e.id} ({e.frames} frames)" for e in tests if e.frames < span]
    if short:
        log.warning("test video(s) %s shorter than one %d-frame clip of the configured model: `evaluate` "
                    "will refuse them", ", ".join(short), span)


def build_store(cfg: Config, root: Path, store: Path, labels: str | Path | None = None,
                splits: tuple[str, ...] = SPLITS, progress: bool = True, allow_truncated: bool = False) -> dict:
    """(Re)build the frame store `store` from the dataset at `root` plus the footage `ingest`
    accepted; returns counts (videos, frames, reused, labelled and anomalous frames).
    `allow_truncated`: keep videos that decode fewer frames than declared (with a warning)."""
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    sources = [s for split in splits for s in discover(root, split)]
    if not sources:
        raise DataError(f"{root}: no videos found (expected video files in it, or {root}/training/frames/<video>/ or {root}/training/videos/*.mp4)")
    footage = ingested.root_for(cfg, store)
    if "training" in splits:  # footage `ingest` accepted joins the training split, after data.root's
        sources += ingested.sources(footage, {s.video_id for s in sources if s.split == "training"})
    params = extraction_params(cfg)
    previous = _previous(store, params)
    entries: list[VideoEntry] = []
    reused = 0
    # the new store is built beside the old one and swapped in whole at the end (files.staged_outputs)
    with staged_outputs(store.parent, f"extract into {store}") as stage:
        staged = stage / store.name
        staged.mkdir()
        for src in tqdm(sources, desc="extract", unit="video", disable=None if progress else True):
            checksum = src.checksum()
            old = previous.get((src.split, src.video_id))
            if old is not None and old.checksum == checksum:
                entry = VideoEntry(**{**old.to_dict(), "labels": None, "anomalous_frames": None,
                                      "source": str(src.path), "fps": old.fps or frame_rate(src)})
                reused += 1
            else:
                entry = extract_source(src, staged, cfg, checksum, progress, allow_truncated)
            entries.append(entry)
        tests = [e for e in entries if e.split == "testing"]
        label_path = Path(labels or cfg.data.labels) if (labels or cfg.data.labels) else label_io.find_label_file(root)
        label_info = None
        if tests and label_path is not None:
            per_video = label_io.read_labels(label_path, {e.id: e.frames for e in tests})
            for e in tests:
                rel = f"testing/{e.id}.labels.npy"
                (staged / "testing").mkdir(parents=True, exist_ok=True)
                np.save(staged / rel, per_video[e.id])
                e.labels, e.anomalous_frames = rel, int(per_video[e.id].sum())
            label_info = {"source": str(label_path)}
        warn_short(cfg, tests)
        extra = {"labels": label_info}
        if (footage / ingested.LOG).is_file():
            extra["ingested"] = ingested.manifest_records(ingested.load_log(footage))
        complete_store(staged, store, entries, params, extra)
    counts = {s: sum(1 for e in entries if e.split == s) for s in splits}
    return {"store": str(store), "videos": counts, "reused": reused,
            "frames": {s: sum(e.frames for e in entries if e.split == s) for s in splits},
            "labelled_frames": sum(e.frames for e in entries if e.labels),
            "anomalous_frames": sum(e.anomalous_frames or 0 for e in entries)}
