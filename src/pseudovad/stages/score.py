"""`score`: run a detector over new footage and flag anomalous segments.

    pseudovad score INPUT [--model models:/NAME@champion | model.pt] [--out DIR] [--threshold T]
                          [--video annotated.mp4] [--fps F]

INPUT is a video file (anything OpenCV decodes) or a folder of frames. Frames stream through a
ring buffer of one batch of clips (constant memory, any length); each stride-1 clip scores its
scored frame with the same PSNR as `evaluate`, and frames before the first / after the last
scored frame take the nearest score (as in `evaluate`).

Normalisation (`score.normalization`):
  calibrated (default)  score = share of normal validation frames the model reconstructs better
                        (`pseudovad.calibration`, stored in the model by `train`); comparable across
                        videos and usable live; default threshold 0.99 ≈ 1 % false alarms on
                        normal footage of the training scenes.
  minmax                the benchmarks' per-video min-max (1 − normalised PSNR). Needs the whole
                        video first (two passes over it): offline only, and every video gets a
                        frame scored 1 even without an anomaly; no default threshold.
A frame is flagged when score ≥ threshold; flagged runs shorter than `score.min_segment` frames
are dropped. Writes into DIR (default runs/score/<input name>), all or nothing: scores.csv
(frame, time_s, psnr, score, flagged), timeline.png, summary.json (segments with start/end frame
and time, threshold, normalisation); and with --video an annotated video (score bar + error heatmap).
"""
from __future__ import annotations

import contextlib
import csv
import math
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from pseudovad import calibration
from pseudovad.config import Config
from pseudovad.data.clips import to_tensor
from pseudovad.data.sources import IMAGE_EXTS, Source, frame_files, read_frames, video_info
from pseudovad.device import resolve_device
from pseudovad.errors import ConfigError, DataError
from pseudovad.evaluation.psnr import frame_psnr, to_unit
from pseudovad.geometry import ClipGeometry
from pseudovad.files import atomic_dir, atomic_path, write_json
from pseudovad.models import scored_prediction
from pseudovad.models.model_file import load_model

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


# ----------------------------------------------------------------------------------------------
# Input

def open_input(path: str | Path) -> tuple[Source, float | None, int | None]:
    """(source, fps or None, frame count or None) for a video file or a frame folder."""
    p = Path(path)
    if p.is_dir():
        files = frame_files(p)
        if not files:
            raise DataError(f"{p}: no frames (expected {', '.join(sorted(IMAGE_EXTS))} files)")
        return Source(p.name, "score", p, "frames"), None, len(files)
    if p.is_file():
        info = video_info(p)
        fps = info["fps"] if 0 < info["fps"] < 1000 else None
        return Source(p.stem, "score", p, "video"), fps, (info["frames"] or None)
    raise DataError(f"{p}: no such video file or frame folder")


# ----------------------------------------------------------------------------------------------
# Streaming scores

@dataclass
class Scored:
    index: int
    frame: np.ndarray              # uint8 (H, W) or (H, W, 3) at the model's size
    psnr: float
    error: np.ndarray | None       # squared error (H, W) in [0, 1] units; None for edge frames


@torch.no_grad()
def stream(model: torch.nn.Module, meta: dict, frames: Iterable[np.ndarray], device: torch.device | str,
           batch_size: int = 8, errors: bool = False) -> Iterator[Scored]:
    """Every frame in order with its PSNR; memory: (clip span + batch − 1) frames.

    Clip s (frames s, s+step, …) scores frame s + scored_index·step. Frames before the first
    scored one carry the first clip's PSNR, frames after the last scored one the last clip's.
    """
    g = ClipGeometry.from_meta(meta)
    clip_len, scored_index, step, span, first = g.clip_len, g.scored_index, g.frame_step, g.span, g.first_scored
    vr = meta.get("value_range", "tanh")
    buf: deque[np.ndarray] = deque(maxlen=span + batch_size - 1)
    seen = 0          # frames read so far
    emitted = 0       # next frame index to yield
    pending: list[int] = []
    last_psnr = None

    def at(i: int) -> np.ndarray:
        return buf[i - (seen - len(buf))]

    def flush() -> Iterator[Scored]:
        nonlocal emitted, last_psnr
        clips = torch.stack([to_tensor(np.stack([at(s + j * step) for j in range(clip_len)]), vr) for s in pending])
        pred, target = scored_prediction(model, clips.to(device), meta["method"], scored_index)
        psnr = frame_psnr(pred, target, vr).cpu().numpy().astype(np.float64)
        err = None
        if errors:
            err = (to_unit(pred.float(), vr) - to_unit(target.float(), vr)).pow(2).mean(1).cpu().numpy()
        for k, s in enumerate(pending):
            f = s + first
            while emitted < f:
                yield Scored(emitted, at(emitted), float(psnr[k]), None)
                emitted += 1
            yield Scored(f, at(f), float(psnr[k]), None if err is None else err[k])
            emitted = f + 1
            last_psnr = float(psnr[k])
        pending.clear()

    was_training = model.training
    model.eval()
    try:
        for frame in frames:
            buf.append(frame)
            seen += 1
            if seen >= span:
                pending.append(seen - span)
                if len(pending) == batch_size:
                    yield from flush()
        if pending:
            yield from flush()
        if last_psnr is None:
            raise DataError(f"{seen} frames: too short for one {span}-frame clip of this model")
        while emitted < seen:
            yield Scored(emitted, at(emitted), last_psnr, None)
            emitted += 1
    finally:
        model.train(was_training)


class Segments:
    """score ≥ threshold runs of at least `min_len` frames, decided with min_len frames of lookahead.

    push() returns the (item, flagged) pairs that are final; items of a run still shorter than
    min_len wait (so memory stays bounded by min_len items).
    """

    def __init__(self, threshold: float | None, min_len: int):
        self.threshold = threshold
        self.min_len = min_len
        self.waiting: list[tuple[Any, int, float]] = []
        self.run: dict[str, Any] | None = None
        self.found: list[dict[str, Any]] = []

    def _close(self) -> None:
        if self.run is not None and self.run["frames"] >= self.min_len:
            self.found.append(self.run)
        self.run = None

    def push(self, item: Any, index: int, score: float) -> list[tuple[Any, bool]]:
        above = self.threshold is not None and score >= self.threshold
        if not above:
            out = [(it, False) for it, _, _ in self.waiting]
            self.waiting = []
            self._close()
            return out + [(item, False)]
        if self.run is None:
            self.run = {"start_frame": index, "end_frame": index, "frames": 0, "peak_score": score, "peak_frame": index}
        r = self.run
        r["end_frame"] = index
        r["frames"] += 1
        if score > r["peak_score"]:
            r["peak_score"], r["peak_frame"] = score, index
        if r["frames"] < self.min_len:
            self.waiting.append((item, index, score))
            return []
        out = [(it, True) for it, _, _ in self.waiting] + [(item, True)]
        self.waiting = []
        return out

    def close(self) -> list[tuple[Any, bool]]:
        out = [(it, False) for it, _, _ in self.waiting]
        self.waiting = []
        self._close()
        return out


class Timeline:
    """Per-bin min / mean / max of the score with at most `bins` bins (bin width doubles when full)."""

    def __init__(self, bins: int = 2048):
        self.cap = bins
        self.width = 1
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.sum: list[float] = []
        self.n: list[int] = []

    def add(self, score: float) -> None:
        if self.n and self.n[-1] < self.width:
            self.lo[-1] = min(self.lo[-1], score)
            self.hi[-1] = max(self.hi[-1], score)
            self.sum[-1] += score
            self.n[-1] += 1
            return
        if len(self.n) == self.cap:
            for a in (self.lo, self.hi, self.sum, self.n):
                pairs = [a[i:i + 2] for i in range(0, len(a), 2)]
                a[:] = [(min if a is self.lo else max if a is self.hi else sum)(p) for p in pairs]
            self.width *= 2
        self.lo.append(score)
        self.hi.append(score)
        self.sum.append(score)
        self.n.append(1)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = np.asarray(self.n, dtype=np.float64)
        start = np.concatenate([[0], np.cumsum(n)[:-1]]) if len(n) else n
        return start + (n - 1) / 2, np.asarray(self.lo), np.asarray(self.sum) / np.maximum(n, 1), np.asarray(self.hi)


def timeline_plot(tl: Timeline, segments: list[dict], threshold: float | None, fps: float | None,
                  title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, lo, mean, hi = tl.arrays()
    scale = 1.0 / fps if fps else 1.0
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    for s in segments:
        ax.axvspan(s["start_frame"] * scale, (s["end_frame"] + 1) * scale, color="tab:red", alpha=0.2, lw=0)
    if tl.width > 1:
        ax.fill_between(x * scale, lo, hi, color="tab:blue", alpha=0.25, lw=0, label="min–max per bin")
    ax.plot(x * scale, mean, color="tab:blue", lw=1, label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Annotated video

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


# ----------------------------------------------------------------------------------------------
# The stage

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "input"


def _time(frame: int, fps: float | None) -> float | None:
    return round(frame / fps, 3) if fps else None


def run(cfg: Config, input: str | Path, model: str | Path | None = None, out: str | Path | None = None,
        threshold: float | None = None, video: str | Path | None = None, fps: float | None = None,
        progress: bool | None = None) -> dict[str, Any]:
    """Score one video / frame folder; write scores.csv, timeline.png, summary.json (+ video)."""
    model_ref = str(model) if model else f"models:/{cfg.registered_model_name}@champion"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", model_ref):
        from pseudovad import tracking

        if not model_ref.startswith(MLFLOW_SCHEMES):
            raise tracking.bad_uri(model_ref)
        tracking.configure(cfg)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold: must be in [0, 1] (scores are), got {threshold}")
    if fps is not None and not fps > 0:
        raise ConfigError(f"--fps: must be > 0, got {fps}")
    progress = (not os.environ.get("PSEUDOVAD_NO_PROGRESS")) if progress is None else progress
    device = resolve_device(cfg.device)
    src, container_fps, total = open_input(input)
    fps = fps or container_fps
    net, meta = load_model(model_ref, device)
    size = tuple(int(x) for x in meta["size"])
    channels = int(meta["channels"])
    bs = cfg.score.batch_size
    norm = cfg.score.normalization
    thr = threshold if threshold is not None else cfg.score.threshold
    thr_source = "--threshold" if threshold is not None else "score.threshold"

    def frames() -> Iterator[np.ndarray]:
        return read_frames(src, size, channels)

    if norm == "calibrated":
        calib = calibration.check(meta.get("calibration"), model_ref)
        if thr is None:
            thr, thr_source = calibration.DEFAULT_THRESHOLD, "calibration default"
        normalization: dict[str, Any] = {"kind": "calibrated", "calibration": calib}

        def to_score(p: float) -> float:
            return float(calibration.to_score(p, calib))
    else:  # minmax: a first pass for the video's PSNR range
        lo, hi = math.inf, -math.inf
        for s in tqdm(stream(net, meta, frames(), device, bs), total=total, desc="score (pass 1/2)",
                      unit="frame", disable=not progress):
            lo, hi = min(lo, s.psnr), max(hi, s.psnr)
        normalization = {"kind": "minmax", "psnr_min": lo, "psnr_max": hi}

        def to_score(p: float) -> float:
            return float(calibration.minmax_scores(p, lo, hi))

    out_dir = Path(out) if out else Path("runs/score") / _safe(src.video_id)
    segs = Segments(thr, cfg.score.min_segment)
    tl = Timeline()
    n = flagged = 0
    best = (-1.0, 0)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_dir(out_dir))
        ann = None
        if video:
            vpath = stack.enter_context(atomic_path(video, suffix=Path(video).suffix))
            ann = Annotator(vpath, size, fps, thr)
            stack.callback(ann.close)
        fh = stack.enter_context(open(tmp / "scores.csv", "w", newline=""))
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["frame", "time_s", "psnr", "score", "flagged"])

        def emit(pairs: list[tuple[Any, bool]]) -> None:
            nonlocal flagged
            for (s, sc), fl in pairs:
                t = _time(s.index, fps)
                w.writerow([s.index, "" if t is None else f"{t:.3f}", f"{s.psnr:.4f}", f"{sc:.6f}", int(fl)])
                flagged += int(fl)
                if ann is not None:
                    ann.write(s, sc, fl)

        desc = "score" if norm == "calibrated" else "score (pass 2/2)"
        for s in tqdm(stream(net, meta, frames(), device, bs, errors=ann is not None), total=total, desc=desc,
                      unit="frame", disable=not progress):
            sc = to_score(s.psnr)
            n += 1
            tl.add(sc)
            if sc > best[0]:
                best = (sc, s.index)
            emit(segs.push((s, sc), s.index, sc))
        emit(segs.close())
        fh.flush()

        segments = [{**g, "start_s": _time(g["start_frame"], fps), "end_s": _time(g["end_frame"] + 1, fps),
                     "peak_score": round(g["peak_score"], 6)} for g in segs.found]
        timeline_plot(tl, segments, thr, fps, f"{src.path.name} · {norm}", tmp / "timeline.png")
        summary = {
            "input": str(src.path), "model": model_ref, "method": meta.get("method"), "frames": n,
            "fps": fps, "duration_s": _time(n, fps),
            "normalization": normalization, "threshold": thr, "threshold_source": thr_source if thr is not None else None,
            "min_segment": cfg.score.min_segment, "flagged_frames": flagged, "segments": segments,
            "max_score": round(best[0], 6), "max_score_frame": best[1],
            "psnr": "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)",
            "outputs": {"scores": str(out_dir / "scores.csv"), "timeline": str(out_dir / "timeline.png"),
                        "summary": str(out_dir / "summary.json"), "video": str(video) if video else None},
        }
        write_json(tmp / "summary.json", summary)
    return summary


def add_arguments(p) -> None:
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/… or a model.pt "
                                   "(default: models:/<registry.model_name>@champion)")
    p.add_argument("--out", help="output folder (default: runs/score/<input name>)")
    p.add_argument("--threshold", type=float, help="flag frames with score ≥ T, in [0, 1] "
                                                   "(default: score.threshold, else 0.99 when calibrated)")
    p.add_argument("--video", help="also write an annotated video here (.mp4 or .avi)")
    p.add_argument("--fps", type=float, help="frame rate for times (default: the video's; frame folders: none)")


def main(cfg: Config, args) -> int:
    s = run(cfg, args.input, args.model, args.out, args.threshold, args.video, args.fps)
    segs = s["segments"]
    where = ", ".join(
        (f"{g['start_s']:.1f}–{g['end_s']:.1f}s" if g["start_s"] is not None else f"frames {g['start_frame']}–{g['end_frame']}")
        for g in segs[:5]) + (" …" if len(segs) > 5 else "")
    thr = "no threshold" if s["threshold"] is None else f"threshold {s['threshold']:g}"
    print(f"score: {s['frames']} frames, {s['normalization']['kind']} scores, {thr}: {len(segs)} anomalous "
          f"segment(s){': ' + where if segs else ''} → {Path(s['outputs']['summary']).parent}")
    return 0
