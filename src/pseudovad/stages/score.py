"""`score`: run a detector over new footage and flag anomalous segments.

    pseudovad score INPUT [--model models:/NAME@champion | model.pt] [--out DIR] [--threshold T]
                          [--video annotated.mp4] [--fps F]

INPUT is a video file (anything OpenCV decodes) or a folder of frames. Frames stream through the
detector in constant memory and get the same PSNR as in `evaluate`; how PSNR becomes a score, and
what is written into DIR (default runs/score/<input name>), is `pseudovad.evaluation.footage`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pseudovad import registry
from pseudovad.config import Config
from pseudovad.device import resolve_device
from pseudovad.errors import ConfigError
from pseudovad.evaluation.footage import open_input, score_footage
from pseudovad.evaluation.streaming import Detector


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "input"


def run(cfg: Config, input: str | Path, model: str | Path | None = None, out: str | Path | None = None,
        threshold: float | None = None, video: str | Path | None = None, fps: float | None = None,
        progress: bool | None = None, allow_truncated: bool = False) -> dict[str, Any]:
    """Score one video / frame folder; write scores.csv, timeline.png, summary.json (+ video)."""
    model_ref = str(model) if model else registry.champion_uri(cfg)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold: must be in [0, 1] (scores are), got {threshold}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {fps}")
    progress = (not os.environ.get("PSEUDOVAD_NO_PROGRESS")) if progress is None else progress
    src, container_fps, total = open_input(input)
    detector = Detector.load(registry.resolve(model_ref, cfg), resolve_device(cfg.device), cfg.score.batch_size)
    out_dir = Path(out) if out else Path("runs/score") / _safe(src.video_id)
    return score_footage(detector, src, out_dir, cfg.score, threshold=threshold, fps=fps or container_fps,
                         total=total, video=video, model_ref=model_ref, progress=progress,
                         allow_truncated=allow_truncated)


def add_arguments(p) -> None:
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/… or a model.pt "
                                   "(default: models:/<registry.model_name>@champion)")
    p.add_argument("--out", help="output folder (default: runs/score/<input name>)")
    p.add_argument("--threshold", type=float, help="flag frames with score ≥ T, in [0, 1] "
                                                   "(default: score.threshold, else 0.99 when calibrated)")
    p.add_argument("--video", help="also write an annotated video here (.mp4 or .avi)")
    p.add_argument("--fps", type=float, help="frame rate for times (default: the video's; frame folders: none)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="score a video that decodes fewer frames than its container declares (with a warning; "
                        "default: an error, nothing written)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.input, args.model, args.out, args.threshold, args.video, args.fps,
            allow_truncated=args.allow_truncated)
    segs = s["segments"]
    where = ", ".join(
        (f"{g['start_s']:.1f}–{g['end_s']:.1f}s" if g["start_s"] is not None else f"frames {g['start_frame']}–{g['end_frame']}")
        for g in segs[:5]) + (" …" if len(segs) > 5 else "")
    thr = "no threshold" if s["threshold"] is None else f"threshold {s['threshold']:g}"
    print(f"score: {s['frames']} frames, {s['normalization']['kind']} scores, {thr}: {len(segs)} anomalous "
          f"segment(s){': ' + where if segs else ''} → {Path(s['outputs']['summary']).parent}")
    return 0
