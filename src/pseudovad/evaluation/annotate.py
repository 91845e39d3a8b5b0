"""The annotated video `score --video` writes: each frame with its error heatmap and a score bar.

What an operator watches to see *where* in the picture the detector saw something odd, not only
when; written while the footage streams, one frame at a time.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pseudovad.errors import DataError
from pseudovad.evaluation.streaming import Scored


class Annotator:
    """Frames at the model's size (upscaled to ≥ 320 px wide), error heatmap overlay, score bar."""

    BAR = 28

    def __init__(self, path: Path, size: tuple[int, int], fps: float | None, threshold: float | None):
        import cv2

        h, w = size
        self.k = max(1, math.ceil(320 / w))
        self.size = (w * self.k, h * self.k + self.BAR)
        self.threshold = threshold
        fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
        self.path = path
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps or 10.0), self.size)
        if not self.writer.isOpened():
            raise DataError(f"{path}: OpenCV cannot write this video format (use .mp4 or .avi)")

    def write(self, s: Scored, score: float, flagged: bool) -> None:
        import cv2

        f = s.frame
        bgr = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
        if s.error is not None:
            e = np.clip(np.sqrt(s.error) * 4.0, 0.0, 1.0)              # |error| ×4, so small errors show
            heat = cv2.applyColorMap((e * 255).astype(np.uint8), cv2.COLORMAP_JET)
            a = (0.6 * e)[..., None]
            bgr = (bgr * (1 - a) + heat * a).astype(np.uint8)
        w, h = self.size
        img = np.zeros((h, w, 3), np.uint8)
        img[:h - self.BAR] = cv2.resize(bgr, (w, h - self.BAR), interpolation=cv2.INTER_NEAREST)
        color = (40, 40, 230) if flagged else (60, 180, 60)
        y0 = h - self.BAR
        cv2.rectangle(img, (0, y0 + 2), (int(round(np.clip(score, 0, 1) * (w - 1))), y0 + 10), color, -1)
        if self.threshold is not None:
            tx = int(round(self.threshold * (w - 1)))
            cv2.line(img, (tx, y0), (tx, y0 + 12), (255, 255, 255), 1)
        cv2.putText(img, f"#{s.index} score {score:.2f} psnr {s.psnr:.1f}{'  ANOMALY' if flagged else ''}",
                    (4, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color if flagged else (230, 230, 230), 1, cv2.LINE_AA)
        if flagged:
            cv2.rectangle(img, (0, 0), (w - 1, h - self.BAR - 1), color, 2)
        self.writer.write(img)

    def close(self) -> None:
        self.writer.release()
