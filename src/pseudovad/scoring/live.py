"""Scoring a live source (`score_live`): a camera, a stream or a growing file, until stopped.
Segments are reported as they open and close (stdout, `--alert-url`, segments.jsonl); scores go
to rolling CSVs (and videos) that rotate every `score.rotate_s`; summary.json is rewritten at
each rotation and at the end; the domain-shift check runs window by window.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from pseudovad.config import ScoreConfig
from pseudovad.data.sources import to_bgr
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation.segments import Segments
from pseudovad.evaluation.streaming import Detector, Scored
from pseudovad.files import write_json
from pseudovad.scoring.alerts import Alerts
from pseudovad.scoring.annotate import Annotator, error_range, timestamp
from pseudovad.scoring.outputs import CSV_COLUMNS, csv_preamble, video_target
from pseudovad.scoring.pipeline import Scoring, choose_normalization, shift_check
from pseudovad.scoring.stream import Frame, LiveInput, redact
from pseudovad.scoring.video_out import VideoWriter, choose_codec


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
    if settings.normalization != "calibrated":
        raise ConfigError("score.normalization: a live source needs calibrated scores (minmax needs the whole video)")
    warn = warn or (lambda m: print(m, file=sys.stderr))
    name = redact(ref)
    out_dir = Path(out_dir)
    vtarget = video_target(out_dir, video) if video else None
    codec = choose_codec(video, video_codec) if video else None
    to_score, thr, thr_source, normalization, calib = choose_normalization(
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
    scoring = Scoring(detector, to_score, segs, None, errors=vtarget is not None)
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
                        scoring.shift = shift_check(detector, calib, settings)
                    elif scoring.shift.n >= settings.shift_window:
                        res = scoring.shift.result()
                        state["windows"] += 1
                        scoring.shift = shift_check(detector, calib, settings)
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
