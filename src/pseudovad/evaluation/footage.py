"""Scoring new footage (`pseudovad score`): anomaly scores, flagged segments, and the files a user reads.

The input is a video file or a frame folder; its frames stream through `Detector.stream`, so any
length fits in constant memory. PSNR becomes an anomaly score in one of two ways
(`score.normalization`):
  calibrated (default)  score = share of normal validation frames the model reconstructs better
                        (`pseudovad.calibration`, stored in the model by `train`); comparable across
                        videos and usable live; default threshold 0.99 ≈ 1 % false alarms on
                        normal footage of the training scenes.
  minmax                the benchmarks' per-video min-max (1 − normalised PSNR). Needs the whole
                        video first (two passes over it): offline only, and every video gets a
                        frame scored 1 even without an anomaly; no default threshold.
A frame is flagged when score ≥ threshold; flagged runs shorter than `score.min_segment` frames
are dropped. The output folder is written all or nothing: scores.csv (frame, time_s, psnr, score,
flagged), timeline.png, summary.json (segments with start/end frame and time, threshold,
normalisation); and on request an annotated video (score bar + error heatmap).
"""
from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from pseudovad import calibration
from pseudovad.config import ScoreConfig
from pseudovad.data.sources import IMAGE_EXTS, Source, frame_files, read_frames, video_info
from pseudovad.errors import DataError
from pseudovad.evaluation.annotate import Annotator
from pseudovad.evaluation.plots import footage_timeline_plot
from pseudovad.evaluation.segments import Segments, Timeline
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import atomic_dir, atomic_path, write_json


def open_input(path: str | Path) -> tuple[Source, float | None, int | None]:
    """(source, fps or None, frame count or None) for a video file or a frame folder."""
    p = Path(path)
    if p.is_dir():
        files = frame_files(p)
        if not files:
            raise DataError(f"{p}: no frames (expected {', '.join(sorted(IMAGE_EXTS))} files)")
        return Source(p.name, "score", p, "frames"), None, len(files)
    if p.is_file():
        info = video_info(p)
        fps = info["fps"] if 0 < info["fps"] < 1000 else None
        return Source(p.stem, "score", p, "video"), fps, (info["frames"] or None)
    raise DataError(f"{p}: no such video file or frame folder")


def _time(frame: int, fps: float | None) -> float | None:
    return round(frame / fps, 3) if fps else None


def score_footage(detector: Detector, src: Source, out_dir: Path, settings: ScoreConfig, *,
                  threshold: float | None = None, fps: float | None = None, total: int | None = None,
                  video: str | Path | None = None, model_ref: str = "", progress: bool = False,
                  allow_truncated: bool = False) -> dict[str, Any]:
    """Score `src` with `detector`; write scores.csv, timeline.png, summary.json (+ `video`) into
    `out_dir`; return the summary. `threshold` (the command line's) beats `settings.threshold`.
    A truncated video is an error (nothing written) unless `allow_truncated`."""
    meta = detector.meta
    size = tuple(int(x) for x in meta["size"])
    channels = int(meta["channels"])
    norm = settings.normalization
    thr = threshold if threshold is not None else settings.threshold
    thr_source = "--threshold" if threshold is not None else "score.threshold"
    name = str(src.path)

    def frames() -> Iterator[np.ndarray]:
        return read_frames(src, size, channels, allow_truncated)

    if norm == "calibrated":
        calib = calibration.check(meta.get("calibration"), model_ref)
        if thr is None:
            thr, thr_source = calibration.DEFAULT_THRESHOLD, "calibration default"
        normalization: dict[str, Any] = {"kind": "calibrated", "calibration": calib}

        def to_score(p: float) -> float:
            return float(calibration.to_score(p, calib))
    else:  # minmax: a first pass for the video's PSNR range
        lo, hi = math.inf, -math.inf
        for s in tqdm(detector.stream(frames(), name=name), total=total, desc="score (pass 1/2)",
                      unit="frame", disable=not progress):
            lo, hi = min(lo, s.psnr), max(hi, s.psnr)
        normalization = {"kind": "minmax", "psnr_min": lo, "psnr_max": hi}

        def to_score(p: float) -> float:
            return float(calibration.minmax_scores(p, lo, hi))

    segs = Segments(thr, settings.min_segment)
    tl = Timeline()
    n = flagged = 0
    best = (-1.0, 0)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(out_dir))
        ann = None
        if video:
            vpath = stack.enter_context(atomic_path(video, suffix=Path(video).suffix))
            ann = Annotator(vpath, size, fps, thr)
            stack.callback(ann.close)
        fh = stack.enter_context(open(tmp / "scores.csv", "w", newline=""))
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["frame", "time_s", "psnr", "score", "flagged"])

        def emit(pairs: list[tuple[Any, bool]]) -> None:
            nonlocal flagged
            for (s, sc), fl in pairs:
                t = _time(s.index, fps)
                w.writerow([s.index, "" if t is None else f"{t:.3f}", f"{s.psnr:.4f}", f"{sc:.6f}", int(fl)])
                flagged += int(fl)
                if ann is not None:
                    ann.write(s, sc, fl)

        desc = "score" if norm == "calibrated" else "score (pass 2/2)"
        for s in tqdm(detector.stream(frames(), errors=ann is not None, name=name), total=total, desc=desc,
                      unit="frame", disable=not progress):
            sc = to_score(s.psnr)
            n += 1
            tl.add(sc)
            if sc > best[0]:
                best = (sc, s.index)
            emit(segs.push((s, sc), s.index, sc))
        emit(segs.close())
        fh.flush()

        segments = [{**g, "start_s": _time(g["start_frame"], fps), "end_s": _time(g["end_frame"] + 1, fps),
                     "peak_score": round(g["peak_score"], 6)} for g in segs.found]
        footage_timeline_plot(tl, segments, thr, fps, f"{src.path.name} · {norm}", tmp / "timeline.png")
        summary = {
            "input": str(src.path), "model": model_ref, "method": meta.get("method"), "frames": n,
            "fps": fps, "duration_s": _time(n, fps),
            "normalization": normalization, "threshold": thr, "threshold_source": thr_source if thr is not None else None,
            "min_segment": settings.min_segment, "flagged_frames": flagged, "segments": segments,
            "max_score": round(best[0], 6), "max_score_frame": best[1],
            "psnr": "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)",
            "outputs": {"scores": str(out_dir / "scores.csv"), "timeline": str(out_dir / "timeline.png"),
                        "summary": str(out_dir / "summary.json"), "video": str(video) if video else None},
        }
        write_json(tmp / "summary.json", summary)
    return summary
