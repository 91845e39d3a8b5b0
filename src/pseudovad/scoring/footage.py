"""Scoring a recorded video file or frame folder (`score_footage`): its outputs — scores.csv
(provenance in `#` lines, then frame, time_s, psnr, score, flagged), timeline.png, summary.json,
and the annotated video when asked for, inside or beside the output folder — are committed
together or not at all. With `score.normalization: minmax` the video is read twice (its PSNR
range first).
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from pseudovad.config import ScoreConfig
from pseudovad.data.sources import Source, convert, decode_frames
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation.plots import footage_timeline_plot
from pseudovad.evaluation.segments import Segments
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import staged_outputs, write_json
from pseudovad.scoring.alerts import Alerts
from pseudovad.scoring.annotate import Annotator, error_range, timestamp
from pseudovad.scoring.inputs import InputHash
from pseudovad.scoring.outputs import CSV_COLUMNS, check_input_kept, csv_preamble, frame_time, segment_record, video_target
from pseudovad.scoring.pipeline import Scoring, VideoThread, choose_normalization, prefetch, shift_check, shift_record
from pseudovad.scoring.video_out import VideoWriter, choose_codec


def score_footage(detector: Detector, src: Source, out_dir: Path, settings: ScoreConfig, *,
                  threshold: float | None = None, fps: float | None = None, total: int | None = None,
                  video: str | Path | None = None, video_codec: str | None = None,
                  provenance: dict[str, Any] | None = None, alerts: Alerts | None = None,
                  progress: bool = False, warn: Callable[[str], None] | None = None,
                  duration: float | None = None, allow_truncated: bool = False) -> dict[str, Any]:
    """Score `src` with `detector`; write scores.csv, timeline.png, summary.json (+ `video`) into
    `out_dir`, all committed together; return the summary. `threshold` (the command line's)
    beats `settings.threshold`. `provenance`: the model's (`stages.score` resolves it).
    `duration`: only the first seconds of footage. A truncated video is an error (nothing
    written) unless `allow_truncated`."""
    t_start = time.time()
    meta = detector.meta
    name = str(src.path)
    target = video_target(out_dir, video, (src.path,)) if video else None
    check_input_kept(out_dir, (src.path,), target)
    codec = choose_codec(video, video_codec) if video else None
    provenance = dict(provenance or {"model": {"ref": None}, "pseudovad_version": None})
    hasher = InputHash(src)

    def psnr_range() -> tuple[float, float]:  # minmax: a first pass for the video's PSNR range
        lo, hi = math.inf, -math.inf
        for s in tqdm(detector.stream((convert(f, tuple(meta["size"]), int(meta["channels"])) for f in decode_frames(src, allow_truncated)),
                                      name=name), total=total, desc="score (pass 1/2)", unit="frame", disable=not progress):
            lo, hi = min(lo, s.psnr), max(hi, s.psnr)
        return lo, hi

    to_score, thr, thr_source, normalization, calib = choose_normalization(
        detector, settings, threshold, str(provenance["model"].get("ref")), psnr_range)

    def on_close(g: dict[str, Any]) -> None:
        if alerts is not None:
            alerts.post({"event": "segment", "input": name, **segment_record(g, fps)})

    segs = Segments(thr, settings.min_segment, on_close=on_close)
    limit = None
    if duration is not None:
        if not fps:
            raise ConfigError(f"--duration: {name} has no frame rate; give --fps")
        limit = max(1, int(round(duration * fps)))
        total = min(total, limit) if total else limit
    frames = prefetch((i, None, f) for i, f in enumerate(itertools.islice(decode_frames(src, allow_truncated), limit)))
    first = next(frames, None)
    if first is None:
        raise DataError(f"{name}: no frames")
    source_size = first[2].shape[:2]
    shift = shift_check(detector, calib, settings)
    scoring = Scoring(detector, to_score, segs, shift, errors=target is not None)
    h, wd = source_size
    with contextlib.ExitStack() as stack:
        # one commit for everything: the video inside --out is one of the folder's outputs; a video
        # beside it is committed with the folder from the parent (out_dir replaced as a whole)
        if target is not None and target[1] is None:
            tmp = stack.enter_context(staged_outputs(out_dir.parent, "score")) / out_dir.name
            tmp.mkdir()
        else:
            tmp = stack.enter_context(staged_outputs(out_dir, "score"))
        writer = None
        if target is not None:
            dest, rel = target
            vpath = tmp / rel if rel is not None else tmp.parent / dest.name
            vpath.parent.mkdir(parents=True, exist_ok=True)
            writer = VideoThread(Annotator((h, wd), thr, error_range(calib)),
                                  VideoWriter(vpath, (wd, h), float(fps or 10.0), codec, dest.suffix.lower()))
            stack.callback(writer.abort)            # a failure: stop ffmpeg; the staged file goes with the staging
        body = stack.enter_context(open(tmp / ".scores.body", "w", newline=""))
        w = csv.writer(body, lineterminator="\n")
        desc = "score" if normalization["kind"] == "calibrated" else "score (pass 2/2)"
        t_first = None
        for (key, _, img, s, sc), fl in tqdm(scoring.run(itertools.chain([first], frames), name), total=total,
                                             desc=desc, unit="frame", disable=not progress):
            t_first = t_first or time.time()
            t = frame_time(key, fps)
            w.writerow([key, "" if t is None else f"{t:.3f}", f"{s.psnr:.4f}", f"{sc:.6f}", int(fl)])
            if writer is not None:
                writer.put(img, s.error, sc, fl, timestamp(key / fps) if fps else f"frame {key}")
        if writer is not None:
            writer.close()                           # H.264: ffmpeg writes the index; raises if it failed
        body.close()
        t_end = time.time()

        segments = [segment_record(g, fps) for g in segs.found]
        inp = {"path": str(src.path), "kind": src.kind, **hasher.result()}
        if src.kind == "frames":
            inp["hashed"] = "every frame file (name and sha256, in frame order)"
        shift_rec = shift_record(shift)
        if shift_rec["message"] and warn:
            warn(shift_rec["message"])
        provenance.update({"input": inp, "calibration": calib, "normalization": normalization["kind"]})
        with open(tmp / "scores.csv", "w", newline="") as fh:
            fh.write("\n".join(csv_preamble(provenance, thr, thr_source)) + "\n" + ",".join(CSV_COLUMNS) + "\n")
            with open(tmp / ".scores.body") as b:
                shutil.copyfileobj(b, fh)
        os.remove(tmp / ".scores.body")
        footage_timeline_plot(scoring.timeline, segments, thr, fps, f"{src.path.name} · {normalization['kind']}",
                              tmp / "timeline.png")
        summary = {
            "input": str(src.path), "model": provenance["model"], "method": meta.get("method"), "frames": scoring.n,
            "fps": fps, "duration_s": frame_time(scoring.n, fps), "width": wd, "height": h,
            "normalization": normalization, "threshold": thr, "threshold_source": thr_source if thr is not None else None,
            "min_segment": settings.min_segment, "flagged_frames": scoring.flagged, "segments": segments,
            "max_score": round(scoring.best[0], 6), "max_score_frame": scoring.best[1],
            "domain_shift": shift_rec,
            "psnr": "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)",
            "provenance": {k: provenance[k] for k in ("pseudovad_version", "input", "calibration")},
            "timing": {"first_frame_at": t_first, "first_frame_s": round(t_first - t_start, 3),
                       "scoring_s": round(t_end - t_first, 3),
                       "fps": round((scoring.n - 1) / max(t_end - t_first, 1e-9), 2)},
            "outputs": {"scores": str(out_dir / "scores.csv"), "timeline": str(out_dir / "timeline.png"),
                        "summary": str(out_dir / "summary.json"), "video": str(target[0]) if target else None},
            "video": None if target is None else {
                "path": str(target[0]), "codec": codec, "width": wd, "height": h, "fps": float(fps or 10.0),
                "fps_assumed": fps is None, "frames": writer.frames},
        }
        if alerts is not None:
            summary["alerts"] = alerts.close()
        write_json(tmp / "summary.json", summary)
    return summary
