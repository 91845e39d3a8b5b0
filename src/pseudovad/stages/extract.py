"""`extract`: decode footage into the frame store (one uint8 array per video + manifest).

`data.root`'s videos and frame folders (benchmark layout, labels in testing/), then the footage
`ingest` accepted, become `data.store` (`pseudovad.data.extraction`). Unchanged videos are
reused; a bad file leaves the previous store exactly as it was.
"""
from __future__ import annotations

import os
from pathlib import Path

from pseudovad.config import Config
from pseudovad.data.extraction import build_store
from pseudovad.data.sources import SPLITS


def run(cfg: Config, root: str | Path | None = None, store: str | Path | None = None,
        labels: str | Path | None = None, splits: tuple[str, ...] = SPLITS, progress: bool = True) -> dict:
    return build_store(cfg, Path(root or cfg.data.root), Path(store or cfg.data.store), labels, splits, progress)


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
