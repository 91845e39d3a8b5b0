"""Synthetic anomalies injected into normal footage, each with its pixel mask: what evaluate's
label-free check asks a model to find when no labelled anomaly exists.

Three kinds of a different nature, so that a model is never graded only on the kind of pseudo
anomaly it was trained with (each method's `resembles` says which kind resembles which of its pseudo
anomalies):
  object      a foreign textured object pasted into the scene and moved across it
              (appearance and motion are both new; resembles LTGPA/LNTRA's moving patches)
  speed       a person-sized region (the one that moves most) played 3× faster from the event's
              first frame on: nothing new appears, only the motion is wrong (resembles LNTRA/STEAL's skipped frames, which speed up the whole clip)
  appearance  a still, local change of how part of the scene looks (a light, a shadow, a stain):
              no motion at all (resembles MAE-NCT's masked patches and LTGPA's noise, both local or
              global appearance damage)
Per video and kind, events of at most `EVENT_MAX` frames are placed inside the window of frames
the caller names (the frames a clip scores), one per slot of 2 × `EVENT_MAX` frames. Regions are
`SIZE` of the frame height tall. Pixels outside an event's mask are the input's, bit for bit; the
draws come from `numpy.random.default_rng([seed, kind, crc32(key)])`, so the same seed and key
give the same anomalies on every machine.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pseudovad.config import INJECT_KINDS
from pseudovad.errors import ConfigError, DataError
from pseudovad.method_spec import get_method, method_names

KINDS = INJECT_KINDS
SIZE = 0.25            # region height, as a share of the frame height (a person in UCSD's view)
EVENT_MAX = 40         # frames per event at most
SPEED = 3              # `speed`: the region plays this many frames per frame
FEATHER = 8            # soft edge around pasted regions, 1 px per FEATHER px of their smaller side
                       # (no hard seam to detect instead, and little of a small region blended away)



def check_kinds(kinds: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The kinds, or a ConfigError naming the unknown one."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ConfigError(f"evaluate.inject: unknown kind {', '.join(map(repr, unknown))} (known: {', '.join(KINDS)})")
    if not kinds:
        raise ConfigError(f"evaluate.inject: no kinds (known: {', '.join(KINDS)})")
    return tuple(kinds)


def resembled(method: str | None, pseudo_kind: str | None, p: float | None = None) -> str | None:
    """The injected kind a model's own pseudo anomalies resemble (its method's `resembles`), or
    None: none drawn (`p` 0), unlike all kinds, or a method this install does not know."""
    if p == 0 or str(method) not in method_names():
        return None
    return get_method(str(method)).resembles.get(str(pseudo_kind))


@dataclass(frozen=True)
class Injection:
    """Footage with injected anomalies of one kind: frames (a copy), where (`mask`), when (`events`)."""

    kind: str
    frames: np.ndarray                     # uint8, the input's shape
    mask: np.ndarray                       # bool (T, H, W): the only pixels that may differ from the input
    events: list[dict[str, Any]] = field(default_factory=list)   # start, end (frames [start, end)) and settings

    def labels(self) -> np.ndarray:
        """1 on the frames of an event, per frame."""
        y = np.zeros(len(self.frames), dtype=np.uint8)
        for e in self.events:
            y[e["start"]:e["end"]] = 1
        return y


def _rng(seed: int, kind: str, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, KINDS.index(kind), zlib.crc32(key.encode())])


def _slots(lo: int, hi: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """One event per slot of 2·EVENT_MAX frames of [lo, hi): half a slot long at most, at a random offset."""
    n = hi - lo
    if n < 2:
        raise DataError(f"{n} frame(s) to inject into: too few for an event (need 2)")
    count = max(1, n // (2 * EVENT_MAX))
    out = []
    for i in range(count):
        a, b = lo + i * n // count, lo + (i + 1) * n // count
        length = max(1, min(EVENT_MAX, (b - a) // 2))
        start = a + int(rng.integers(0, b - a - length + 1))
        out.append((start, start + length))
    return out


def _feather(h: int, w: int) -> int:
    return max(1, min(h, w) // FEATHER)


def _ellipse(h: int, w: int) -> np.ndarray:
    """A float alpha in [0, 1] of an ellipse filling h×w with a soft edge (0 at the border)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.sqrt(((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2)
    edge = _feather(h, w) / max(min(h, w) / 2, 1.0)
    return np.clip((1.0 - r) / edge, 0.0, 1.0)


def _box(h: int, w: int) -> np.ndarray:
    """A float alpha of an h×w rectangle with a soft edge."""
    f = _feather(h, w)
    ramp = lambda n: np.clip((np.minimum(np.arange(n), np.arange(n)[::-1]) + 1) / (f + 1), 0, 1)  # noqa: E731
    return np.outer(ramp(h), ramp(w))


def _paste(out: np.ndarray, mask: np.ndarray, t: int, y: int, x: int, alpha: np.ndarray, content: np.ndarray) -> None:
    """Blend `content` (h, w[, C], float) into frame t of `out` at (y, x) with `alpha`, clipped to
    the frame; pixels where alpha is 0 keep their value bit for bit."""
    H, W = out.shape[1:3]
    h, w = alpha.shape
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
    if y0 >= y1 or x0 >= x1:
        return
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    c = content[y0 - y:y1 - y, x0 - x:x1 - x]
    region = out[t, y0:y1, x0:x1].astype(np.float64)
    if region.ndim == 3:
        a3 = a[..., None]
        blended = a3 * (c if c.ndim == 3 else c[..., None]) + (1 - a3) * region
        on = np.broadcast_to(a3 > 0, region.shape)
    else:
        blended = a * c + (1 - a) * region
        on = a > 0
    new = np.where(on, np.clip(np.rint(blended), 0, 255), region).astype(np.uint8)
    out[t, y0:y1, x0:x1] = new
    mask[t, y0:y1, x0:x1] |= a > 0


def _object(frames: np.ndarray, out: np.ndarray, mask: np.ndarray, events: list[tuple[int, int]],
            rng: np.random.Generator) -> list[dict[str, Any]]:
    H, W = frames.shape[1:3]
    done = []
    for a, b in events:
        h = max(6, int(round(SIZE * H * rng.uniform(0.8, 1.1))))
        w = max(6, int(round(h * rng.uniform(0.6, 1.0))))
        mean = float(frames[a:b].mean())
        tone = 40.0 if mean > 128 else 215.0                       # far from the scene's brightness
        yy, xx = np.mgrid[0:h, 0:w]
        period = rng.uniform(3.0, 6.0)
        texture = tone + 35.0 * np.sign(np.sin(2 * np.pi * (yy + xx * rng.uniform(-1, 1)) / period))
        texture = texture + rng.normal(0, 8.0, (h, w))
        alpha = _ellipse(h, w)
        # a straight path that stays inside the frame: speed 1–2 px per frame at 64 rows, scaled
        speed = rng.uniform(1.0, 2.0) * H / 64.0
        angle = rng.uniform(0, 2 * np.pi)
        length = speed * max(b - a - 1, 1)
        dy, dx = np.sin(angle) * length, np.cos(angle) * length
        dy, dx = float(np.clip(dy, -(H - h), H - h)), float(np.clip(dx, -(W - w), W - w))
        y0 = rng.uniform(max(0, -dy), max(max(0, -dy), H - h - max(0, dy)))
        x0 = rng.uniform(max(0, -dx), max(max(0, -dx), W - w - max(0, dx)))
        for i, t in enumerate(range(a, b)):
            f = i / max(b - a - 1, 1)
            content = texture if frames.ndim == 3 else np.repeat(texture[..., None], frames.shape[3], -1)
            _paste(out, mask, t, int(round(y0 + f * dy)), int(round(x0 + f * dx)), alpha, content)
        done.append({"start": a, "end": b, "size": [h, w], "from": [round(y0), round(x0)],
                     "to": [round(y0 + dy), round(x0 + dx)]})
    return done


def _speed(frames: np.ndarray, out: np.ndarray, mask: np.ndarray, events: list[tuple[int, int]],
           rng: np.random.Generator) -> list[dict[str, Any]]:
    T, H, W = frames.shape[:3]
    h = max(6, int(round(SIZE * H)))
    w = max(4, h // 2)
    done = []
    for a, b in events:
        k = SPEED
        b = min(b, a + (T - a) // k)        # frame t shows frame a + k·(t − a + 1) − 1, which must exist
        if b - a < 1:
            k, b = 2, min(a + 1, T)
        src_end = min(T, a + k * (b - a))
        # the region that moves most in the frames it will show: a person, not the sky
        gray = frames[a:src_end].astype(np.float32)
        if gray.ndim == 4:
            gray = gray.mean(-1)
        motion = np.abs(np.diff(gray, axis=0)).mean(0) if len(gray) > 1 else np.zeros((H, W), np.float32)
        motion = cv2.boxFilter(motion, -1, (w, h), normalize=True, borderType=cv2.BORDER_CONSTANT)
        motion = motion + rng.uniform(0, 1e-6, motion.shape)       # a seeded tie-break on a still scene
        cy = int(np.clip(np.argmax(motion) // W, h // 2, H - (h - h // 2)))
        cx = int(np.clip(np.argmax(motion) % W, w // 2, W - (w - w // 2)))
        y, x = cy - h // 2, cx - w // 2
        alpha = _box(h, w)
        for t in range(a, b):
            src = frames[min(a + k * (t - a + 1) - 1, T - 1), y:y + h, x:x + w].astype(np.float64)
            _paste(out, mask, t, y, x, alpha, src)
        done.append({"start": a, "end": b, "box": [y, x, h, w], "speed": k})
    return done


def _appearance(frames: np.ndarray, out: np.ndarray, mask: np.ndarray, events: list[tuple[int, int]],
                rng: np.random.Generator) -> list[dict[str, Any]]:
    H, W = frames.shape[1:3]
    done = []
    for a, b in events:
        h = max(6, int(round(SIZE * H * rng.uniform(0.8, 1.2))))
        w = min(W, max(6, int(round(h * rng.uniform(0.8, 1.5)))))
        y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        alpha = _ellipse(h, w)
        local = float(frames[a:b, y:y + h, x:x + w].mean())
        shift = rng.uniform(50.0, 80.0) * (1 if local < 128 else -1)   # towards the far end: no clipping away
        for t in range(a, b):
            _paste(out, mask, t, y, x, alpha, frames[t, y:y + h, x:x + w].astype(np.float64) + shift)
        done.append({"start": a, "end": b, "box": [y, x, h, w], "shift": round(shift, 1)})
    return done


_MAKERS = {"object": _object, "speed": _speed, "appearance": _appearance}
assert set(_MAKERS) == set(KINDS)


def inject(frames: np.ndarray, kind: str, seed: int, key: str, window: tuple[int, int] | None = None) -> Injection:
    """`frames` (uint8 (T, H, W[, C])) with anomalies of `kind` inside `window` (frames [lo, hi),
    default all), drawn from (seed, kind, key): the same arguments give the same result."""
    check_kinds([kind])
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise DataError(f"inject: expected uint8 frames (T, H, W[, C]), got {frames.dtype} {frames.shape}")
    lo, hi = window if window is not None else (0, len(frames))
    if not 0 <= lo < hi <= len(frames):
        raise DataError(f"inject: window [{lo}, {hi}) does not fit {len(frames)} frames")
    rng = _rng(seed, kind, key)
    out = frames.copy()
    mask = np.zeros(frames.shape[:3], dtype=bool)
    events = _MAKERS[kind](frames, out, mask, _slots(lo, hi, rng), rng)
    return Injection(kind, out, mask, events)
