"""Clip geometry: which frames one clip covers, and which of them it scores.

Training clips, evaluation, live scoring and the model file all need the same three numbers and
what follows from them (the frames a clip spans, the first frame a clip can score). They are
derived here only: from the params when a model is trained (`from_config`), and from the model
file afterwards (`from_meta`), so a model scores footage exactly as it was trained, whatever
params.yaml says today.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pseudovad.config import Config


@dataclass(frozen=True)
class ClipGeometry:
    """A clip is `clip_len` frames taken every `frame_step` frames; frame `scored_index` of the
    clip is the one it scores (LTGPA: the 9th of 16; MAE-NCT: the predicted next frame)."""

    clip_len: int
    scored_index: int
    frame_step: int = 1

    @property
    def span(self) -> int:
        """Frames of the video one clip covers."""
        return (self.clip_len - 1) * self.frame_step + 1

    @property
    def first_scored(self) -> int:
        """The first frame of a video a clip can score (clip 0's scored frame)."""
        return self.scored_index * self.frame_step

    def window(self, start: int) -> slice:
        """The clip starting at frame `start`, as a slice of the video's frames."""
        return slice(start, start + self.span, self.frame_step)

    def starts(self, n_frames: int, stride: int = 1) -> np.ndarray:
        """First frames of the clips that fit a video of `n_frames` frames, `stride` apart."""
        if n_frames < self.span:
            return np.zeros(0, dtype=np.int64)
        return np.arange(0, n_frames - self.span + 1, stride, dtype=np.int64)

    def scored_frames(self, n_frames: int) -> slice:
        """The frames of a video of `n_frames` frames that a stride-1 clip scores: the first
        `first_scored` and the last `span − 1 − first_scored` have none (the official protocol
        leaves them out of every AUC; `evaluation.protocol`)."""
        n = len(self.starts(n_frames))
        return slice(self.first_scored, self.first_scored + n)

    @classmethod
    def from_config(cls, cfg: Config) -> ClipGeometry:
        """The configured method's geometry (its spec's: LTGPA reconstructs `data.clip_len` frames
        and scores frame `data.scored_index`; MAE-NCT reads `model.mae.in_frames` frames and scores
        the next)."""
        from pseudovad.method_spec import get_method

        return cls(*get_method(cfg.model.method).geometry(cfg), cfg.data.frame_step)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ClipGeometry:
        """The geometry a model file was trained with (files older than `frame_step` used 1)."""
        return cls(int(meta["clip_len"]), int(meta["scored_index"]), int(meta.get("frame_step", 1)))

    def to_meta(self) -> dict[str, int]:
        """The model file's fields for it (`from_meta` reads them back)."""
        return {"clip_len": self.clip_len, "scored_index": self.scored_index, "frame_step": self.frame_step}
