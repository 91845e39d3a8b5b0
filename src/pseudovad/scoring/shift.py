"""Domain shift: is this footage like anything the model was calibrated on?

A calibrated score says how a frame compares with normal footage *of the training scenes*. Point
the model at another camera and every frame is unlike the training scene: PSNR drops across the
whole picture, every frame scores 1, and the output is one endless "anomaly" that means nothing.
An anomaly in the right scene is local (a bike, a cart), so its frames sit a little below the
normal range; a different scene sits far below it. The check:

    margin  = max(psnr_q95 − psnr_q05 of the calibration, score.shift_margin_db = 3 dB)
    outside = frames with PSNR < psnr_min − margin  or  PSNR > psnr_max + margin
    shift   = outside / scored frames ≥ score.shift_share (default 0.5)

("most frames further below the worst normal frame than normal PSNR varies, and by at least
3 dB: twice its squared error"; a validation tail of a few dozen frames can be far narrower than
the scene's normal variation, and Ped2's own test videos sit up to 1 dB below such a minimum,
while another scene sits 4–8 dB below: benchmarks/RESULTS.md, `score_shift.py`; above the
best normal frame: a static, blank or covered picture the model reconstructs trivially, where no
anomaly can score high). The frame size is not compared: a model file does not record the size
of the footage it was trained on (only its input size, which training footage may have been
squashed to). Counts live in a fixed histogram, so the check runs in constant memory live.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_BIN_DB = 0.05
_MAX_DB = 100.0


class ShiftCheck:
    """Accumulates per-frame PSNR; `result()` says whether the footage is outside the calibration."""

    def __init__(self, calib: dict[str, Any], share: float, margin_db: float = 3.0):
        self.calib = calib
        self.share = share
        self.lo, self.hi = float(calib["psnr_min"]), float(calib["psnr_max"])
        self.margin = max(float(calib["psnr_q95"]) - float(calib["psnr_q05"]), margin_db)
        self.hist = np.zeros(int(_MAX_DB / _BIN_DB) + 1, dtype=np.int64)
        self.n = self.below = self.above = 0

    def add(self, psnr: float) -> None:
        if not np.isfinite(psnr):  # a perfect reconstruction (inf dB): above anything
            psnr = _MAX_DB
        self.n += 1
        self.below += psnr < self.lo - self.margin
        self.above += psnr > self.hi + self.margin
        self.hist[int(np.clip(psnr, 0.0, _MAX_DB) / _BIN_DB)] += 1

    def median(self) -> float | None:
        if self.n == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self.hist), (self.n + 1) // 2))
        return round((k + 0.5) * _BIN_DB, 2)

    def result(self) -> dict[str, Any]:
        """{"shift": bool, "reasons": [...], "message": one line or None, and the numbers}."""
        n = max(self.n, 1)
        below, above = self.below / n, self.above / n
        med = self.median()
        reasons = []
        if self.n and below >= self.share:
            reasons.append(f"{below:.0%} of {self.n} frames have PSNR below {self.lo - self.margin:.1f} dB "
                           f"(footage median {med:.1f} dB; normal validation frames: min {self.lo:.1f}, "
                           f"median {float(self.calib['psnr_median']):.1f} dB)")
        if self.n and above >= self.share:
            reasons.append(f"{above:.0%} of {self.n} frames have PSNR above {self.hi + self.margin:.1f} dB "
                           f"(footage median {med:.1f} dB; normal max {self.hi:.1f} dB): a static or blank picture?")
        message = None
        if reasons:
            message = ("domain shift: this footage is unlike what the model was calibrated on — "
                       + "; ".join(reasons) + ". Scores are not meaningful here: retrain on this camera's normal footage")
        return {"shift": bool(reasons), "reasons": reasons, "message": message, "frames": self.n,
                "share_below": round(below, 4), "share_above": round(above, 4), "psnr_median": med,
                "limit_low_db": round(self.lo - self.margin, 3), "limit_high_db": round(self.hi + self.margin, 3),
                "share_needed": self.share}
