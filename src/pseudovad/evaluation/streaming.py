"""The scoring engine: a trained detector turns frames into per-frame PSNR, in constant memory.

`Detector` is a loaded model together with what its model file says about its input (clip
geometry, value range, method), so `evaluate`, `score`, Ray Tune trials and train's validation
PSNR all score frames the same way. `Detector.stream` takes any iterable of frames (a video
file being decoded, a camera) and keeps one batch of clips in memory; `score_video` /
`score_videos` are that stream over a video already in memory or in the frame store.

Every clip with stride 1 (`ClipGeometry.starts(T)`) is scored on its scored frame (LTGPA: frame
`scored_index` of the clip, the 9th of 16; MAE-NCT: the predicted next frame), so clip s scores
frame f = s + scored_index · frame_step and consecutive clips score consecutive frames. Frames
the model never scores — the first `scored_index · frame_step` frames, before a full clip fits,
and the last ones after the last clip — take the score of the nearest scored frame (the first or
last clip's), so every test frame has a score and the labels line up one to one.
"""
from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

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
from pseudovad.models.model_file import load_model


@dataclass
class Scored:
    """One frame of a stream, with the PSNR of the clip that scores it."""

    index: int
    frame: np.ndarray              # uint8 (H, W) or (H, W, 3) at the model's size
    psnr: float
    error: np.ndarray | None       # squared error (H, W) in [0, 1] units of the clip that scores it; None when not asked


class Detector:
    """A model and the pre-processing its file records: geometry, value range, method, input size."""

    def __init__(self, model: nn.Module, meta: dict[str, Any], device: torch.device | str = "cpu",
                 batch_size: int = 8):
        self.model = model
        self.meta = meta
        self.device = device
        self.batch_size = batch_size
        self.method = meta["method"]
        self.geometry = ClipGeometry.from_meta(meta)
        self.value_range = meta.get("value_range", "tanh")
        variant = meta.get("config", {}).get("model", {}).get("ltgpa", {}).get("variant", "video")
        self.image = self.method == "ltgpa" and variant == "image"     # one image in, one image out

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", batch_size: int = 8) -> Detector:
        """The detector in a local model.pt (`pseudovad.registry.resolve` turns an MLflow URI into one)."""
        model, meta = load_model(path, device)
        return cls(model, meta, device, batch_size)

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode inside; the model's previous mode afterwards (a live model in training, e.g. a
        tune trial's, goes on training)."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Eval mode and no autograd inside (for a block; `stream` does the same per frame)."""
        with self.eval_mode(), torch.no_grad():
            yield

    # one batch --------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) of the scored frame, (B, C, H, W), for clips (B, C, L, H, W) or,
        for the image variant, images (B, C, H, W)."""
        x = x.to(self.device)
        if self.image:
            return self.model(x), x
        return scored_prediction(self.model, x, self.method, self.geometry.scored_index)

    def psnr(self, x: torch.Tensor) -> torch.Tensor:
        """PSNR (dB, peak 1 on [0, 1]) of the scored frame of every clip of a batch, on the CPU."""
        return frame_psnr(*self.predict(x), self.value_range).cpu()

    def input_shape(self, batch: int = 2) -> tuple[int, ...]:
        """Shape of the tensor the model's forward() takes: LTGPA the whole clip (or image),
        MAE-NCT the frames before the scored one."""
        c = int(self.meta["channels"])
        h, w = (int(x) for x in self.meta["size"])
        if self.image:
            return (batch, c, h, w)
        g = self.geometry
        return (batch, c, g.clip_len if self.method == "ltgpa" else g.scored_index, h, w)

    # frames -----------------------------------------------------------------------------------
    @torch.no_grad()      # as a decorator: autograd is off inside the generator only, not between yields
    def stream(self, frames: Iterable[np.ndarray], errors: bool = False, name: str = "footage") -> Iterator[Scored]:
        """Every frame in order with its PSNR; memory: (clip span + batch − 1) frames.

        Clip s (frames s, s+step, …) scores frame s + scored_index·step; edge frames carry the
        nearest scored frame's PSNR (module doc). `errors`: also the squared-error map of each
        frame's clip (the annotated video's heatmap; edge frames carry the nearest scored frame's,
        as they carry its PSNR). `name` is what a too-short error names.
        """
        g, vr, bs = self.geometry, self.value_range, self.batch_size
        buf: deque[np.ndarray] = deque(maxlen=g.span + bs - 1)
        seen = 0          # frames read so far
        emitted = 0       # next frame index to yield
        pending: list[int] = []
        last_psnr = None
        last_err = None

        def at(i: int) -> np.ndarray:
            return buf[i - (seen - len(buf))]

        def flush() -> Iterator[Scored]:
            nonlocal emitted, last_psnr, last_err
            clips = torch.stack([to_tensor(np.stack([at(s + j * g.frame_step) for j in range(g.clip_len)]), vr)
                                 for s in pending])
            pred, target = self.predict(clips)
            psnr = frame_psnr(pred, target, vr).cpu().numpy().astype(np.float64)
            err = None
            if errors:
                err = (to_unit(pred.float(), vr) - to_unit(target.float(), vr)).pow(2).mean(1).cpu().numpy()
            for k, s in enumerate(pending):
                f = s + g.first_scored
                e = None if err is None else err[k]
                while emitted < f:
                    yield Scored(emitted, at(emitted), float(psnr[k]), e)
                    emitted += 1
                yield Scored(f, at(f), float(psnr[k]), e)
                emitted = f + 1
                last_psnr, last_err = float(psnr[k]), e
            pending.clear()

        with self.eval_mode():
            for frame in frames:
                buf.append(frame)
                seen += 1
                if seen >= g.span:
                    pending.append(seen - g.span)
                    if len(pending) == bs:
                        yield from flush()
            if pending:
                yield from flush()
            if last_psnr is None:
                raise DataError(f"{name}: {seen} frames, too short for one {g.span}-frame clip of this model")
            while emitted < seen:
                yield Scored(emitted, at(emitted), last_psnr, last_err)
                emitted += 1

    def score_video(self, frames: np.ndarray, video: str = "?") -> np.ndarray:
        """PSNR (dB) for every frame of one video's uint8 frames, edge frames filled (module doc)."""
        return np.fromiter((s.psnr for s in self.stream(frames, name=f"test video {video}")),
                           dtype=np.float64, count=len(frames))

    def check_compatible(self, entry: VideoEntry, where: str = "") -> None:
        """The store's frames must have the size and channels the model was trained on."""
        h, w = (int(x) for x in self.meta["size"])
        c = int(self.meta["channels"])
        if (entry.height, entry.width, entry.channels) != (h, w, c):
            raise DataError(f"{where or 'frame store'}: video {entry.id} is {entry.height}×{entry.width}×"
                            f"{entry.channels} but the model expects {h}×{w}×{c} (extract with "
                            f"data.size=[{h}, {w}] data.channels={c})")

    def score_videos(self, store: FrameStore, entries: Iterable[VideoEntry], progress: bool = False
                     ) -> dict[str, np.ndarray]:
        """{video id: per-frame PSNR} for the given store entries, one video in memory at a time."""
        out: dict[str, np.ndarray] = {}
        for e in tqdm(list(entries), desc="evaluate", unit="video", disable=not progress):
            self.check_compatible(e, str(store.root))
            out[e.id] = self.score_video(store.array(e), e.id)
        return out

    def frame_views(self, frames: np.ndarray, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(input, prediction) of one frame as float (H, W[, 3]) in [0, 1], for the qualitative figure.

        Uses the clip that scored `frame` (or the nearest one, for edge frames: the same clip whose
        score the frame carries).
        """
        g = self.geometry
        starts = g.starts(len(frames))
        if len(starts) == 0:
            raise DataError(f"{len(frames)} frames, too short for one clip")
        s = int(np.clip(frame - g.first_scored, starts[0], starts[-1]))
        clip = to_tensor(frames[g.window(s)], self.value_range).unsqueeze(0)
        with self.evaluating():
            pred, target = self.predict(clip)

        def img(x: torch.Tensor) -> np.ndarray:
            a = to_unit(x[0].float(), self.value_range).clamp(0, 1).cpu().numpy()   # (C, H, W)
            return a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))

        return img(target), img(pred)


def fill_edges(n_frames: int, first: int, clip_psnr: np.ndarray) -> np.ndarray:
    """The edge rule on per-clip scores whose scored frames are first, first+1, … (what `stream`
    does frame by frame): frames before `first` take clip 0's score, frames after the last
    scored one the last clip's."""
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


def score_video(model: nn.Module, meta: dict, frames: np.ndarray, device: torch.device | str,
                batch_size: int = 8, video: str = "?") -> np.ndarray:
    """`Detector.score_video` for a model and its meta."""
    return Detector(model, meta, device, batch_size).score_video(frames, video)


def score_videos(model: nn.Module, meta: dict, store: FrameStore, entries: Iterable[VideoEntry],
                 device: torch.device | str = "cpu", batch_size: int = 8, progress: bool = False
                 ) -> dict[str, np.ndarray]:
    """`Detector.score_videos` for a model and its meta (a tune trial's live model: its training
    mode is restored afterwards)."""
    return Detector(model, meta, device, batch_size).score_videos(store, entries, progress)
