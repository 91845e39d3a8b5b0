"""LNTRA's skip-frame pseudo anomalies (Astrid et al. 2021; STEAL uses the same clips).

A pseudo clip is `clip_len` frames taken every k-th frame of the footage, k drawn uniformly
from `jumps` per clip: the scene moves k times faster than normal. Its target is the normal
clip from the same first frame (the first `clip_len` frames of the same window).

The training dataset hands the method a longer window per clip (`window_len` frames, the
stride-1 clip followed by what the largest jump needs) and, per clip, how many of those frames
are real footage (`reach`); the rest is padding past the end of the footage the clip may use
(the end of its video, or the start of the held-out validation tail). A clip whose drawn jump
does not fit its reach is left out of the pseudo batch and counted (`n_skip_dropped`): it is
not re-drawn with a smaller jump, so the jumps that are used stay uniform over `jumps`, and
not re-drawn at another start (LNTRA's released loader does that), which would change the
epoch's data order.
"""
from __future__ import annotations

import torch


def window_len(clip_len: int, jumps: list[int]) -> int:
    """Frames (at the clip's frame step) a clip must carry so that the largest jump fits."""
    return (clip_len - 1) * max(jumps) + 1


def fits(reach: torch.Tensor, clip_len: int, jump: torch.Tensor) -> torch.Tensor:
    """Bool per clip: a clip with `reach` real frames can be sampled with `jump`."""
    return (clip_len - 1) * jump + 1 <= reach


def skip_clip(window: torch.Tensor, jump: int, clip_len: int) -> torch.Tensor:
    """Frames 0, k, 2k, … of one window (C, T, H, W) or of a batch of them (B, C, T, H, W)."""
    return window[..., 0:(clip_len - 1) * jump + 1:jump, :, :]


def _dense_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A dense copy in `like`'s memory format (channels-last batches stay channels-last)."""
    if like.dim() == 5 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last_3d):
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.contiguous()


class SkipFrames:
    """`make(window, reach, gen) -> (x_in, target, kept, jumps)` for a batch of windows.

    x_in: (K, C, L, H, W) skip clips of the K clips whose jump fits; target: their stride-1
    clips; kept: bool (B,); jumps: the drawn jump of every clip (B,), used or not.
    """

    def __init__(self, clip_len: int, jumps: list[int]):
        if not jumps or min(jumps) < 2:
            raise ValueError(f"skip-frame jumps must be ≥ 2, got {jumps}")
        self.clip_len = clip_len
        self.jumps = torch.tensor(list(jumps), dtype=torch.long)

    @property
    def window_len(self) -> int:
        return window_len(self.clip_len, self.jumps.tolist())

    def normal(self, window: torch.Tensor) -> torch.Tensor:
        """The stride-1 clips (B, C, L, H, W) at the head of the windows."""
        return _dense_like(window[:, :, :self.clip_len], window)

    def draw(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """One jump per clip, uniform over `jumps`, always `batch` draws (resume replays them)."""
        return self.jumps[torch.randint(len(self.jumps), (batch,), generator=gen)]

    def make(self, window: torch.Tensor, reach: torch.Tensor, gen: torch.Generator):
        if window.shape[2] < self.window_len:
            raise ValueError(f"skip-frame windows need {self.window_len} frames, got {window.shape[2]}")
        jumps = self.draw(window.shape[0], gen)
        kept = fits(reach.cpu().long(), self.clip_len, jumps)
        rows = kept.nonzero().flatten().tolist()
        if not rows:
            return None, None, kept, jumps
        x_in = torch.stack([skip_clip(window[b], int(jumps[b]), self.clip_len) for b in rows])
        target = window[rows, :, :self.clip_len]
        return _dense_like(x_in, window), _dense_like(target, window), kept, jumps
