"""The annotated video `score --video` writes: the camera's own frames, marked where and when
the detector saw something it could not predict.

Drawn at the source's resolution (not the model's): the model's per-pixel prediction error is
smoothed, upsampled and laid over the picture only where it is high (a colour map from yellow to
red, with its legend), so normal footage stays untouched and an operator's eye goes to the odd
region. While a flagged segment is open the frame gets a red border and "ANOMALY"; every frame
shows its time (hh:mm:ss.ff: the position in a file, the wall clock on a live stream) and score,
and a score bar with the threshold mark runs along the bottom.
"""
from __future__ import annotations

import numpy as np

RED, GREEN, WHITE, BLACK = (36, 36, 235), (70, 190, 70), (245, 245, 245), (0, 0, 0)


def error_range(calib: dict | None) -> tuple[float, float]:
    """(lo, hi) of the overlay in |prediction − frame| on the [0, 1] brightness scale.

    lo is 2.5 × the RMS error of a median normal validation frame (PSNR = −20·log10(RMS)), at
    least 0.1: per-pixel errors are heavy-tailed, so on normal footage only the few worst pixels
    (edges of moving people) reach it, while an object the model cannot predict does. hi = lo +
    0.3 saturates the colour map. Without a calibration (min-max scores): 0.1 … 0.4.
    """
    lo = 0.1
    if calib and isinstance(calib.get("psnr_median"), (int, float)):
        lo = max(lo, 2.5 * 10.0 ** (-float(calib["psnr_median"]) / 20.0))
    return lo, lo + 0.3


def timestamp(seconds: float) -> str:
    """hh:mm:ss.ff (ff: hundredths of a second)."""
    cs = int(round(max(0.0, seconds) * 100))
    h, cs = divmod(cs, 360000)
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{h:02d}:{m:02d}:{s:02d}.{cs:02d}"


class Annotator:
    """Draws annotated BGR frames of one source size (H, W)."""

    def __init__(self, size: tuple[int, int], threshold: float | None, err_range: tuple[float, float]):
        import cv2

        self.h, self.w = size
        self.threshold = threshold
        self.lo, self.hi = err_range
        u = max(self.h, self.w * 3 // 4)                 # text and lines scale with the picture
        self.font = max(0.35, u / 640)
        self.thick = max(1, int(round(u / 360)))
        self.border = max(3, u // 60)
        self.bar = max(6, u // 40)
        # colour map: t = 0 (lo) yellow … t = 1 (hi) red; legend strip drawn once
        lut = cv2.applyColorMap(np.arange(255, -1, -1, dtype=np.uint8)[:, None], cv2.COLORMAP_AUTUMN)[:, 0]
        self.lut = lut.astype(np.float32)                 # (256, 3) BGR
        lw, lh = max(60, self.w // 6), max(6, self.bar)
        self.legend = np.repeat(self.lut[np.linspace(0, 255, lw).astype(int)][None], lh, 0).astype(np.uint8)

    def _text(self, img: np.ndarray, text: str, org: tuple[int, int], color, scale: float = 1.0) -> None:
        import cv2

        f, t = self.font * scale, self.thick
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, f, BLACK, t + 2, cv2.LINE_AA)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, f, color, t, cv2.LINE_AA)

    def _text_size(self, text: str, scale: float = 1.0) -> tuple[int, int]:
        import cv2

        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, self.font * scale, self.thick)
        return tw, th

    def overlay(self, img: np.ndarray, error: np.ndarray) -> None:
        """Lay the error map (squared error, model size) over `img` where |error| ≥ lo, in place."""
        import cv2

        e = np.sqrt(np.maximum(error, 0.0)).astype(np.float32)
        e = cv2.GaussianBlur(e, (0, 0), 1.0)              # one model pixel: no blocky single-pixel specks
        e = cv2.resize(e, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        mask = e >= self.lo
        if not mask.any():
            return
        t = np.clip((e[mask] - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        color = self.lut[(t * 255).astype(np.uint8)]
        a = (0.35 + 0.4 * t)[:, None]
        img[mask] = (img[mask] * (1.0 - a) + color * a).astype(np.uint8)

    def draw(self, frame: np.ndarray, error: np.ndarray | None, score: float, flagged: bool, when: str) -> np.ndarray:
        """The annotated copy of one source frame (BGR or gray uint8, the source's size)."""
        import cv2

        img = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
        if error is not None:
            self.overlay(img, error)
        h, w, pad = self.h, self.w, self.border + 2
        # score bar along the bottom, threshold tick
        y0 = h - self.bar
        img[y0:] = (img[y0:] * 0.4).astype(np.uint8)
        cv2.rectangle(img, (0, y0), (int(round(float(np.clip(score, 0, 1)) * (w - 1))), h - 1),
                      RED if flagged else GREEN, -1)
        if self.threshold is not None:
            tx = int(round(self.threshold * (w - 1)))
            cv2.line(img, (tx, y0 - 2), (tx, h - 1), WHITE, max(1, self.thick))
        # time and score, top left
        label = f"{when}  score {score:.2f}"
        _, th = self._text_size(label)
        self._text(img, label, (pad, pad + th), WHITE)
        # legend, bottom right above the bar
        lh, lw = self.legend.shape[:2]
        lx, ly = w - lw - pad, y0 - lh - pad
        if lx > 0 and ly > th * 3:
            img[ly:ly + lh, lx:lx + lw] = self.legend
            lo, hi = f"{self.lo:.2f}", f"{self.hi:.2f}+"
            small = 0.8
            _, sh = self._text_size(lo, small)
            self._text(img, lo, (lx, ly - 3), WHITE, small)
            hw, _ = self._text_size(hi, small)
            self._text(img, hi, (lx + lw - hw, ly - 3), WHITE, small)
            cap = "prediction error"
            cw, _ = self._text_size(cap, small)
            self._text(img, cap, (lx + (lw - cw) // 2, ly - sh - 8), WHITE, small)
        if flagged:
            cv2.rectangle(img, (0, 0), (w - 1, h - 1), RED, self.border)
            tag = "ANOMALY"
            tw, tth = self._text_size(tag, 1.3)
            self._text(img, tag, (w - tw - pad, pad + tth), RED, 1.3)
        return img
