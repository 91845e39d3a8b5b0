"""Scoring new footage (`pseudovad score`): anomaly scores, flagged segments, and the files a user reads.

The input is a video file, a frame folder (`footage.score_footage`), or a live source
(`live.score_live`, reading `stream.LiveInput`); its frames stream through
`evaluation.streaming.Detector`, so any length fits in constant memory. PSNR becomes an anomaly
score in one of two ways (`score.normalization`, `pipeline.choose_normalization`):
  calibrated (default)  score = share of normal validation frames the model reconstructs better
                        (`pseudovad.calibration`, stored in the model by `train`); comparable across
                        videos and usable live; default threshold 0.99 ≈ 1 % false alarms on
                        normal footage of the training scenes.
  minmax                the benchmarks' per-video min-max (1 − normalised PSNR). Needs the whole
                        video first (two passes over it): offline only, and every video gets a
                        frame scored 1 even without an anomaly; no default threshold.
A frame is flagged when score ≥ threshold; flagged runs shorter than `score.min_segment` frames
are dropped. Both modes run the domain-shift check (`shift`), can draw the annotated video
(`annotate`, `video_out`) and post alerts (`alerts`).
"""
