"""`score`: run a detector over new footage and flag anomalous segments.

    pseudovad score INPUT [--model models:/NAME@champion | model.pt] [--out DIR] [--threshold T]
                          [--video annotated.mp4 [--video-codec h264|vp9|mp4v|mjpg]] [--fps F]
                          [--strict] [--alert-url URL] [--duration S] [--follow]

INPUT is a video file or a folder of frames, or a live source: rtsp://…, http(s)://…, /dev/videoN,
or a file still being written (--follow). Live sources run until Ctrl-C, SIGTERM or --duration.
How PSNR becomes a score, the domain-shift check and what is written into DIR (default
runs/score/<input name>) are `pseudovad.scoring`. Exit codes: 0 done, 2 bad input,
3 domain shift under --strict (the footage is unlike the model's calibration).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from pseudovad import registry
from pseudovad.config import Config
from pseudovad.device import resolve_device
from pseudovad.errors import ConfigError, TrackingError
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import sha256_file
from pseudovad.scoring.alerts import Alerts
from pseudovad.scoring.footage import score_footage
from pseudovad.scoring.inputs import open_input
from pseudovad.scoring.live import score_live
from pseudovad.scoring.stream import is_live, redact

EXIT_DOMAIN_SHIFT = 3


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "input"


def pseudovad_version() -> str:
    try:
        return importlib.metadata.version("pseudovad")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _warn(msg: str) -> None:
    print(f"pseudovad score: warning: {msg}", file=sys.stderr, flush=True)


def run(cfg: Config, input: str | Path, model: str | Path | None = None, out: str | Path | None = None,
        threshold: float | None = None, video: str | Path | None = None, fps: float | None = None,
        progress: bool | None = None, video_codec: str | None = None, alert_url: str | None = None,
        duration: float | None = None, follow: bool = False, strict: bool = False,
        events=None, stop=None, allow_truncated: bool = False) -> dict[str, Any]:
    """Score one video / frame folder (scores.csv, timeline.png, summary.json, + video), or a live
    source until stopped. `events(dict)` gets each live event (default: a JSON line on stdout)."""
    model_ref = str(model) if model else registry.champion_uri(cfg)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold: must be in [0, 1] (scores are), got {threshold}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {fps}")
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration: must be > 0 seconds, got {duration}")
    progress = (not os.environ.get("PSEUDOVAD_NO_PROGRESS")) if progress is None else progress
    live = follow or is_live(input)
    if not live:
        src, container_fps, total = open_input(input)
    try:
        resolved = registry.resolve_model(model_ref, cfg)
    except TrackingError as e:
        if model:
            raise
        raise TrackingError(f"{e}; to score with a trained model file instead: pseudovad score {input} "
                            "--model runs/train/model.pt") from None
    detector = Detector.load(resolved.path, resolve_device(cfg.device), cfg.score.batch_size,
                             cfg.inference.amp, cfg.inference.memory_format)
    provenance = {"pseudovad_version": pseudovad_version(), "model": {
        "ref": model_ref, "name": resolved.name, "version": resolved.version, "alias": resolved.alias,
        "run_id": resolved.run_id, "uri": resolved.uri, "sha256": sha256_file(resolved.path),
        "file": str(resolved.path)}}
    alerts = Alerts(alert_url, cfg.score.alert_timeout_s, cfg.score.alert_retries) if alert_url else None
    if live:
        name = Path(str(input)).stem if follow else redact(str(input)).split("://")[-1]
        out_dir = Path(out) if out else Path("runs/score") / _safe(name)
        emit = events or (lambda e: print(json.dumps(e), flush=True))
        return score_live(detector, str(input), out_dir, cfg.score, threshold=threshold, fps=fps, video=video,
                          video_codec=video_codec, provenance=provenance, alerts=alerts, duration=duration,
                          follow=follow, strict=strict, events=emit, warn=_warn, stop=stop)
    out_dir = Path(out) if out else Path("runs/score") / _safe(src.video_id)
    return score_footage(detector, src, out_dir, cfg.score, threshold=threshold, fps=fps or container_fps,
                         total=total, video=video, video_codec=video_codec, provenance=provenance,
                         alerts=alerts, progress=progress, warn=_warn, duration=duration,
                         allow_truncated=allow_truncated)


def add_arguments(p) -> None:
    p.add_argument("input", help="video file, folder of frames, or a live source: rtsp://…, http(s)://…, "
                                 "/dev/videoN, or a growing file with --follow")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/… or a model.pt "
                                   "(default: models:/<registry.model_name>@champion)")
    p.add_argument("--out", help="output folder (default: runs/score/<input name>)")
    p.add_argument("--threshold", type=float, help="flag frames with score ≥ T, in [0, 1] "
                                                   "(default: score.threshold, else 0.99 when calibrated)")
    p.add_argument("--video", help="also write the annotated video, inside or beside --out (.mp4, .webm, .avi)")
    p.add_argument("--video-codec", choices=("h264", "vp9", "mp4v", "mjpg"),
                   help="annotated video codec (default: h264 for .mp4, vp9 for .webm, mjpg for .avi)")
    p.add_argument("--fps", type=float, help="frame rate for times (default: the video's; frame folders: none)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="score a video that decodes fewer frames than its container declares (with a warning; "
                        "default: an error, nothing written)")
    p.add_argument("--strict", action="store_true",
                   help=f"exit {EXIT_DOMAIN_SHIFT} when the footage is unlike the model's calibration (domain shift)")
    p.add_argument("--alert-url", help="POST each anomalous segment as JSON to this URL (background, with retries)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (live: wall clock; file: of footage)")
    p.add_argument("--follow", action="store_true", help="INPUT is a file still being written: keep reading as it grows")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.input, args.model, args.out, args.threshold, args.video, args.fps,
            video_codec=args.video_codec, alert_url=args.alert_url, duration=args.duration, follow=args.follow,
            strict=args.strict, allow_truncated=args.allow_truncated)
    shifted = s["domain_shift"]["shift"]
    if s.get("live"):
        print(f"score: live {s['input']}: {s['frames']} frames scored, {s['dropped_frames']} dropped, "
              f"{s['reconnects']} reconnect(s), {s['segments_found']} anomalous segment(s) → {s['out']}",
              file=sys.stderr)
    else:
        segs = s["segments"]
        where = ", ".join(
            (f"{g['start_s']:.1f}–{g['end_s']:.1f}s" if g["start_s"] is not None else f"frames {g['start_frame']}–{g['end_frame']}")
            for g in segs[:5]) + (" …" if len(segs) > 5 else "")
        thr = "no threshold" if s["threshold"] is None else f"threshold {s['threshold']:g}"
        m = s["model"]
        used = f"{m['name']} v{m['version']}" if m.get("version") else m["ref"]
        print(f"score: {s['frames']} frames, {used}, {s['normalization']['kind']} scores, {thr}: {len(segs)} anomalous "
              f"segment(s){': ' + where if segs else ''}{' (DOMAIN SHIFT: see the warning)' if shifted else ''} "
              f"→ {Path(s['outputs']['summary']).parent}")
    return EXIT_DOMAIN_SHIFT if (args.strict and shifted) else 0
