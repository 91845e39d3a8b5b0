"""The per-frame pipeline recorded footage and live sources share: source frames → PSNR from the
detector → anomaly score (`score.normalization`: calibrated, or the benchmarks' per-video
min-max) → flagged segments and the domain-shift counts; decoding ahead and the annotated video
each in a thread beside it.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable, Iterator

import numpy as np

from pseudovad import calibration
from pseudovad.config import ScoreConfig
from pseudovad.data.sources import convert, to_bgr
from pseudovad.errors import DataError
from pseudovad.evaluation.segments import Segments, Timeline
from pseudovad.evaluation.streaming import Detector, Scored
from pseudovad.scoring.annotate import Annotator
from pseudovad.scoring.shift import ShiftCheck
from pseudovad.scoring.video_out import VideoWriter


class Scoring:
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


def prefetch(it: Iterator[Any], n: int = 8) -> Iterator[Any]:
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


class VideoThread:
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


def choose_normalization(detector: Detector, settings: ScoreConfig, threshold: float | None, model_ref: str,
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


def shift_check(detector: Detector, calib: dict | None, settings: ScoreConfig) -> ShiftCheck | None:
    calib = calib or detector.meta.get("calibration")
    try:
        calibration.check(calib)
    except DataError:
        return None            # no calibration: nothing to compare with
    return ShiftCheck(calib, settings.shift_share, settings.shift_margin_db)

def shift_record(shift: ShiftCheck | None) -> dict[str, Any]:
    if shift is None:
        return {"shift": False, "reasons": [], "message": None, "note": "no calibration stored with the model"}
    return shift.result()
