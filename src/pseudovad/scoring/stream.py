"""Live input for `score`: a camera or stream read in its own thread.

`LiveInput` reads whatever `cv2.VideoCapture` opens (rtsp://, http(s):// MJPEG or HLS, a
/dev/videoN device, a file that is still being written with `follow`) into a small bounded
queue. The scorer takes frames from it; when scoring is slower than the stream the queue is full
and the *oldest* frame is dropped (counted, and reported), so latency and memory stay bounded
whatever happens downstream. A growing file is not dropped from: it waits on disk, so the reader
waits for the scorer instead. A stream that drops is reopened with exponential backoff (0.5 s,
1 s, 2 s … up to `reconnect_max_s`); each reconnect starts a new *run*, and the scorer starts a
fresh clip buffer for it, so no clip spans a gap of unknown length.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from pseudovad.errors import DataError

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_DEVICE = re.compile(r"^/dev/video\d+$")


def is_live(ref: str | Path) -> bool:
    """A stream URL or a /dev/videoN device (a growing file is live only with `follow`)."""
    s = str(ref)
    return s.lower().startswith(STREAM_SCHEMES) or bool(_DEVICE.match(s))


def redact(url: str) -> str:
    """The URL without a password (rtsp://user:secret@cam/ → rtsp://user:***@cam/)."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", str(url))


@dataclass
class Frame:
    seq: int           # frames delivered since the start (drops leave gaps)
    run: int           # connection number: a new one after each reconnect
    t: float           # wall-clock time it was read (time.time())
    image: np.ndarray  # as decoded (BGR or gray uint8), the source's size


def _open(ref: str, timeout_s: float):
    import cv2

    if _DEVICE.match(ref):
        cap = cv2.VideoCapture(int(ref[len("/dev/video"):]), cv2.CAP_V4L2)
    else:
        ms = int(timeout_s * 1000)
        cap = cv2.VideoCapture(ref, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class LiveInput:
    """Frames of a live source, read by a background thread into a bounded drop-oldest queue."""

    def __init__(self, ref: str, queue_frames: int = 16, reconnect_max_s: float = 30.0, follow: bool = False,
                 timeout_s: float = 10.0):
        self.ref, self.name = str(ref), redact(str(ref))
        self.follow = follow
        self.reconnect_max_s = reconnect_max_s
        self.timeout_s = timeout_s
        self.q: queue.Queue[Frame] = queue.Queue(maxsize=queue_frames)
        self.stop = threading.Event()
        self.dropped = 0           # frames discarded because the scorer was behind
        self.reconnects = 0
        self.read = 0              # frames read from the source
        self.fps: float | None = None     # what the container says, when plausible
        self.size: tuple[int, int] | None = None
        self.opened = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="pseudovad-capture", daemon=True)

    def start(self) -> LiveInput:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=self.timeout_s + 5)

    def _put(self, f: Frame) -> None:
        if self.follow:   # a file waits on disk: back-pressure, never drops
            while not self.stop.is_set():
                try:
                    self.q.put(f, timeout=0.2)
                    return
                except queue.Full:
                    continue
            return
        while True:
            try:
                self.q.put_nowait(f)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _loop(self) -> None:
        import cv2

        run, backoff, cap = 0, 0.5, None
        consumed = 0                            # follow: frames of the file already read
        try:
            while not self.stop.is_set():
                if cap is None:
                    cap = _open(self.ref, self.timeout_s)
                    if cap is None:      # a camera that is off, a file not written yet: keep trying
                        log.warning("%s: cannot open; retrying in %.1f s", self.name, backoff)
                        self.stop.wait(backoff)
                        backoff = min(backoff * 2, self.reconnect_max_s)
                        continue
                    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
                    self.fps = fps if 1.0 <= fps <= 240.0 else self.fps
                    if self.follow and consumed:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, consumed)
                        at = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                        for _ in range(max(0, consumed - at)):   # seeking is not exact in every container
                            if not cap.grab():
                                break
                    elif self.opened.is_set():
                        run += 1
                        self.reconnects += 1
                        log.warning("%s: reconnected (reconnect %d)", self.name, self.reconnects)
                    self.opened.set()
                ok, img = cap.read()
                if not ok or img is None:
                    cap.release()
                    cap = None
                    if not self.follow:
                        log.warning("%s: stream lost; reconnecting in %.1f s", self.name, backoff)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, self.reconnect_max_s) if not self.follow else 0.5
                    continue
                backoff = 0.5
                consumed += 1
                self.size = img.shape[:2]
                self._put(Frame(self.read, run, time.time(), img))
                self.read += 1
        except Exception as e:  # the scorer must learn why frames stopped
            self.error = f"{self.name}: capture failed: {type(e).__name__}: {e}"
        finally:
            if cap is not None:
                cap.release()

    def frames(self, poll_s: float = 0.2) -> Iterator[Frame | None]:
        """Frames as they come; None every `poll_s` without one (the caller checks its stop rules)."""
        while not (self.stop.is_set() and self.q.empty()):
            try:
                yield self.q.get(timeout=poll_s)
            except queue.Empty:
                if self.error:
                    raise DataError(self.error)
                yield None
