"""Evaluation figures (matplotlib, Agg backend, PNG): ROC, per-video timelines, top-k frames, and
the timeline of scored new footage.

They are what a reviewer looks at before trusting an AUC: the ROC shape, whether score peaks sit
on the ground-truth events of each video, and what the model got wrong on its worst frames
(input | reconstruction or prediction | squared-error heatmap, the papers' qualitative figure);
and, for `score`, where on unlabelled footage the flagged segments are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from pseudovad.evaluation.segments import Timeline
from pseudovad.files import atomic_path


def _pyplot():
    """matplotlib.pyplot on the Agg backend, imported when the first figure is drawn: importing
    matplotlib costs about a second, which `score` should not pay before its first frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def spans(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1s as half-open [start, end) frame intervals."""
    y = np.concatenate([[0], np.asarray(labels, dtype=np.int8).ravel(), [0]])
    d = np.diff(y)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: str | Path, title: str = "",
             eer: float | None = None) -> None:
    fig, ax = _pyplot().subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, lw=2, label=f"micro AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    if eer is not None:
        ax.plot([eer], [1 - eer], "o", c="C3", label=f"EER = {eer:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
           title=title or "frame-level ROC")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _save(fig, path)


def timeline_plot(video: str, scores: np.ndarray, labels: np.ndarray, path: str | Path,
                  auc: float | None = None, counted: slice | None = None, floor: np.ndarray | None = None,
                  floor_name: str = "training-free floor") -> None:
    """Anomaly score over frames with the ground-truth anomalous spans shaded; frames outside
    `counted` (no clip scores them: not in the AUC) hatched grey, the `floor` score dotted."""
    fig, ax = _pyplot().subplots(figsize=(8, 2.6))
    for i, (a, b) in enumerate(spans(labels)):
        ax.axvspan(a - 0.5, b - 0.5, color="C3", alpha=0.2, lw=0, label="ground truth anomalous" if i == 0 else None)
    n = len(scores)
    if counted is not None:
        first, stop, _ = counted.indices(n)
        edges = [(a, b) for a, b in ((0, first), (stop, n)) if b > a]
        for i, (a, b) in enumerate(edges):
            ax.axvspan(a - 0.5, b - 0.5, color="0.5", alpha=0.25, lw=0,
                       label="not in the AUC (no clip scores it)" if i == 0 else None)
    if floor is not None:
        ax.plot(np.arange(len(floor)), floor, c="0.4", lw=1, ls=":", label=floor_name)
    ax.plot(np.arange(n), scores, c="C0", lw=1.5, label="anomaly score")
    ax.set(xlim=(-0.5, n - 0.5), ylim=(-0.02, 1.02), xlabel="frame", ylabel="1 − normalised PSNR",
           title=f"video {video}" + (f" (AUC {auc:.3f})" if auc is not None else " (single class: no AUC)"))
    ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    _save(fig, path)


def topk_plot(items: Sequence[dict], path: str | Path) -> None:
    """One row per frame: input | reconstruction/prediction | squared error heatmap.

    Each item: video, frame, score, psnr, label, input, pred (float arrays in [0, 1], (H, W) gray or
    (H, W, 3) RGB). The heatmap is the per-pixel squared error averaged over channels.
    """
    n = max(len(items), 1)
    fig, axes = _pyplot().subplots(n, 3, figsize=(9, 2.8 * n), squeeze=False)
    if not items:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][1].text(0.5, 0.5, "no frames", ha="center", va="center")
    vmax = max((float(np.square(it["input"] - it["pred"]).max()) for it in items), default=1.0) or 1.0
    for row, it in zip(axes, items):
        gray = it["input"].ndim == 2
        err = np.square(it["input"] - it["pred"])
        if not gray:
            err = err.mean(axis=-1)
        row[0].imshow(it["input"], cmap="gray" if gray else None, vmin=0, vmax=1)
        row[1].imshow(it["pred"], cmap="gray" if gray else None, vmin=0, vmax=1)
        im = row[2].imshow(err, cmap="inferno", vmin=0, vmax=vmax)
        gt = "anomalous" if it["label"] else "normal"
        row[0].set_title(f"{it['video']} frame {it['frame']} ({gt})", fontsize=9)
        row[1].set_title(f"model output, PSNR {it['psnr']:.2f} dB", fontsize=9)
        row[2].set_title(f"squared error, score {it['score']:.3f}", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(im, ax=row[2], fraction=0.046, pad=0.04)
    _save(fig, path)


def footage_timeline_plot(tl: Timeline, segments: list[dict], threshold: float | None, fps: float | None,
                          title: str, path: Path) -> None:
    """Score over time of scored footage (binned: any length), threshold line, flagged segments shaded."""
    x, lo, mean, hi = tl.arrays()
    scale = 1.0 / fps if fps else 1.0
    fig, ax = _pyplot().subplots(figsize=(10, 3), dpi=100)
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
    _pyplot().close(fig)


def labelfree_roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray, float | None]], path: str | Path,
                       title: str = "") -> None:
    """One ROC per injected kind: its event frames against the clean held-out footage (raw PSNR)."""
    fig, ax = _pyplot().subplots(figsize=(4.5, 4.5))
    for kind, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, lw=2, label=f"{kind}: AUC {auc:.3f}" if auc is not None else kind)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (clean held-out frames)",
           ylabel="true positive rate (injected event frames)", title=title or "injected anomalies")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def labelfree_timeline_plot(rows: Sequence[dict], threshold: float, path: str | Path, title: str = "") -> None:
    """One panel per copy of the held-out footage (clean, then each injected kind): the calibrated
    score over its scored frames (videos one after the other, dotted lines between them), injected
    events shaded, alarm segments marked under the curve, the operating threshold."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.9 * len(rows)), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        for i, (a, b) in enumerate(spans(r["label"])):
            ax.axvspan(a - 0.5, b - 0.5, color="C3", alpha=0.2, lw=0, label="injected event" if i == 0 else None)
        for i, (a, b) in enumerate(spans(r["flagged"])):
            ax.plot([a - 0.5, b - 0.5], [-0.04, -0.04], c="C1", lw=4, solid_capstyle="butt",
                    label="alarm" if i == 0 else None)
        for x in r["bounds"]:
            ax.axvline(x - 0.5, c="grey", lw=0.6, ls=":")
        ax.plot(np.arange(len(r["score"])), r["score"], c="C0", lw=1)
        ax.axhline(threshold, c="C3", ls="--", lw=0.8)
        ax.set(ylim=(-0.08, 1.04), ylabel="score")
        ax.set_title(f"{r['name']}" + (" (as recorded: every alarm is false)" if r["name"] == "clean" else ""),
                     fontsize=9, loc="left")
        if len(spans(r["label"])) or len(spans(r["flagged"])):
            ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    axes[-1, 0].set_xlabel("held-out frame (videos one after the other)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def injected_plot(examples: Sequence[dict], path: str | Path) -> None:
    """One row per injected kind: the held-out frame, the same frame with the anomaly, its mask."""
    n = max(len(examples), 1)
    fig, axes = _pyplot().subplots(n, 3, figsize=(8, 2.4 * n), squeeze=False)
    for row, ex in zip(axes, examples):
        gray = ex["before"].ndim == 2
        row[0].imshow(ex["before"], cmap="gray" if gray else None, vmin=0, vmax=255)
        row[1].imshow(ex["after"], cmap="gray" if gray else None, vmin=0, vmax=255)
        row[2].imshow(ex["mask"], cmap="gray", vmin=0, vmax=1)
        row[0].set_title(f"{ex['video']} frame {ex['frame']}", fontsize=9)
        row[1].set_title(f"injected: {ex['kind']}", fontsize=9)
        row[2].set_title("mask", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    for row in axes[len(examples):]:
        for ax in row:
            ax.axis("off")
    _save(fig, path)
