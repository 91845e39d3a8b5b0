"""What an operator lives with: alarms at the operating threshold of the calibrated score.

The papers' AUC normalises each test video by its own minimum and maximum, which a live camera
cannot do. `score` flags frames whose calibrated score (`pseudovad.calibration`) reaches a
threshold (default 0.99) and raises an alarm for each flagged run of at least `min_segment`
frames (`evaluation.segments.Segments`, the same rule). Measured here the same way:
- an anomalous event (a run of anomalous frames) is *found* when an alarm segment overlaps it:
  `event_recall` = found / events;
- an alarm segment that overlaps no anomalous frame is a *false alarm*: `false_alarms`, and per
  hour of normal footage where the frame rate is known;
- `flagged_share`: the share of normal frames inside an alarm segment (the frame-level false
  positive rate at the operating point).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from pseudovad.calibration import DEFAULT_THRESHOLD
from pseudovad.config import ScoreConfig
from pseudovad.evaluation.segments import Segments


def operating_point(score: ScoreConfig) -> tuple[float, int]:
    """The threshold and shortest alarm `score` uses by default (score.threshold, else 0.99;
    score.min_segment): what events found and false alarms are measured at."""
    return (DEFAULT_THRESHOLD if score.threshold is None else score.threshold), score.min_segment


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Runs of true / 1 as half-open [start, end) intervals."""
    y = np.concatenate([[0], np.asarray(flags, dtype=np.int8).ravel() != 0, [0]]).astype(np.int8)
    d = np.diff(y)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def alarm_segments(scores: np.ndarray, threshold: float, min_segment: int) -> list[tuple[int, int]]:
    """The [start, end) frame runs `score` raises an alarm for (score ≥ threshold, ≥ min_segment frames)."""
    segs = Segments(threshold, min_segment)
    for i, s in enumerate(np.asarray(scores, dtype=np.float64)):
        segs.push(None, i, float(s))
    segs.close()
    return [(r["start_frame"], r["end_frame"] + 1) for r in segs.found]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@dataclass
class Tally:
    """Counts over videos at one operating point; `summary` turns them into the reported numbers."""

    events: int = 0
    found: int = 0
    alarms: int = 0
    false_alarms: int = 0
    normal_frames: int = 0
    flagged_normal: int = 0
    normal_seconds: float = 0.0
    timed: bool = True             # every video's frame rate known (else no per-hour figure)

    def add(self, scores: np.ndarray, labels: np.ndarray, threshold: float, min_segment: int,
            fps: float | None, count: np.ndarray | None = None) -> None:
        """One video: calibrated `scores`, 0/1 `labels`; `count` (bool per frame, default all)
        says which frames count as normal footage (e.g. frames a clip scores)."""
        labels = np.asarray(labels).astype(bool)
        count = np.ones(len(labels), bool) if count is None else np.asarray(count, bool)
        segs = alarm_segments(scores, threshold, min_segment)
        events = runs(labels)
        self.events += len(events)
        self.found += sum(any(_overlaps(e, s) for s in segs) for e in events)
        self.alarms += len(segs)
        self.false_alarms += sum(not labels[a:b].any() for a, b in segs)
        flagged = np.zeros(len(labels), bool)
        for a, b in segs:
            flagged[a:b] = True
        normal = ~labels & count
        self.normal_frames += int(normal.sum())
        self.flagged_normal += int((flagged & normal).sum())
        if fps:
            self.normal_seconds += float(normal.sum()) / fps
        else:
            self.timed = False

    def summary(self, prefix: str = "") -> dict[str, float | int | None]:
        hours = self.normal_seconds / 3600.0 if self.timed else None
        return {
            f"{prefix}events": self.events,
            f"{prefix}events_found": self.found,
            f"{prefix}event_recall": self.found / self.events if self.events else None,
            f"{prefix}false_alarms": self.false_alarms,
            f"{prefix}false_alarms_per_hour": self.false_alarms / hours if hours else None,
            f"{prefix}flagged_share": self.flagged_normal / self.normal_frames if self.normal_frames else None,
            f"{prefix}normal_frames": self.normal_frames,
            f"{prefix}normal_hours": hours,
        }


def at_operating_point(scores: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], threshold: float,
                       min_segment: int, fps: Mapping[str, float | None], prefix: str = "",
                       counted: Mapping[str, np.ndarray] | None = None) -> dict:
    """`Tally.summary` over videos (calibrated scores and 0/1 labels per video id); `counted`
    (bool per frame, per video id; default all) says which frames count as normal footage (the
    evaluation protocol's counted frames)."""
    t = Tally()
    for v in labels:
        t.add(scores[v], labels[v], threshold, min_segment, fps.get(v), None if counted is None else counted[v])
    return t.summary(prefix)
