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

How a batch runs (the same for every caller): bf16 autocast where the device has bf16
(`inference.amp`, resolved like `train.amp` by `pseudovad.device`), the measured-fastest memory
format (`inference.memory_format`), a frozen copy of the model with BatchNorm folded
(`models.inference`), under `torch.inference_mode`; PSNR and error maps are computed in fp32
from the model's output. A batch's clips overlap (stride 1): its frames are converted to float
once, and either the model scores the clips from that window itself (LTGPA's video F:
`reconstruct_frame_of_clips`, its first layer shared) or the clips are strided views of it,
copied once into the model's layout.
"""
from __future__ import annotations

import contextlib
import logging
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
from pseudovad.device import Precision, resolve_amp, resolve_memory_format, torch_format
from pseudovad.errors import DataError
from pseudovad.evaluation.psnr import frame_psnr, to_unit
from pseudovad.geometry import ClipGeometry
from pseudovad.method_spec import get_method
from pseudovad.models.inference import inference_copy
from pseudovad.models.model_file import load_model

log = logging.getLogger(__name__)


@dataclass
class Scored:
    """One frame of a stream, with the PSNR of the clip that scores it."""

    index: int
    frame: np.ndarray              # uint8 (H, W) or (H, W, 3) at the model's size
    psnr: float
    error: np.ndarray | None       # squared error (H, W) in [0, 1] units of the clip that scores it; None when not asked


class Detector:
    """A model and the pre-processing its file records: geometry, value range, method, input size.

    `amp` (auto | bf16 | off) and `memory_format` (auto | channels_last | contiguous) are
    `inference.amp` / `inference.memory_format`; the library default is fp32, the commands pass
    params'. The model's weights are read when the first batch is scored (a frozen copy is made
    then), so a Detector over a live model is made for each evaluation of it.
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], device: torch.device | str = "cpu",
                 batch_size: int = 8, amp: str = "off", memory_format: str = "auto"):
        self.model = model
        self.meta = meta
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.method = meta["method"]
        self.spec = get_method(self.method)
        self.geometry = ClipGeometry.from_meta(meta)
        self.value_range = meta.get("value_range", "tanh")
        kind = self.spec.model_kind(meta.get("config", {}))
        self.image = kind == "image"                                    # one image in, one image out
        self.precision: Precision = resolve_amp(amp, self.device, "inference.amp")
        self.memory_format = resolve_memory_format(memory_format, kind, self.device)
        ndim = 4 if self.image else 5
        # the ViT flattens its input itself: only its patch embedding's weight changes layout
        self._weights_format = torch_format(self.memory_format, 4 if kind == "vit" else ndim)
        self._input_format = torch.contiguous_format if kind == "vit" else torch_format(self.memory_format, ndim)
        self._net: nn.Module | None = None

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", batch_size: int = 8,
             amp: str = "off", memory_format: str = "auto") -> Detector:
        """The detector in a local model.pt (`pseudovad.registry.resolve` turns an MLflow URI into one)."""
        model, meta = load_model(path, device)
        return cls(model, meta, device, batch_size, amp, memory_format)

    def describe(self) -> str:
        """How batches run, for a log line: precision (and why), memory format, batch size."""
        p = self.precision
        return (f"{'bf16 autocast' if p.dtype is not None else 'fp32'} ({p.reason}), "
                f"{self.memory_format} memory format, batches of {self.batch_size} on {self.device}")

    @property
    def net(self) -> nn.Module:
        """The network batches run through: a frozen copy of the model with BatchNorm folded, in
        the chosen memory format (`models.inference.inference_copy`), made on first use."""
        if self._net is None:
            # outside inference mode, so the copy's weights are ordinary tensors wherever it is used
            with torch.inference_mode(False), torch.no_grad():
                self._net = inference_copy(self.model, self._weights_format)
            log.debug("scoring: %s", self.describe())
        return self._net

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
        """Eval mode and inference mode inside (for a block; `stream` does the same per frame)."""
        with self.eval_mode(), torch.inference_mode():
            yield

    # one batch --------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) of the scored frame, (B, C, H, W), for clips (B, C, L, H, W) or,
        for the image variant, images (B, C, H, W). Both come back as contiguous fp32 (under bf16
        autocast the network's output is bf16, and a frame read out of a channels-last clip is
        strided: PSNR and error maps on such tensors measured twice as slow)."""
        net = self.net
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self._input_format)
        with self.precision.autocast(self.device):
            if self.image:
                pred, target = net(x), x
            else:
                pred, target = self.spec.scored_prediction(net, x, self.geometry.scored_index)
        return pred.float().contiguous(), target.float().contiguous()

    def psnr(self, x: torch.Tensor) -> torch.Tensor:
        """PSNR (dB, peak 1 on [0, 1], computed in fp32) of the scored frame of every clip of a
        batch, on the CPU."""
        return frame_psnr(*self.predict(x), self.value_range).cpu()

    def predict_clips(self, frame_at, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`predict` for the clips starting at consecutive frames `starts`, frames read with
        `frame_at(i)`. A network with `reconstruct_frame_of_clips` (LTGPA's video F) at frame step 1
        scores them from one window of frames, its first layer shared by the clips; anything else
        goes through `clips` and `predict`."""
        g = self.geometry
        net = self.net
        shared = getattr(net, "reconstruct_frame_of_clips", None)
        if self.image or g.frame_step != 1 or shared is None:
            return self.predict(self.clips(frame_at, starts))
        window = self._window(frame_at, starts)[None]                      # (1, C, N, H, W)
        window = window.to(self.device, non_blocking=True).contiguous(memory_format=self._input_format)
        with self.precision.autocast(self.device):
            pred = shared(window, g.clip_len, g.scored_index)
        t = g.scored_index
        target = window[0, :, t:t + len(starts)].transpose(0, 1)           # (B, C, H, W)
        return pred.float().contiguous(), target.float().contiguous()

    def _window(self, frame_at, starts: list[int]) -> torch.Tensor:
        """The frames the clips starting at consecutive `starts` span, as one (C, N, H, W) float tensor."""
        if starts[-1] - starts[0] != len(starts) - 1:
            raise ValueError(f"clip starts must be consecutive, got {starts}")
        frames = np.stack([frame_at(i) for i in range(starts[0], starts[-1] + self.geometry.span)])
        return to_tensor(frames, self.value_range)

    def clips(self, frame_at, starts: list[int]) -> torch.Tensor:
        """The clips starting at consecutive frames `starts` as one (B, C, L, H, W) float batch.

        Consecutive clips share all but one frame (a frame is in `clip_len` clips): the frames
        the batch spans are converted to float once, and the clips are strided views of them
        (`unfold`), which `predict` copies once into the model's memory format.
        """
        g = self.geometry
        x = self._window(frame_at, starts)                           # (C, N, H, W), N = B + span − 1
        views = x.unfold(1, g.span, 1)[..., ::g.frame_step]          # (C, B, H, W, L)
        return views.permute(1, 0, 4, 2, 3)

    def input_shape(self, batch: int = 2) -> tuple[int, ...]:
        """Shape of the tensor the model's forward() takes (`MethodSpec.input_frames`: LTGPA the
        whole clip, or an image; MAE-NCT the frames before the scored one)."""
        c = int(self.meta["channels"])
        h, w = (int(x) for x in self.meta["size"])
        if self.image:
            return (batch, c, h, w)
        g = self.geometry
        return (batch, c, self.spec.input_frames(g), h, w)

    # frames -----------------------------------------------------------------------------------
    @torch.inference_mode()   # as a decorator: on inside the generator only, not between yields
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
            pred, target = self.predict_clips(at, pending)
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
                batch_size: int = 8, video: str = "?", amp: str = "off", memory_format: str = "auto") -> np.ndarray:
    """`Detector.score_video` for a model and its meta."""
    return Detector(model, meta, device, batch_size, amp, memory_format).score_video(frames, video)


def score_videos(model: nn.Module, meta: dict, store: FrameStore, entries: Iterable[VideoEntry],
                 device: torch.device | str = "cpu", batch_size: int = 8, progress: bool = False,
                 amp: str = "off", memory_format: str = "auto") -> dict[str, np.ndarray]:
    """`Detector.score_videos` for a model and its meta (a tune trial's live model: its training
    mode is restored afterwards, and its weights are not touched)."""
    return Detector(model, meta, device, batch_size, amp, memory_format).score_videos(store, entries, progress)
