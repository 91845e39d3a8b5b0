"""Flagged segments and a bounded timeline of a score stream, for footage of any length.

`score` decides frame by frame, while the video streams through, which frames belong to an
anomalous segment (a run of scores ≥ threshold long enough to count) and keeps a timeline for
the figure whose size does not grow with the video.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


class Segments:
    """score ≥ threshold runs of at least `min_len` frames, decided with min_len frames of lookahead.

    push() returns the (item, flagged) pairs that are final; items of a run still shorter than
    min_len wait (so memory stays bounded by min_len items). `on_open(run)` is called when a run
    reaches min_len (the moment it counts: a live alert), `on_close(run)` when a counted run ends;
    `keep=False` (a live stream) keeps only the number of runs found, not the runs.
    """

    def __init__(self, threshold: float | None, min_len: int, on_open: Callable[[dict], None] | None = None,
                 on_close: Callable[[dict], None] | None = None, keep: bool = True):
        self.threshold = threshold
        self.min_len = min_len
        self.waiting: list[tuple[Any, int, float]] = []
        self.run: dict[str, Any] | None = None
        self.found: list[dict[str, Any]] = []
        self.count = 0
        self.on_open, self.on_close, self.keep = on_open, on_close, keep

    def _close(self) -> None:
        if self.run is not None and self.run["frames"] >= self.min_len:
            self.count += 1
            if self.keep:
                self.found.append(self.run)
            if self.on_close:
                self.on_close(self.run)
        self.run = None

    def push(self, item: Any, index: int, score: float, t: float | None = None) -> list[tuple[Any, bool]]:
        above = self.threshold is not None and score >= self.threshold
        if not above:
            out = [(it, False) for it, _, _ in self.waiting]
            self.waiting = []
            self._close()
            return out + [(item, False)]
        if self.run is None:
            self.run = {"start_frame": index, "end_frame": index, "frames": 0, "peak_score": score, "peak_frame": index}
            if t is not None:
                self.run.update(start_t=t, end_t=t, peak_t=t)
        r = self.run
        r["end_frame"] = index
        r["frames"] += 1
        if t is not None:
            r["end_t"] = t
        if score > r["peak_score"]:
            r["peak_score"], r["peak_frame"] = score, index
            if t is not None:
                r["peak_t"] = t
        if r["frames"] == self.min_len and self.on_open:
            self.on_open(r)
        if r["frames"] < self.min_len:
            self.waiting.append((item, index, score))
            return []
        out = [(it, True) for it, _, _ in self.waiting] + [(item, True)]
        self.waiting = []
        return out

    def close(self) -> list[tuple[Any, bool]]:
        out = [(it, False) for it, _, _ in self.waiting]
        self.waiting = []
        self._close()
        return out


class Timeline:
    """Per-bin min / mean / max of the score with at most `bins` bins (bin width doubles when full)."""

    def __init__(self, bins: int = 2048):
        self.cap = bins
        self.width = 1
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.sum: list[float] = []
        self.n: list[int] = []

    def add(self, score: float) -> None:
        if self.n and self.n[-1] < self.width:
            self.lo[-1] = min(self.lo[-1], score)
            self.hi[-1] = max(self.hi[-1], score)
            self.sum[-1] += score
            self.n[-1] += 1
            return
        if len(self.n) == self.cap:
            for a in (self.lo, self.hi, self.sum, self.n):
                pairs = [a[i:i + 2] for i in range(0, len(a), 2)]
                a[:] = [(min if a is self.lo else max if a is self.hi else sum)(p) for p in pairs]
            self.width *= 2
        self.lo.append(score)
        self.hi.append(score)
        self.sum.append(score)
        self.n.append(1)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = np.asarray(self.n, dtype=np.float64)
        start = np.concatenate([[0], np.cumsum(n)[:-1]]) if len(n) else n
        return start + (n - 1) / 2, np.asarray(self.lo), np.asarray(self.sum) / np.maximum(n, 1), np.asarray(self.hi)
