"""Evaluation: the scoring engine (`Detector`), per-video normalisation, frame-level AUC / EER,
the protocol's files, figures (scoring new footage: `pseudovad.scoring`).

`Detector` / `score_videos` (per-video PSNR, streaming) and `metrics.summarize` /
`metrics.frame_auc` are usable in-process, e.g. by Ray Tune trials scoring validation videos with
the live model; the `evaluate` and `score` stages wire them to files.
"""
from __future__ import annotations

import importlib
from typing import Any

# name → the module that defines it, imported on first access (PEP 562): importing one module of
# the package (e.g. `evaluation.report` for `pseudovad report`) must not load torch and sklearn
_EXPORTS = {
    "Detector": "streaming", "score_video": "streaming", "score_videos": "streaming",
    "frame_auc": "metrics", "summarize": "metrics",
    "anomaly_scores": "normalize", "normalized_psnr": "normalize",
    "frame_psnr": "psnr",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"pseudovad.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'pseudovad.evaluation' has no attribute {name!r}")
