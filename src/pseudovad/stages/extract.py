"""`extract`: decode footage into the frame store (one uint8 array per video + manifest).

Unchanged videos (same source checksum, same extraction params) are reused, so re-running, or
adding a few new videos with `ingest`, only decodes what is new. Footage accepted by `ingest`
(kept in its own folder, see `pseudovad.data.ingested`) joins the training split after
data.root's videos, so a rebuild keeps it. Everything is decoded into a staging folder first;
the store is only touched once every video decoded and the labels lined up, so a bad file
leaves the previous store exactly as it was.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm import tqdm

from pseudovad.config import Config
from pseudovad.data import ingested
from pseudovad.data import labels as label_io
from pseudovad.data.sources import SPLITS, Source, discover, read_frames
from pseudovad.data.store import MANIFEST, FrameStore, VideoEntry, commit_store, staging_dir, write_array_stream
from pseudovad.errors import DataError

import numpy as np


def extraction_params(cfg: Config) -> dict:
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


def extract_source(src: Source, staged: Path, cfg: Config, checksum: str, progress: bool = True) -> VideoEntry:
    h, w = cfg.data.size
    rel = f"{src.split}/{src.video_id}.npy"
    dest = staged / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    frames = read_frames(src, (h, w), cfg.data.channels)
    if progress:
        frames = tqdm(frames, desc=f"{src.split}/{src.video_id}", unit="frame", leave=False, disable=None)
    n, shape = write_array_stream(dest, frames)
    return VideoEntry(id=src.video_id, split=src.split, frames=n, height=h, width=w,
                      channels=cfg.data.channels, source=str(src.path), checksum=checksum, file=rel)


def run(cfg: Config, root: str | Path | None = None, store: str | Path | None = None,
        labels: str | Path | None = None, splits: tuple[str, ...] = SPLITS, progress: bool = True) -> dict:
    root = Path(root or cfg.data.root)
    store = Path(store or cfg.data.store)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    sources = [s for split in splits for s in discover(root, split)]
    if not sources:
        raise DataError(f"{root}: no videos found (expected {root}/training/frames/<video>/ or {root}/training/videos/*.avi)")
    footage = ingested.root_for(cfg, store)
    if "training" in splits:  # footage `ingest` accepted joins the training split, after data.root's
        sources += ingested.sources(footage, {s.video_id for s in sources if s.split == "training"})
    params = extraction_params(cfg)
    previous = _previous(store, params)
    staged = staging_dir(store)
    entries: list[VideoEntry] = []
    reused = 0
    try:
        for src in tqdm(sources, desc="extract", unit="video", disable=None if progress else True):
            checksum = src.checksum()
            old = previous.get((src.split, src.video_id))
            if old is not None and old.checksum == checksum:
                entry = VideoEntry(**{**old.to_dict(), "labels": None, "anomalous_frames": None,
                                      "source": str(src.path)})
                reused += 1
            else:
                entry = extract_source(src, staged, cfg, checksum, progress)
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
        extra = {"labels": label_info}
        if (footage / ingested.LOG).is_file():
            extra["ingested"] = ingested.manifest_records(ingested.load_log(footage))
        commit_store(store, staged, entries, params, extra)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    counts = {s: sum(1 for e in entries if e.split == s) for s in splits}
    return {"store": str(store), "videos": counts, "reused": reused,
            "frames": {s: sum(e.frames for e in entries if e.split == s) for s in splits},
            "labelled_frames": sum(e.frames for e in entries if e.labels),
            "anomalous_frames": sum(e.anomalous_frames or 0 for e in entries)}


def add_arguments(p) -> None:
    p.add_argument("--root", help="dataset root with training/ and testing/ (default: data.root)")
    p.add_argument("--store", help="frame store to write (default: data.store)")
    p.add_argument("--labels", help="frame label file .npy/.mat/.csv (default: data.labels or found in <root>/testing)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.root, args.store, args.labels, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    print(f"extract: {s['videos'].get('training', 0)} training / {s['videos'].get('testing', 0)} test videos "
          f"({s['frames'].get('training', 0)} / {s['frames'].get('testing', 0)} frames, {s['reused']} unchanged) "
          f"→ {s['store']}; {s['anomalous_frames']}/{s['labelled_frames']} labelled test frames anomalous")
    return 0
