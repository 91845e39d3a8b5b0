"""Evaluation: the scoring engine (`Detector`), per-video normalisation, frame-level AUC / EER,
the protocol's files, scoring new footage, figures.

`Detector` / `score_videos` (per-video PSNR, streaming) and `metrics.summarize` /
`metrics.frame_auc` are usable in-process, e.g. by Ray Tune trials scoring validation videos with
the live model; the `evaluate` and `score` stages wire them to files.
"""
from pseudovad.evaluation.metrics import frame_auc, summarize
from pseudovad.evaluation.normalize import anomaly_scores, normalized_psnr
from pseudovad.evaluation.psnr import frame_psnr
from pseudovad.evaluation.streaming import Detector, score_video, score_videos

__all__ = ["Detector", "anomaly_scores", "frame_auc", "frame_psnr", "normalized_psnr", "score_video", "score_videos", "summarize"]
