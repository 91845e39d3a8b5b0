"""Scoring new footage (`pseudovad score`): anomaly scores, flagged segments, and the files a user reads.

The input is a video file, a frame folder, or a live source (`pseudovad.evaluation.live`); its
frames stream through `Detector.stream`, so any length fits in constant memory. PSNR becomes an
anomaly score in one of two ways (`score.normalization`):
  calibrated (default)  score = share of normal validation frames the model reconstructs better
                        (`pseudovad.calibration`, stored in the model by `train`); comparable across
                        videos and usable live; default threshold 0.99 ≈ 1 % false alarms on
                        normal footage of the training scenes.
  minmax                the benchmarks' per-video min-max (1 − normalised PSNR). Needs the whole
                        video first (two passes over it): offline only, and every video gets a
                        frame scored 1 even without an anomaly; no default threshold.
A frame is flagged when score ≥ threshold; flagged runs shorter than `score.min_segment` frames
are dropped. A file's outputs are committed together or not at all: scores.csv (provenance in
`#` lines, then frame, time_s, psnr, score, flagged), timeline.png, summary.json, and the
annotated video when asked for, inside or beside the output folder. A live source writes rolling
CSVs (and videos), segments.jsonl and summary.json as it goes (`score_live`). Both run the
domain-shift check (`pseudovad.evaluation.shift`).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import itertools
import json
import math
import os
import queue
import shutil
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from pseudovad import calibration
from pseudovad.config import ScoreConfig
from pseudovad.data.sources import IMAGE_EXTS, Source, convert, decode_frames, frame_files, to_bgr, video_info
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation.annotate import Annotator, error_range, timestamp
from pseudovad.evaluation.live import Alerts, Frame, LiveInput
from pseudovad.evaluation.plots import footage_timeline_plot
from pseudovad.evaluation.segments import Segments, Timeline
from pseudovad.evaluation.shift import ShiftCheck
from pseudovad.evaluation.streaming import Detector, Scored
from pseudovad.evaluation.video_out import VideoWriter, choose_codec
from pseudovad.files import staged_outputs, write_json

OUTPUT_FILES = ("scores.csv", "timeline.png", "summary.json")
CSV_COLUMNS = ["frame", "time_s", "psnr", "score", "flagged"]


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


# ----------------------------------------------------------------------------------------------
# What is written where

def video_target(out_dir: Path, video: str | Path, inputs: tuple[Path, ...] = ()) -> tuple[Path, Path | None]:
    """(video path, its path relative to `out_dir` if inside it) — or a ConfigError when `video`
    is not inside or beside `out_dir`, or is a path the stage itself writes or reads."""
    out, v = Path(out_dir).resolve(), Path(video).resolve()
    if v == out or out.is_relative_to(v):
        raise ConfigError(f"--video {video}: is the output folder {out_dir} (or holds it); give a file name")
    if v.is_dir():
        raise ConfigError(f"--video {video}: is a folder; give a file name")
    for i in inputs:
        if v == Path(i).resolve():
            raise ConfigError(f"--video {video}: is the input; score would overwrite it")
    if v.is_relative_to(out):
        rel = v.relative_to(out)
        if str(rel) in OUTPUT_FILES:
            raise ConfigError(f"--video {video}: score writes its own {rel} there; choose another name")
        return Path(video), rel
    if v.parent != out.parent:
        raise ConfigError(f"--video {video}: must be inside or beside --out {out_dir} (it is committed "
                          "together with the other outputs)")
    return Path(video), None


def check_input_kept(out_dir: Path, inputs: tuple[Path, ...], target: tuple[Path, Path | None] | None) -> None:
    """An input that committing the outputs would replace is refused: one inside --out when the
    folder is replaced as a whole (a video beside it), or one named like an output."""
    out = Path(out_dir).resolve()
    members = set(OUTPUT_FILES) | ({target[1].parts[0]} if target and target[1] is not None else set())
    for i in inputs:
        p = Path(i).resolve()
        if p == out or out.is_relative_to(p):
            raise ConfigError(f"--out {out_dir}: is (or holds) the input {i}")
        if p.is_relative_to(out) and ((target is not None and target[1] is None) or p.relative_to(out).parts[0] in members):
            raise ConfigError(f"--out {out_dir}: holds the input {i}, which writing the outputs would replace")


class _InputHash:
    """sha256 of the input, computed in a thread while scoring runs (start-up does not wait)."""

    def __init__(self, src: Source):
        self.value: str | None = None
        self.error: str | None = None
        self._t = threading.Thread(target=self._run, args=(src,), daemon=True, name="pseudovad-hash")
        self._t.start()

    def _run(self, src: Source) -> None:
        try:
            self.value = src.checksum()
        except OSError as e:
            self.error = str(e)

    def result(self) -> dict[str, Any]:
        self._t.join()
        what = "the video file" if not self.error else None
        return {"sha256": self.value, "hashed": what, "error": self.error}


def csv_preamble(provenance: dict[str, Any], threshold: float | None, thr_source: str | None) -> list[str]:
    """The `# key: value` lines scores.csv starts with (pandas: read_csv(path, comment="#"))."""
    m, i, c = provenance["model"], provenance["input"], provenance.get("calibration") or {}
    lines = [f"pseudovad_version: {provenance['pseudovad_version']}",
             f"model: {m.get('ref')}", f"model_name: {m.get('name') or ''}", f"model_version: {m.get('version') or ''}",
             f"model_run_id: {m.get('run_id') or ''}", f"model_sha256: {m.get('sha256')}",
             f"input: {i.get('path')}", f"input_sha256: {i.get('sha256') or i.get('note') or ''}"]
    if c:
        lines.append(f"calibration: {c.get('source')} n={c.get('n')} psnr_min={c.get('psnr_min'):.3f} "
                     f"psnr_median={c.get('psnr_median'):.3f} psnr_max={c.get('psnr_max'):.3f}")
    else:
        lines.append(f"calibration: none ({provenance.get('normalization')})")
    lines.append(f"threshold: {'' if threshold is None else threshold} ({thr_source or 'none'})")
    return ["# " + " ".join(x.split()) for x in lines]


# ----------------------------------------------------------------------------------------------
# The per-frame pipeline both modes share

class _Scoring:
    """Source frames → (frame item, flagged) pairs, final in order: PSNR from the detector, score,
    domain-shift counts, segments. Holds the decoded source frames the detector has not yielded
    yet (its lookahead: clip span + batch − 1) and the segment lookahead (min_segment items)."""

    def __init__(self, detector: Detector, to_score: Callable[[float], float], segs: Segments,
                 shift: ShiftCheck | None, errors: bool):
        self.detector, self.to_score, self.segs, self.shift, self.errors = detector, to_score, segs, shift, errors
        self.size = tuple(int(x) for x in detector.meta["size"])
        self.channels = int(detector.meta["channels"])
        self.timeline = Timeline()
        self.n = self.flagged = 0
        self.best = (-1.0, 0)

    def run(self, frames: Iterator[tuple[int, float | None, np.ndarray]], name: str
            ) -> Iterator[tuple[tuple[int, float | None, np.ndarray, Scored, float], bool]]:
        """One continuous piece of footage: items (key, t, decoded image); segments close at its end."""
        held: deque[tuple[int, float | None, np.ndarray]] = deque()

        def model_frames() -> Iterator[np.ndarray]:
            for key, t, img in frames:
                held.append((key, t, img))
                yield convert(img, self.size, self.channels)

        for s in self.detector.stream(model_frames(), errors=self.errors, name=name):
            key, t, img = held.popleft()
            sc = float(self.to_score(s.psnr))
            self.n += 1
            self.timeline.add(sc)
            if sc > self.best[0]:
                self.best = (sc, key)
            if self.shift is not None:
                self.shift.add(s.psnr)
            for item, fl in self.segs.push((key, t, img, s, sc), key, sc, t):
                self.flagged += int(fl)
                yield item, fl
        for item, fl in self.segs.close():
            yield item, fl


def _prefetch(it: Iterator[Any], n: int = 8) -> Iterator[Any]:
    """Decode ahead in a thread (OpenCV releases the GIL), so decoding overlaps the forward pass."""
    q: queue.Queue = queue.Queue(maxsize=n)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for x in it:
                while not stop.is_set():
                    try:
                        q.put((x, None), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # re-raised in the consumer
            q.put((done, e))

    th = threading.Thread(target=work, daemon=True, name="pseudovad-decode")
    th.start()
    try:
        while True:
            x, err = q.get()
            if x is done:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()


class _VideoThread:
    """Draws and encodes the annotated video in a thread beside scoring (OpenCV and the pipe to
    ffmpeg release the GIL), through a bounded queue: scoring waits only when the video falls
    `depth` frames behind. An encoder failure is raised at the next `put` or at `close`."""

    def __init__(self, ann: Annotator, writer: VideoWriter, depth: int = 8):
        self.ann, self.writer = ann, writer
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.frames = 0
        self._t = threading.Thread(target=self._run, daemon=True, name="pseudovad-video")
        self._t.start()

    def _run(self) -> None:
        while True:
            job = self.q.get()
            if job is None:
                return
            if self.error is not None:
                continue
            try:
                img, error, sc, fl, when = job
                self.writer.write(self.ann.draw(to_bgr(img), error, sc, fl, when))
                self.frames += 1
            except BaseException as e:  # raised in the scoring thread
                self.error = e

    def put(self, img: np.ndarray, error: np.ndarray | None, sc: float, fl: bool, when: str) -> None:
        if self.error is not None:
            raise self.error
        self.q.put((img, error, sc, fl, when))

    def close(self) -> None:
        """All frames written and the file finished (H.264: ffmpeg writes its index)."""
        self.q.put(None)
        self._t.join()
        if self.error is not None:
            raise self.error
        self.writer.close()

    def abort(self) -> None:
        if self._t.is_alive():
            self.error = self.error or RuntimeError("aborted")
            self.q.put(None)
            self._t.join(timeout=10)
        self.writer.abort()


def _normalization(detector: Detector, settings: ScoreConfig, threshold: float | None, model_ref: str,
                   psnr_range: Callable[[], tuple[float, float]]):
    """(to_score, threshold, threshold source, normalization record, calibration or None)."""
    thr = threshold if threshold is not None else settings.threshold
    thr_source = "--threshold" if threshold is not None else "score.threshold"
    if settings.normalization == "calibrated":
        calib = calibration.check(detector.meta.get("calibration"), model_ref)
        if thr is None:
            thr, thr_source = calibration.DEFAULT_THRESHOLD, "calibration default"
        return (lambda p: float(calibration.to_score(p, calib))), thr, thr_source, \
            {"kind": "calibrated", "calibration": calib}, calib
    lo, hi = psnr_range()
    return (lambda p: float(calibration.minmax_scores(p, lo, hi))), thr, (thr_source if thr is not None else None), \
        {"kind": "minmax", "psnr_min": lo, "psnr_max": hi}, None


def _shift_check(detector: Detector, calib: dict | None, settings: ScoreConfig) -> ShiftCheck | None:
    calib = calib or detector.meta.get("calibration")
    try:
        calibration.check(calib)
    except DataError:
        return None            # no calibration: nothing to compare with
    return ShiftCheck(calib, settings.shift_share, settings.shift_margin_db)


def _segment_record(g: dict[str, Any], fps: float | None) -> dict[str, Any]:
    return {"start_frame": g["start_frame"], "end_frame": g["end_frame"], "frames": g["frames"],
            "start_s": _time(g["start_frame"], fps), "end_s": _time(g["end_frame"] + 1, fps),
            "peak_score": round(g["peak_score"], 6), "peak_frame": g["peak_frame"]}


# ----------------------------------------------------------------------------------------------
# A video file or frame folder

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
    hasher = _InputHash(src)

    def psnr_range() -> tuple[float, float]:  # minmax: a first pass for the video's PSNR range
        lo, hi = math.inf, -math.inf
        for s in tqdm(detector.stream((convert(f, tuple(meta["size"]), int(meta["channels"])) for f in decode_frames(src, allow_truncated)),
                                      name=name), total=total, desc="score (pass 1/2)", unit="frame", disable=not progress):
            lo, hi = min(lo, s.psnr), max(hi, s.psnr)
        return lo, hi

    to_score, thr, thr_source, normalization, calib = _normalization(
        detector, settings, threshold, str(provenance["model"].get("ref")), psnr_range)

    def on_close(g: dict[str, Any]) -> None:
        if alerts is not None:
            alerts.post({"event": "segment", "input": name, **_segment_record(g, fps)})

    segs = Segments(thr, settings.min_segment, on_close=on_close)
    limit = None
    if duration is not None:
        if not fps:
            raise ConfigError(f"--duration: {name} has no frame rate; give --fps")
        limit = max(1, int(round(duration * fps)))
        total = min(total, limit) if total else limit
    frames = _prefetch((i, None, f) for i, f in enumerate(itertools.islice(decode_frames(src, allow_truncated), limit)))
    first = next(frames, None)
    if first is None:
        raise DataError(f"{name}: no frames")
    source_size = first[2].shape[:2]
    shift = _shift_check(detector, calib, settings)
    scoring = _Scoring(detector, to_score, segs, shift, errors=target is not None)
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
            writer = _VideoThread(Annotator((h, wd), thr, error_range(calib)),
                                  VideoWriter(vpath, (wd, h), float(fps or 10.0), codec, dest.suffix.lower()))
            stack.callback(writer.abort)            # a failure: stop ffmpeg; the staged file goes with the staging
        body = stack.enter_context(open(tmp / ".scores.body", "w", newline=""))
        w = csv.writer(body, lineterminator="\n")
        desc = "score" if normalization["kind"] == "calibrated" else "score (pass 2/2)"
        t_first = None
        for (key, _, img, s, sc), fl in tqdm(scoring.run(itertools.chain([first], frames), name), total=total,
                                             desc=desc, unit="frame", disable=not progress):
            t_first = t_first or time.time()
            t = _time(key, fps)
            w.writerow([key, "" if t is None else f"{t:.3f}", f"{s.psnr:.4f}", f"{sc:.6f}", int(fl)])
            if writer is not None:
                writer.put(img, s.error, sc, fl, timestamp(key / fps) if fps else f"frame {key}")
        if writer is not None:
            writer.close()                           # H.264: ffmpeg writes the index; raises if it failed
        body.close()
        t_end = time.time()

        segments = [_segment_record(g, fps) for g in segs.found]
        inp = {"path": str(src.path), "kind": src.kind, **hasher.result()}
        if src.kind == "frames":
            inp["hashed"] = "every frame file (name and sha256, in frame order)"
        shift_rec = _shift_record(shift)
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
            "fps": fps, "duration_s": _time(scoring.n, fps), "width": wd, "height": h,
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


def _shift_record(shift: ShiftCheck | None) -> dict[str, Any]:
    if shift is None:
        return {"shift": False, "reasons": [], "message": None, "note": "no calibration stored with the model"}
    return shift.result()


# ----------------------------------------------------------------------------------------------
# A live source

def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def _wall_label(t: float) -> str:
    d = dt.datetime.fromtimestamp(t)
    return d.strftime("%Y-%m-%d ") + timestamp(d.hour * 3600 + d.minute * 60 + d.second + d.microsecond / 1e6)


class _Rolling:
    """The live files that rotate every `rotate_s`: scores-<stamp>.csv and, on request, the
    annotated video <name>-<stamp><suffix> (written under a temporary name, renamed when its
    chunk ends: an .mp4 is playable only once finished). The newest `keep` of each stay."""

    def __init__(self, out_dir: Path, settings: ScoreConfig, preamble: list[str], video: Path | None,
                 codec: str | None, threshold: float | None, calib: dict | None, fps: float):
        self.out, self.settings, self.preamble = out_dir, settings, preamble
        self.video, self.codec, self.threshold, self.calib, self.fps = video, codec, threshold, calib, fps
        self.start = None
        self.csv_fh = self.writer = self.ann = None
        self.vtmp = self.vdest = None
        self.files: list[str] = []

    def _prune(self, pattern: str) -> None:
        old = sorted(self.out.glob(pattern))
        for p in old[:-self.settings.keep_files]:
            p.unlink(missing_ok=True)

    def _open(self, t: float, size: tuple[int, int]) -> None:
        stamp = dt.datetime.fromtimestamp(t).strftime("%Y%m%d-%H%M%S")
        self.start = t
        path = self.out / f"scores-{stamp}.csv"
        self.csv_fh = open(path, "w", newline="", buffering=1)    # line-buffered: `tail -f` works
        self.csv_fh.write("\n".join(self.preamble) + "\n" + ",".join(CSV_COLUMNS + ["wall_time"]) + "\n")
        self.csv = csv.writer(self.csv_fh, lineterminator="\n")
        self.files.append(str(path))
        self._prune("scores-*.csv")
        if self.video is not None:
            h, w = size
            self.vdest = self.video.with_name(f"{self.video.stem}-{stamp}{self.video.suffix}")
            self.vtmp = self.vdest.with_name(f".{self.vdest.name}.tmp{self.video.suffix}")
            self.ann = Annotator((h, w), self.threshold, error_range(self.calib))
            self.writer = VideoWriter(self.vtmp, (w, h), self.fps, self.codec, self.video.suffix.lower())

    def close_chunk(self) -> None:
        if self.csv_fh is not None:
            self.csv_fh.close()
            self.csv_fh = None
        if self.writer is not None:
            w, self.writer = self.writer, None
            try:
                w.close()
                os.replace(self.vtmp, self.vdest)
                self.files.append(str(self.vdest))
                self._prune(f"{self.video.stem}-*{self.video.suffix}")
            finally:
                if self.vtmp.exists():
                    self.vtmp.unlink()

    def write(self, key: int, t: float, t0: float, img: np.ndarray, s: Scored, sc: float, fl: bool) -> None:
        if self.start is None or t - self.start >= self.settings.rotate_s:
            self.close_chunk()
            self._open(t, img.shape[:2])
        self.csv.writerow([key, f"{t - t0:.3f}", f"{s.psnr:.4f}", f"{sc:.6f}", int(fl), _iso(t)])
        if self.writer is not None:
            self.writer.write(self.ann.draw(to_bgr(img), s.error, sc, fl, _wall_label(t)))


def score_live(detector: Detector, ref: str, out_dir: Path, settings: ScoreConfig, *,
               threshold: float | None = None, fps: float | None = None, video: str | Path | None = None,
               video_codec: str | None = None, provenance: dict[str, Any] | None = None,
               alerts: Alerts | None = None, duration: float | None = None, follow: bool = False,
               strict: bool = False, events: Callable[[dict], None] = print,
               warn: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Score a live source until `stop` is set, Ctrl-C / SIGTERM, `duration` seconds, or (with
    `strict`) a domain shift. Segments go to `events` (and `alerts`) as they open and close, and
    to out_dir/segments.jsonl; scores to rolling CSVs; summary.json is rewritten at each rotation
    and at the end. Memory is constant: a bounded frame queue, the detector's clip buffer, the
    segment lookahead, and fixed-size counters."""
    from pseudovad.evaluation.live import redact

    if settings.normalization != "calibrated":
        raise ConfigError("score.normalization: a live source needs calibrated scores (minmax needs the whole video)")
    warn = warn or (lambda m: print(m, file=sys.stderr))
    name = redact(ref)
    out_dir = Path(out_dir)
    vtarget = video_target(out_dir, video) if video else None
    codec = choose_codec(video, video_codec) if video else None
    to_score, thr, thr_source, normalization, calib = _normalization(
        detector, settings, threshold, str((provenance or {}).get("model", {}).get("ref")), lambda: (0.0, 0.0))
    provenance = dict(provenance or {"model": {"ref": None}, "pseudovad_version": None})
    provenance.update({"input": {"path": name, "kind": "growing file" if follow else "live stream", "sha256": None,
                                 "hashed": None,
                                 "note": ("not hashed: a growing file changes while it is read" if follow else
                                          "not hashed: a live stream has no fixed content (rows carry wall-clock times)")},
                       "calibration": calib, "normalization": "calibrated"})
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = open(out_dir / "segments.jsonl", "a", buffering=1)
    started = time.time()
    recent: deque[dict[str, Any]] = deque(maxlen=100)
    state: dict[str, Any] = {"shift": None, "shift_windows": 0, "windows": 0, "short_runs": 0, "stop_reason": None}

    def emit(event: dict[str, Any]) -> None:
        events(event)
        if alerts is not None:
            alerts.post(event)

    def record(g: dict[str, Any]) -> dict[str, Any]:
        return {"input": name, "start_frame": g["start_frame"], "end_frame": g["end_frame"], "frames": g["frames"],
                "start_time": _iso(g["start_t"]), "end_time": _iso(g["end_t"]),
                "start_s": round(g["start_t"] - started, 3), "end_s": round(g["end_t"] - started, 3),
                "peak_score": round(g["peak_score"], 6), "peak_frame": g["peak_frame"], "peak_time": _iso(g["peak_t"])}

    def on_open(g: dict[str, Any]) -> None:
        emit({"event": "anomaly_start", **record(g)})

    def on_close(g: dict[str, Any]) -> None:
        rec = {"event": "segment", **record(g)}
        recent.append(rec)
        jsonl.write(json.dumps(rec) + "\n")
        emit(rec)

    segs = Segments(thr, settings.min_segment, on_open=on_open, on_close=on_close, keep=False)
    scoring = _Scoring(detector, to_score, segs, None, errors=vtarget is not None)
    src = LiveInput(ref, settings.queue_frames, settings.reconnect_max_s, follow=follow).start()
    stop = stop or threading.Event()
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())   # `docker stop`: finish cleanly
    rolling: _Rolling | None = None
    preamble = csv_preamble(provenance, thr, thr_source)

    def summary(final: bool) -> dict[str, Any]:
        s = {"live": True, "input": name, "out": str(out_dir), "model": provenance["model"],
             "method": detector.meta.get("method"), "started": _iso(started), "updated": _iso(time.time()),
             "running": not final, "stop_reason": state["stop_reason"], "frames": scoring.n,
             "frames_read": src.read, "dropped_frames": src.dropped, "reconnects": src.reconnects,
             "runs_too_short": state["short_runs"], "threshold": thr, "threshold_source": thr_source,
             "min_segment": settings.min_segment, "normalization": normalization,
             "flagged_frames": scoring.flagged, "segments_found": segs.count, "recent_segments": list(recent),
             "max_score": round(scoring.best[0], 6), "max_score_frame": scoring.best[1],
             "domain_shift": state["shift"] or {"shift": False, "reasons": [], "message": None,
                                                 "windows_checked": state["windows"]},
             "provenance": {k: provenance[k] for k in ("pseudovad_version", "input", "calibration")},
             "files": rolling.files[-2 * settings.keep_files:] if rolling else [], "segments_log": str(out_dir / "segments.jsonl")}
        if final and alerts is not None:
            s["alerts"] = alerts.close()
        return s

    deadline = started + duration if duration else None
    last_report, dropped_seen, scored_seen = time.monotonic(), 0, 0
    carry: list[Frame] = []

    def should_stop() -> bool:
        if stop.is_set():
            state["stop_reason"] = state["stop_reason"] or "stopped"
            return True
        if deadline is not None and time.time() >= deadline:
            state["stop_reason"] = "--duration"
            return True
        return False

    def run_frames() -> Iterator[tuple[int, float, np.ndarray]]:
        """The frames of one connection; a frame of the next one is carried over."""
        run_id = None
        if carry:
            f = carry.pop()
            run_id = f.run
            yield f.seq, f.t, f.image
        for f in src.frames():
            if should_stop():
                return
            if f is None:
                continue
            if run_id is None:
                run_id = f.run
            if f.run != run_id:
                carry.append(f)
                return
            yield f.seq, f.t, f.image

    try:
        while not should_stop():
            try:
                for (key, t, img, s, sc), fl in scoring.run(run_frames(), name):
                    if rolling is None:
                        rolling = _Rolling(out_dir, settings, preamble, vtarget[0] if vtarget else None, codec,
                                           thr, calib, float(fps or src.fps or 25.0))
                    rotated = rolling.start is not None and t - rolling.start >= settings.rotate_s
                    rolling.write(key, t, started, img, s, sc, fl)
                    if rotated:
                        write_json(out_dir / "summary.json", summary(False))
                    # domain shift, window by window
                    if scoring.shift is None:
                        scoring.shift = _shift_check(detector, calib, settings)
                    elif scoring.shift.n >= settings.shift_window:
                        res = scoring.shift.result()
                        state["windows"] += 1
                        scoring.shift = _shift_check(detector, calib, settings)
                        if res["shift"]:
                            state["shift_windows"] += 1
                            if state["shift"] is None:
                                state["shift"] = {**res, "at": _iso(t)}
                                warn(res["message"])
                                emit({"event": "domain_shift", "input": name, "time": _iso(t), "message": res["message"]})
                                if strict:
                                    state["stop_reason"] = "domain shift (--strict)"
                                    stop.set()
                            state["shift"]["windows_shifted"] = state["shift_windows"]
                        if state["shift"] is not None:
                            state["shift"]["windows_checked"] = state["windows"]
                    now = time.monotonic()
                    if now - last_report >= 10.0:
                        d = src.dropped - dropped_seen
                        if d:
                            rate = (scoring.n - scored_seen) / (now - last_report)
                            warn(f"{name}: scoring is slower than the stream: dropped {d} frame(s) in the last "
                                 f"{now - last_report:.0f} s (scoring {rate:.1f} fps)")
                        last_report, dropped_seen, scored_seen = now, src.dropped, scoring.n
            except DataError as e:
                if "too short" not in str(e) or src.error:
                    raise
                state["short_runs"] += 1          # a connection that ended before one clip filled
    except KeyboardInterrupt:
        state["stop_reason"] = "interrupted (Ctrl-C)"
    finally:
        src.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        for (key, t, img, s, sc), fl in segs.close():     # frames still waiting on a segment decision
            if rolling is not None:
                rolling.write(key, t, started, img, s, sc, fl)
        if rolling is not None:
            rolling.close_chunk()
        jsonl.close()
    if state["shift"] is None and scoring.shift is not None and scoring.shift.n:
        res = scoring.shift.result()          # the last, partial window
        if res["shift"]:
            state["shift"] = {**res, "at": _iso(time.time())}
            warn(res["message"])
    s = summary(True)
    write_json(out_dir / "summary.json", s)
    return s
