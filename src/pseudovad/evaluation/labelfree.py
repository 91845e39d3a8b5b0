"""Label-free evaluation: how a model does on normal footage of its own cameras that it never saw.

A camera owner has no labelled anomaly, so the check runs on the held-out end of each training
video (`pseudovad.data.split`, by the model's own split: train never read those frames, nor did
its calibration) and asks two questions at the operating point `score` uses (calibrated score ≥
`threshold`, alarm segments of ≥ `min_segment` frames, `evaluation.alarms`):

- **false alarms**: on the held-out footage as it is (all normal), alarm segments per hour and
  the share of frames flagged (`holdout_false_alarms_per_hour`, `holdout_flagged_share`);
- **injected anomalies**: the same footage with synthetic anomalies of each kind in
  `evaluate.inject` (`pseudovad.data.inject`: an object moving across the scene, a region played
  faster, a local appearance change); per kind the detection AUC — event frames of the injected
  copies against every frame of the clean footage, one ROC of −PSNR pooled over videos, i.e. no
  per-video normalisation, as a live camera sees it — and the event recall at the operating point
  (`synthetic_auc_<kind>`, `synthetic_event_recall_<kind>`; `synthetic_auc` is their mean).

Only frames a clip scores are counted; the clips that score the first held-out frames read the
frames just before them (validation footage) as context, as a live stream would. A kind that
resembles the model's own pseudo anomalies is named (`inject_resembles`): a score on it is
partly a score on what the model was trained to reject.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pseudovad import calibration
from pseudovad.data.inject import check_kinds, inject, resembled
from pseudovad.data.split import split_videos
from pseudovad.data.store import FrameStore
from pseudovad.errors import DataError
from pseudovad.evaluation.alarms import Tally, alarm_segments
from pseudovad.evaluation.streaming import Detector
from pseudovad.geometry import ClipGeometry
from pseudovad.method_spec import method_of

INJECTION_VERSION = 1     # in the fingerprint: a change to how anomalies are drawn changes the set
# provenance.json's keys (texts) among the results `evaluate` returns
PROVENANCE_KEYS = ("labelfree_fingerprint", "holdout_source", "holdout_video_ids", "inject_kinds", "inject_resembles")


@dataclass(frozen=True)
class HeldOut:
    """Held-out frames [start, end) of one training video, and its frame rate when known."""

    video: str
    start: int
    end: int
    fps: float | None = None


def held_out(store: FrameStore, meta: dict[str, Any], source: str = "holdout", fps: float | None = None
             ) -> list[HeldOut]:
    """The store's held-out footage by the model's own split (its `train.val_fraction` and
    `train.holdout_fraction`, its clip span): `holdout` the ends nobody saw, `validation` the
    calibration tails (what a model trained without a held-out end has; false alarms there are
    1 − threshold by construction, the injected-anomaly AUC is not). Videos added to the store
    after the model was trained are split the same way. `fps`: for videos whose rate the store
    does not know."""
    train = meta.get("config", {}).get("train", {})
    geom = ClipGeometry.from_meta(meta)
    entries = store.videos("training")
    splits = split_videos(entries, float(train.get("val_fraction", 0.1)), float(train.get("holdout_fraction", 0.0)),
                          geom.span)
    out = []
    for e, s in zip(entries, splits):
        a, b = s.held_out if source == "holdout" else s.validation
        if b > a:
            out.append(HeldOut(e.id, a, b, getattr(e, "fps", None) or fps))
    return out


def fingerprint(store: FrameStore, parts: Sequence[HeldOut], kinds: Sequence[str], seed: int) -> str:
    """What the check measured on: the held-out frames (video checksums and ranges) and the injection."""
    by_id = {e.id: e for e in store.videos("training")}
    spec = {"parts": [[p.video, by_id[p.video].checksum, p.start, p.end] for p in parts],
            "params": store.params, "kinds": list(kinds), "seed": seed, "injection": INJECTION_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


@dataclass
class Scored:
    """Per-frame results of the check, kept for the files: one entry per (video, copy)."""

    rows: list[dict[str, Any]] = field(default_factory=list)    # video, copy, frames, psnr, score, label
    examples: list[dict[str, Any]] = field(default_factory=list)  # one injected frame per kind, for the figure


def _auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    if pos.size == 0 or neg.size == 0:
        return None
    from sklearn.metrics import roc_auc_score

    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    return float(roc_auc_score(y, -np.concatenate([pos, neg])))     # lower PSNR = more anomalous


def evaluate(detector: Detector, store: FrameStore, parts: Sequence[HeldOut], kinds: Sequence[str], seed: int,
             threshold: float, min_segment: int, progress: bool = False) -> tuple[dict[str, Any], Scored]:
    """Score the held-out `parts` as they are and with anomalies of each kind injected; the
    numbers (module doc) and the per-frame results."""
    from tqdm import tqdm

    kinds = check_kinds(list(kinds))
    if not parts:
        raise DataError(f"{store.root}: no held-out normal footage to check the model on")
    calib = calibration.check(detector.meta.get("calibration"), "model")
    g = detector.geometry
    clean = Tally()
    tallies = {k: Tally() for k in kinds}
    neg: list[np.ndarray] = []
    pos: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    scored = Scored()
    by_id = {e.id: e for e in store.videos("training")}
    for part in tqdm(parts, desc="label-free check", unit="video", disable=not progress):
        entry = by_id[part.video]
        detector.check_compatible(entry, str(store.root))
        ctx = max(0, part.start - g.first_scored)                  # the clips' context before the held-out end
        window = np.asarray(store.array(entry)[ctx:part.end])
        lo = max(part.start - ctx, g.first_scored)
        hi = g.first_scored + len(g.starts(len(window)))           # frames a clip scores: [lo, hi)
        if hi - lo < 2:
            continue
        psnr = detector.score_video(window, part.video)[lo:hi]
        score = calibration.to_score(psnr, calib)
        clean.add(score, np.zeros(hi - lo), threshold, min_segment, part.fps)
        neg.append(psnr)
        frames = np.arange(ctx + lo, ctx + hi)
        scored.rows.append({"video": part.video, "copy": "clean", "frames": frames, "psnr": psnr, "score": score,
                            "label": np.zeros(hi - lo, np.uint8)})
        for k in kinds:
            inj = inject(window, k, seed, f"{part.video}@{part.start}", (lo, hi))
            p = detector.score_video(inj.frames, part.video)[lo:hi]
            y = inj.labels()[lo:hi]
            s = calibration.to_score(p, calib)
            tallies[k].add(s, y, threshold, min_segment, part.fps)
            pos[k].append(p[y == 1])
            scored.rows.append({"video": part.video, "copy": k, "frames": frames, "psnr": p, "score": s, "label": y})
            if not any(x["kind"] == k for x in scored.examples):
                ev = inj.events[0]
                t = (ev["start"] + ev["end"]) // 2
                scored.examples.append({"kind": k, "video": part.video, "frame": ctx + t, "before": window[t],
                                        "after": inj.frames[t], "mask": inj.mask[t]})
    if not neg:
        raise DataError(f"{store.root}: the held-out footage is too short for this model's clips "
                        f"({g.span} frames): nothing to check it on")
    negatives = np.concatenate(neg)
    out: dict[str, Any] = {"operating_threshold": threshold, "min_segment": min_segment,
                           "holdout_videos": len(neg)}
    c = clean.summary()
    out.update(holdout_frames=c["normal_frames"], holdout_hours=c["normal_hours"],
               holdout_false_alarms=c["false_alarms"], holdout_false_alarms_per_hour=c["false_alarms_per_hour"],
               holdout_flagged_share=c["flagged_share"])
    aucs, found, events = [], 0, 0
    for k in kinds:
        t = tallies[k].summary()
        a = _auc(np.concatenate(pos[k]) if pos[k] else np.zeros(0), negatives)
        out[f"synthetic_auc_{k}"] = a
        out[f"synthetic_event_recall_{k}"] = t["event_recall"]
        out[f"synthetic_events_{k}"] = t["events"]
        if a is not None:
            aucs.append(a)
        found, events = found + t["events_found"], events + t["events"]
    out["synthetic_auc"] = float(np.mean(aucs)) if aucs else None
    out["synthetic_event_recall"] = found / events if events else None
    return out, scored


def describe(store: FrameStore, detector: Detector, parts: Sequence[HeldOut], kinds: Sequence[str], seed: int,
             source: str) -> dict[str, Any]:
    """The check's provenance texts (`PROVENANCE_KEYS`)."""
    conf = detector.meta.get("config", {})
    spec = method_of(conf or {"model": {"method": detector.method}})
    gate = spec.share_key
    same = resembled(spec.name, spec.pseudo_kind(conf), conf.get("pseudo", {}).get(gate) if gate else None)
    return {"labelfree_fingerprint": fingerprint(store, parts, kinds, seed), "holdout_source": source,
            "holdout_video_ids": [p.video for p in parts], "inject_kinds": list(kinds),
            "inject_resembles": same if same in kinds else None}


def scores_csv(scored: Scored) -> str:
    """video,frame,psnr,score,label,copy: every frame the check scored (copy: clean or the injected kind)."""
    lines = ["video,frame,psnr,score,label,copy"]
    for r in scored.rows:
        lines += [f"{r['video']},{f},{p:.4f},{s:.6f},{int(y)},{r['copy']}"
                  for f, p, s, y in zip(r["frames"], r["psnr"], r["score"], r["label"])]
    return "\n".join(lines) + "\n"


def roc_points(scored: Scored) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, −PSNR thresholds) of every injected event frame against the clean footage."""
    from sklearn.metrics import roc_curve

    neg = np.concatenate([r["psnr"] for r in scored.rows if r["copy"] == "clean"])
    pos = np.concatenate([r["psnr"][r["label"] == 1] for r in scored.rows if r["copy"] != "clean"] or [np.zeros(0)])
    y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    return roc_curve(y, -np.concatenate([pos, neg]))


def write_plots(scored: Scored, kinds: Sequence[str], numbers: dict[str, Any], folder, title: str) -> None:
    """plots/labelfree_roc.png (one ROC per kind), plots/labelfree_timeline.png (the calibrated
    score of the clean and injected held-out footage, events shaded, alarms marked) and
    plots/labelfree_injected.png (one injected frame per kind with its mask)."""
    from pathlib import Path

    from sklearn.metrics import roc_curve

    from pseudovad.evaluation import plots

    folder = Path(folder)
    neg = np.concatenate([r["psnr"] for r in scored.rows if r["copy"] == "clean"])
    curves = {}
    for k in kinds:
        pos = [r["psnr"][r["label"] == 1] for r in scored.rows if r["copy"] == k]
        pos = np.concatenate(pos) if pos else np.zeros(0)
        if pos.size and neg.size:
            fpr, tpr, _ = roc_curve(np.r_[np.ones(pos.size), np.zeros(neg.size)], -np.r_[pos, neg])
            curves[k] = (fpr, tpr, numbers.get(f"synthetic_auc_{k}"))
    plots.labelfree_roc_plot(curves, folder / "labelfree_roc.png", title)
    rows = []
    for copy in ("clean", *kinds):
        mine = [r for r in scored.rows if r["copy"] == copy]
        s = np.concatenate([r["score"] for r in mine])
        y = np.concatenate([r["label"] for r in mine])
        flagged = np.zeros(len(s), bool)
        start = 0
        for r in mine:            # alarms per video, as `score` raises them
            for a, b in alarm_segments(r["score"], numbers["operating_threshold"], numbers["min_segment"]):
                flagged[start + a:start + b] = True
            start += len(r["score"])
        bounds = np.cumsum([len(r["score"]) for r in mine])[:-1]
        rows.append({"name": copy, "score": s, "label": y, "flagged": flagged, "bounds": bounds})
    plots.labelfree_timeline_plot(rows, numbers["operating_threshold"], folder / "labelfree_timeline.png", title)
    plots.injected_plot(scored.examples, folder / "labelfree_injected.png")
