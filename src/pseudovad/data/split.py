"""Splitting each training video by time: the frames a model learns from, the frames it is
calibrated on, and the frames nobody touches until the label-free check.

    [ train ............ | validation | held out ]      one training video, frame 0 → T
      learned from         calibration   evaluate's label-free check (false alarms, injected anomalies)

Held-out footage is the *end* of each video (what comes after everything the model saw, as live
footage would), never frames drawn at random beside training frames: neighbouring frames are
near copies, so a random split would measure memory, not generalisation. Validation sits between
the two so that the check also tests the calibration on footage it was not fitted to (on the
calibration tail itself, 1 − threshold of the frames are flagged by construction).

A part is kept only when it holds at least one clip span (`span`) of frames and leaves the
training part one span too; a video too short for a part simply has none (all its frames train).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from pseudovad.data.store import VideoEntry


@dataclass(frozen=True)
class VideoSplit:
    """One training video's frame ranges, half-open: [0, train_end), [train_end, val_end), [val_end, frames)."""

    video: str
    frames: int
    train_end: int
    val_end: int

    @property
    def train(self) -> tuple[int, int]:
        return 0, self.train_end

    @property
    def validation(self) -> tuple[int, int]:
        return self.train_end, self.val_end

    @property
    def held_out(self) -> tuple[int, int]:
        return self.val_end, self.frames


def _tail(frames: int, fraction: float, span: int) -> int:
    """Frames a tail of `fraction` of `frames` keeps: 0 unless both it and what precedes it hold a span."""
    n = int(round(frames * fraction))
    return n if n >= span and frames - n >= span else 0


def split_video(entry: VideoEntry, val_fraction: float, holdout_fraction: float, span: int) -> VideoSplit:
    """The time split of one video (module doc); both fractions are shares of the whole video."""
    hold = _tail(entry.frames, holdout_fraction, span)
    rest = entry.frames - hold
    n_val = int(round(entry.frames * val_fraction))
    val = n_val if n_val >= span and rest - n_val >= span else 0
    return VideoSplit(entry.id, entry.frames, rest - val, rest)


def split_videos(entries: Iterable[VideoEntry], val_fraction: float, holdout_fraction: float,
                 span: int) -> list[VideoSplit]:
    return [split_video(e, val_fraction, holdout_fraction, span) for e in entries]


def shortest_holdout_video(holdout_fraction: float, span: int) -> int:
    """The fewest frames a video needs for a held-out tail of `holdout_fraction` (for messages)."""
    if holdout_fraction <= 0:
        return 0
    n = span
    while _tail(n, holdout_fraction, span) == 0 and n < 10 ** 7:
        n += 1
    return n
