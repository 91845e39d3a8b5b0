"""`extract`: decode footage into the frame store (one uint8 array per video + manifest).

`data.root`'s videos and frame folders (benchmark layout, labels in testing/), then the footage
`ingest` accepted, become `data.store` (`pseudovad.data.extraction`). Unchanged videos are
reused; a bad file leaves the previous store exactly as it was. A truncated video (fewer frames
decode than its container declares) or a cut-off JPEG frame is an error (`--allow-truncated`
keeps such a video's decodable frames, with a warning).
"""
from __future__ import annotations

import os
from pathlib import Path

from pseudovad.config import Config
from pseudovad.data.extraction import build_store
from pseudovad.data.sources import SPLITS


def run(cfg: Config, root: str | Path | None = None, store: str | Path | None = None,
        labels: str | Path | None = None, splits: tuple[str, ...] = SPLITS, progress: bool = True,
        allow_truncated: bool = False) -> dict:
    return build_store(cfg, Path(root or cfg.data.root), Path(store or cfg.data.store), labels, splits, progress,
                       allow_truncated)


def add_arguments(p) -> None:
    p.add_argument("--root", help="dataset root with training/ and testing/ (default: data.root)")
    p.add_argument("--store", help="frame store to write (default: data.store)")
    p.add_argument("--labels", help="frame label file .npy/.mat/.csv (default: data.labels or found in <root>/testing)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="keep videos that decode fewer frames than their container declares (a warning each; "
                        "default: such a video is an error)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.root, args.store, args.labels, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"),
            allow_truncated=args.allow_truncated)
    print(f"extract: {s['videos'].get('training', 0)} training / {s['videos'].get('testing', 0)} test videos "
          f"({s['frames'].get('training', 0)} / {s['frames'].get('testing', 0)} frames, {s['reused']} unchanged) "
          f"→ {s['store']}; {s['anomalous_frames']}/{s['labelled_frames']} labelled test frames anomalous")
    return 0
