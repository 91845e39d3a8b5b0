"""Streaming PSNR scores over test videos: one video in memory at a time, batched, no grad.

Every clip with stride 1 (`ClipGeometry.starts(T)`) is scored on its scored
frame (LTGPA: frame `scored_index` of the clip, the 9th of 16; MAE-NCT: the predicted next frame),
so clip s scores frame f = s + scored_index · frame_step and consecutive clips score consecutive
frames. Frames the model never scores — the first `scored_index · frame_step` frames, before a full
clip fits, and the last ones after the last clip — take the score of the nearest scored frame
(the first or last clip's), so every test frame has a score and the labels line up one to one.
Memory is bounded by one batch of clips plus one float per frame of the current video.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pseudovad.data.clips import to_tensor
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import DataError
from pseudovad.evaluation.psnr import frame_psnr, to_unit
from pseudovad.geometry import ClipGeometry
from pseudovad.models import scored_prediction


def check_compatible(meta: dict, entry: VideoEntry, where: str = "") -> None:
    """The store's frames must have the size and channels the model was trained on."""
    h, w = (int(x) for x in meta["size"])
    c = int(meta["channels"])
    if (entry.height, entry.width, entry.channels) != (h, w, c):
        raise DataError(f"{where or 'frame store'}: video {entry.id} is {entry.height}×{entry.width}×{entry.channels} "
                        f"but the model expects {h}×{w}×{c} (extract with data.size=[{h}, {w}] data.channels={c})")


def fill_edges(n_frames: int, first: int, clip_psnr: np.ndarray) -> np.ndarray:
    """Per-frame scores from per-clip scores whose scored frames are first, first+1, ….

    Frames before `first` take clip 0's score, frames after the last scored one the last clip's.
    """
    clip_psnr = np.asarray(clip_psnr, dtype=np.float64)
    if clip_psnr.size == 0:
        raise ValueError("no clip scores")
    if first < 0 or first + clip_psnr.size > n_frames:
        raise ValueError(f"{clip_psnr.size} clip scores from frame {first} do not fit {n_frames} frames")
    out = np.empty(n_frames, dtype=np.float64)
    out[:first] = clip_psnr[0]
    out[first:first + clip_psnr.size] = clip_psnr
    out[first + clip_psnr.size:] = clip_psnr[-1]
    return out


def _batches(frames: np.ndarray, starts: np.ndarray, g: ClipGeometry, value_range: str,
             batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(starts), batch_size):
        yield torch.stack([to_tensor(frames[g.window(s)], value_range) for s in starts[i:i + batch_size]])


@torch.no_grad()
def score_clips(model: nn.Module, meta: dict, frames: np.ndarray, device: torch.device | str,
                batch_size: int = 8, video: str = "?") -> tuple[int, np.ndarray]:
    """(first scored frame, PSNR of every stride-1 clip) for one video's uint8 frames."""
    g = ClipGeometry.from_meta(meta)
    starts = g.starts(len(frames))
    if len(starts) == 0:
        raise DataError(f"test video {video}: {len(frames)} frames, too short for one {g.span}-frame clip")
    vr = meta.get("value_range", "tanh")
    out = []
    for clip in _batches(frames, starts, g, vr, batch_size):
        pred, target = scored_prediction(model, clip.to(device), meta["method"], g.scored_index)
        out.append(frame_psnr(pred, target, vr).cpu().numpy())
    return g.first_scored, np.concatenate(out).astype(np.float64)


def score_video(model: nn.Module, meta: dict, frames: np.ndarray, device: torch.device | str,
                batch_size: int = 8, video: str = "?") -> np.ndarray:
    """PSNR (dB) for every frame of one video, edge frames filled as in the module doc."""
    first, clip_psnr = score_clips(model, meta, frames, device, batch_size, video)
    return fill_edges(len(frames), first, clip_psnr)


def score_videos(model: nn.Module, meta: dict, store: FrameStore, entries: Iterable[VideoEntry],
                 device: torch.device | str = "cpu", batch_size: int = 8, progress: bool = False
                 ) -> dict[str, np.ndarray]:
    """{video id: per-frame PSNR} for the given store entries, one video in memory at a time.

    Usable in-process (Ray Tune trials score their validation videos with the live model): the
    model is switched to eval mode and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        out: dict[str, np.ndarray] = {}
        entries = list(entries)
        for e in tqdm(entries, desc="evaluate", unit="video", disable=not progress):
            check_compatible(meta, e, str(store.root))
            out[e.id] = score_video(model, meta, store.array(e), device, batch_size, e.id)
        return out
    finally:
        model.train(was_training)


@torch.no_grad()
def frame_views(model: nn.Module, meta: dict, frames: np.ndarray, frame: int, device: torch.device | str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(input, prediction) of one frame as float (H, W[, 3]) in [0, 1], for the qualitative figure.

    Uses the clip that scored `frame` (or the nearest one, for edge frames: the same clip whose
    score the frame carries).
    """
    g = ClipGeometry.from_meta(meta)
    starts = g.starts(len(frames))
    if len(starts) == 0:
        raise DataError(f"{len(frames)} frames, too short for one clip")
    s = int(np.clip(frame - g.first_scored, starts[0], starts[-1]))
    vr = meta.get("value_range", "tanh")
    clip = to_tensor(frames[g.window(s)], vr).unsqueeze(0).to(device)
    was_training = model.training
    model.eval()
    try:
        pred, target = scored_prediction(model, clip, meta["method"], g.scored_index)
    finally:
        model.train(was_training)

    def img(x: torch.Tensor) -> np.ndarray:
        a = to_unit(x[0].float(), vr).clamp(0, 1).cpu().numpy()   # (C, H, W)
        return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

    return img(target), img(pred)
