"""Pixel-level localisation: ROC AUC of the per-pixel error maps against ground-truth masks.

The heatmaps `score` draws are the squared-error maps of the scored frames; this measures them.
Masks are an optional input (`data.pixel_masks`), one .npz for all test videos in the test
split's order (video ids sorted), as `../shared/data/ped2/testing/pixel_masks.npz` ships them:

  packed         uint8 (N, H, ceil(W/8)) = np.packbits(bool masks, axis=-1)   (or `masks`: bool (N, H, W))
  shape          [N, H, W]
  video_lengths  frames per test video, in order (they must match the frame store's counts)

Masks are brought to the model's frame size by area averaging: a model pixel is anomalous when
at least half of the source pixels it covers are. The AUC pools every pixel of every frame that
has its own error map (the edge frames a clip model never scores are left out), with the raw
squared error as the score: no per-video normalisation, one threshold for all pixels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from pseudovad.errors import DataError


def read_pixel_masks(path: str | Path, videos: Sequence[tuple[str, int]], key: str = "data.pixel_masks"
                     ) -> dict[str, np.ndarray]:
    """{video id: bool masks (frames, H, W)} from the .npz at `path`, split by `videos` [(id, frames)].

    Every problem is a DataError naming `key`, the file and what is wrong.
    """
    path = Path(path)
    where = f"{key}: {path}"
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    try:
        z = np.load(path, allow_pickle=False)
        names = set(z.files)
    except Exception as e:  # numpy raises several types for a file that is not an npz
        raise DataError(f"{where}: not a readable .npz ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    try:
        if "masks" in names:
            masks = np.asarray(z["masks"]).astype(bool)
        elif {"packed", "shape"} <= names:
            shape = [int(x) for x in np.asarray(z["shape"]).ravel()]
            packed = np.asarray(z["packed"])
            if len(shape) != 3 or packed.dtype != np.uint8 or packed.ndim != 3 or packed.shape[:2] != tuple(shape[:2]) \
                    or packed.shape[2] != (shape[2] + 7) // 8:
                raise DataError(f"{where}: 'packed' {packed.shape} {packed.dtype} does not fit 'shape' {shape} "
                                "(expected uint8 (N, H, ceil(W/8)) from np.packbits(masks, axis=-1))")
            masks = np.unpackbits(packed, axis=-1)[..., :shape[2]].astype(bool)
        else:
            raise DataError(f"{where}: needs 'packed' + 'shape' (np.packbits of bool masks) or 'masks'; "
                            f"found {', '.join(sorted(names)) or 'nothing'}")
        lengths = [int(x) for x in np.asarray(z["video_lengths"]).ravel()] if "video_lengths" in names else None
    except ValueError as e:
        raise DataError(f"{where}: unreadable array ({e})") from None
    if masks.ndim != 3:
        raise DataError(f"{where}: masks must be (frames, H, W), got shape {masks.shape}")
    want = [n for _, n in videos]
    if lengths is not None and lengths != want:
        raise DataError(f"{where}: video_lengths {lengths} do not match the test videos' frame counts {want}")
    if masks.shape[0] != sum(want):
        raise DataError(f"{where}: {masks.shape[0]} mask frames but the {len(want)} test videos have {sum(want)} frames")
    out, at = {}, 0
    for vid, n in videos:
        out[vid] = masks[at:at + n]
        at += n
    return out


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bool (N, h0, w0) → bool (N, H, W): area average, anomalous where ≥ half the covered pixels are."""
    h, w = size
    if masks.shape[1:] == (h, w):
        return masks.astype(bool)
    return np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5 for m in masks])


def pixel_auc(masks: Mapping[str, np.ndarray], errors: Mapping[str, Mapping[int, np.ndarray]]) -> float:
    """ROC AUC over all pixels of the frames that have an error map.

    `masks`: {video: bool (frames, H, W)} at the error maps' size; `errors`: {video: {frame: (H, W)}}.
    """
    ys, ss = [], []
    for v, per_frame in errors.items():
        if v not in masks:
            raise DataError(f"pixel masks: no masks for test video {v}")
        for f, e in per_frame.items():
            m = masks[v][f]
            if m.shape != e.shape:
                raise DataError(f"pixel masks: video {v} frame {f}: mask {m.shape} vs error map {e.shape}")
            ys.append(m.ravel())
            ss.append(np.asarray(e, dtype=np.float32).ravel())
    if not ys:
        raise DataError("pixel AUC: no error maps")
    y, s = np.concatenate(ys), np.concatenate(ss)
    if y.min() == y.max():
        raise DataError(f"pixel AUC needs normal and anomalous pixels; all {y.size} are "
                        f"{'anomalous' if y[0] else 'normal'}")
    return float(roc_auc_score(y, s))
