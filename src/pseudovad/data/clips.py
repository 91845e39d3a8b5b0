"""Clip datasets over the frame store.

A clip is `clip_len` frames taken every `frame_step` frames (`pseudovad.geometry`). Arrays
are memory-mapped, opened lazily in each DataLoader worker, and scaled on the fly:
video models see [-1, 1], image models [0, 1].
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch.utils.data import Dataset

from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import DataError
from pseudovad.geometry import ClipGeometry


def _scale(x: torch.Tensor, value_range: str) -> torch.Tensor:
    """uint8 → float32 in the model's range, in place after the one conversion (same values,
    bit for bit, as `x / 127.5 - 1`)."""
    x = x.to(torch.float32)
    return x.div_(127.5).sub_(1.0) if value_range == "tanh" else x.div_(255.0)


def to_tensor(frames: np.ndarray, value_range: str = "tanh") -> torch.Tensor:
    """uint8 (L, H, W[, C]) → float (C, L, H, W) in [-1, 1] ("tanh") or [0, 1] ("unit")."""
    x = torch.from_numpy(np.array(frames))  # copy the uint8 frames out of the memmap
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    return _scale(x.permute(3, 0, 1, 2), value_range)


class ClipDataset(Dataset):
    """All clips of a set of videos. Item: (clip (C, L, H, W) float, video index, start frame).

    With `lookahead` > 0 (a method that needs footage beyond the clip, `Method.lookahead`) an
    item is (window (C, L + lookahead, H, W), video index, start frame, reach): the clip followed
    by the next `lookahead` frames at the same frame step, and how many of the window's frames
    are footage. The clips are the same either way (the lookahead does not shorten a video);
    a window that runs past its span's end is padded with black frames, which `reach` excludes.
    """

    def __init__(self, store: FrameStore, entries: list[VideoEntry], clip_len: int, stride: int = 1,
                 frame_step: int = 1, value_range: str = "tanh",
                 spans: list[tuple[int, int]] | None = None, lookahead: int = 0):
        """`spans`: per entry, the [first, end) frame range clips (and windows) must lie in
        (default: whole video)."""
        self.store = store
        self.entries = entries
        # a training clip is served whole: which of its frames is scored is not the dataset's business
        self.geometry = ClipGeometry(clip_len, 0, frame_step)
        self.window = ClipGeometry(clip_len + lookahead, 0, frame_step)
        self.lookahead = lookahead
        self.value_range = value_range
        index = []
        ends = []
        for vi, e in enumerate(entries):
            lo, hi = spans[vi] if spans else (0, e.frames)
            ends.append(hi)
            for s in self.geometry.starts(hi - lo, stride):
                index.append((vi, lo + int(s)))
        if not index:
            what = "frame range" if spans else "video"
            raise DataError(f"{store.root}: no {what} is long enough for a {self.geometry.span}-frame clip")
        self.index = np.asarray(index, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)
        self._arrays: dict[int, np.ndarray] = {}

    def with_lookahead(self, lookahead: int) -> ClipDataset:
        """The same clips with another lookahead (0: plain clips, e.g. to calibrate on them)."""
        other = copy.copy(self)
        other.lookahead = lookahead
        other.window = ClipGeometry(self.geometry.clip_len + lookahead, 0, self.geometry.frame_step)
        other._arrays = {}
        return other

    def reach(self, i: int) -> int:
        """Frames of item i's window that are footage (≥ clip_len: the clip always is)."""
        vi, s = (int(v) for v in self.index[i])
        return min(self.window.clip_len, (int(self.ends[vi]) - 1 - s) // self.window.frame_step + 1)

    def _window(self, vi: int, s: int) -> np.ndarray:
        """The uint8 frames of the window at `s`, black-padded past the span's end."""
        frames = self._array(vi)[self.window.window(s)]
        n = min(len(frames), (int(self.ends[vi]) - 1 - s) // self.window.frame_step + 1)
        if n == self.window.clip_len:
            return frames
        out = np.zeros((self.window.clip_len, *frames.shape[1:]), dtype=frames.dtype)
        out[:n] = frames[:n]
        return out

    def __len__(self) -> int:
        return len(self.index)

    def _array(self, vi: int) -> np.ndarray:
        arr = self._arrays.get(vi)
        if arr is None:
            arr = self._arrays[vi] = self.store.array(self.entries[vi])
        return arr

    def __getitem__(self, i: int):
        vi, s = (int(v) for v in self.index[i])
        if self.lookahead:
            return to_tensor(self._window(vi, s), self.value_range), vi, s, self.reach(i)
        arr = self._array(vi)
        frames = arr[self.geometry.window(s)]
        return to_tensor(frames, self.value_range), vi, s

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        """Items `indices` already collated: (clips (B, C, L, H, W), video indices, start frames),
        and with a lookahead (windows, video indices, start frames, reaches).

        The training loader's fetch (training.loop): the uint8 frames of all clips are gathered
        into one array and converted to float once, instead of one float tensor per clip and a
        stacked copy of them all. Same values as collating `self[i]` for i in `indices`.
        """
        idx = np.asarray(indices, dtype=np.int64)
        rows = self.index[idx]
        if self.lookahead:
            u8 = np.stack([self._window(int(vi), int(s)) for vi, s in rows])
        else:
            u8 = np.stack([self._array(int(vi))[self.geometry.window(int(s))] for vi, s in rows])
        x = torch.from_numpy(u8)
        if x.ndim == 4:
            x = x.unsqueeze(-1)
        clips = _scale(x.permute(0, 4, 1, 2, 3), self.value_range)
        out = (clips, torch.from_numpy(rows[:, 0].copy()), torch.from_numpy(rows[:, 1].copy()))
        if self.lookahead:
            out += (torch.tensor([self.reach(int(i)) for i in idx]),)
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = {}  # memmaps are reopened in each worker
        return state
