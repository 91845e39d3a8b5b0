"""The papers' evaluation protocol over a labelled test split, and the files it leaves behind.

PSNR of each stride-1 clip's scored frame against its reconstruction or prediction (frames in
[0, 1], peak 1; `evaluation.streaming`); PSNR min-max normalised within each video, anomaly score
= 1 − normalised PSNR; one ROC over the counted frames (micro AUC), plus macro AUC, AUC of raw
−PSNR and EER (`evaluation.metrics`).

Which frames count (`evaluate.protocol`):
- `official` (default; LNTRA's / STEAL's / MAE-NCT's released evaluation): only frames a clip
  scores, `ClipGeometry.scored_frames` — LTGPA leaves out each video's first
  `scored_index · frame_step` and last `span − 1 − scored_index · frame_step` frames (8 and 7 for
  16-frame clips scored at index 8), MAE-NCT its first `in_frames`. Every AUC (micro, macro, raw,
  EER, region, bootstrap intervals, the floor) is over the counted frames only; metrics.json says
  how many were counted (`frames`) and left out (`frames_left_out`).
- `padded` (this project before; kept to compare old numbers with new): every frame counts, an
  edge frame carrying the nearest scored frame's score.
Either way every frame keeps a value in scores.csv (`counted` says which were in the AUC), the
timelines and `score`: an edge frame shows the nearest scored frame's score. Pixel AUC always
uses the scored frames' own error maps only (an edge frame has none).

Beside the model, the training-free floor (`evaluation.floor`: frame difference and temporal
residual on the same store, frames and protocol) → `auc_floor_framediff`, `auc_floor_residual`,
`auc_floor` (the higher) and `auc_floor_margin` (auc_micro − auc_floor); a warning when the model
does not beat it. scores.csv carries both floor scores per frame (`floor_framediff`,
`floor_residual`), roc.csv / plots the model's.

Beside the papers' numbers, never replacing them (opt-in for the files, always in metrics.json):
- the region score (`evaluation.regions`): PSNR of the worst window of the scored frame's error
  map, normalised and pooled like the frame PSNR → `region_auc_micro`, `region_auc_macro`;
  `score: region` makes it the score scores.csv's `score` column, roc.csv and the plots show;
- the fused score (`evaluation.fused`): the model's PSNR and the temporal residual, each
  standardised on the normal validation footage `train` calibrated on, summed → `fused_auc_micro`,
  `fused_auc_macro` (models trained with their motion statistics); `score: fused` shows it;
- pixel AUC of the error maps against ground-truth masks when `pixel_masks` is given
  (`evaluation.pixels`) → `pixel_auc`;
- 95% bootstrap intervals over test videos for each AUC (`evaluation.bootstrap`) →
  `<auc>_ci_low`, `<auc>_ci_high`, `bootstrap_resamples` (0: none computed);
- what an operator gets at the operating threshold of the calibrated score (`evaluation.alarms`,
  no per-video normalisation; normal frames are the counted ones): `event_recall` (events an alarm
  segment overlaps), `false_alarms` and `false_alarms_per_hour` of normal footage, `flagged_share`
  of normal frames flagged.
scores.csv: video,frame,psnr,score,label, then region_psnr,region_score,counted,floor_framediff,floor_residual.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from pseudovad import calibration
from pseudovad.data.store import FrameStore, VideoEntry
from pseudovad.errors import DataError
from pseudovad.evaluation import alarms
from pseudovad.evaluation import bootstrap as boot
from pseudovad.evaluation import floor
from pseudovad.evaluation import fused
from pseudovad.evaluation import metrics as metrics_mod
from pseudovad.evaluation import plots
from pseudovad.evaluation.pixels import pixel_auc, read_pixel_masks, resize_masks
from pseudovad.evaluation.regions import region_psnr
from pseudovad.evaluation.normalize import anomaly_scores
from pseudovad.evaluation.report import describe_model
from pseudovad.evaluation.streaming import Detector, fill_edges
from pseudovad.files import atomic_dir, write_text
from pseudovad.geometry import ClipGeometry

log = logging.getLogger(__name__)

PSNR_CONVENTION = "10*log10(1/MSE), frames mapped to [0, 1] (peak 1)"
SUMMARY_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer", "eer_threshold", "frames", "anomalous_frames",
                "videos", "macro_videos", "macro_excluded", "constant_videos")
PROTOCOLS = ("official", "padded")
OFFICIAL, PADDED = PROTOCOLS
# what an evaluation's numbers are about: provenance.json, beside the numbers of metrics.json
# (`pseudovad.results`); `model_sha256` binds the numbers to one model file (the gate checks it)
PROVENANCE_KEYS = ("method", "pseudo_kind", "variant", "dataset", "protocol", "model", "model_sha256", "fingerprint",
                   "train_fingerprint", "psnr", "video_ids", "macro_excluded", "constant_videos",
                   "inference_amp", "inference_memory_format")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def select_videos(store: FrameStore, only: list[str] | None = None) -> list[VideoEntry]:
    """The store's test videos (`only` these ids, when given), with a hint for YAML's 01 → 1."""
    try:
        entries = store.videos("testing", only)
    except DataError as e:
        known = {x.id for x in store.videos("testing")}
        if only and any(v.isdigit() and v not in known and any(k.lstrip("0") == v.lstrip("0") for k in known) for v in only):
            raise DataError(f"{e} (YAML reads 01 as the number 1: quote video ids, e.g. "
                            "-p 'evaluate.videos=[\"01\"]', or use --videos 01)") from None
        raise
    if not entries:
        raise DataError(f"{store.root}: no test videos in the frame store")
    return entries


def labelled_videos(store: FrameStore, only: list[str] | None = None) -> list[VideoEntry]:
    """The test videos the papers' protocol scores (`select_videos`), or [] when the store has no
    labelled test split (footage of one's own cameras: evaluate then runs the label-free check alone)."""
    tests = store.videos("testing")
    if not only and all(e.labels is None for e in tests):
        return []
    return select_videos(store, only)


def check_videos(detector: Detector, store: FrameStore, entries: list[VideoEntry]) -> None:
    """What scoring would otherwise find late (after minutes, on the first bad video): every test
    video has the model's frame size, frame labels, and at least one clip's span of frames."""
    span = detector.geometry.span
    for e in entries:
        detector.check_compatible(e, str(store.root))
    unlabelled = [e.id for e in entries if e.labels is None]
    if unlabelled:
        raise DataError(f"{store.root}: test video(s) {', '.join(unlabelled)} have no frame labels "
                        "(give data.labels or put labels in <root>/testing, then re-run `pseudovad extract`)")
    short = [f"{e.id} ({e.frames} frame{'s' if e.frames != 1 else ''})" for e in entries if e.frames < span]
    if short:
        raise DataError(f"{store.root}: test video(s) {', '.join(short)} shorter than one {span}-frame clip of "
                        "this model: nothing to score them with (drop them from the test split or pass --videos)")


def top_frames(psnr: dict[str, np.ndarray], scores: dict[str, np.ndarray], k: int,
               geom: ClipGeometry) -> list[tuple[str, int]]:
    """The k highest-scoring frames, at most one per clip length of a video.

    Ties (every video's worst frame scores exactly 1 after min-max) are broken by lower raw PSNR.
    An edge frame is replaced by the frame whose score it carries, and frames within one clip
    length of a chosen frame are skipped, so the figure shows k different moments rather than k
    copies of one.
    """
    span, first = geom.span, geom.first_scored
    cands = []
    for v, s in scores.items():
        last = first + len(s) - span
        for f in range(len(s)):
            cands.append((-float(s[f]), float(psnr[v][f]), v, min(max(f, first), last)))
    cands.sort()
    chosen: list[tuple[str, int]] = []
    for _, _, v, f in cands:
        if len(chosen) >= k:
            break
        if any(v == cv and abs(f - cf) < span for cv, cf in chosen):
            continue
        chosen.append((v, f))
    return chosen


def counted_frames(n_frames: int, geom: ClipGeometry, protocol: str = OFFICIAL) -> slice:
    """The frames of a video that count in its AUCs: those a clip scores (`official`) or all (`padded`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r} (expected one of {', '.join(PROTOCOLS)})")
    return geom.scored_frames(n_frames) if protocol == OFFICIAL else slice(0, n_frames)


def summarize(labels: dict[str, np.ndarray], psnr: dict[str, np.ndarray], geom: ClipGeometry,
              protocol: str = OFFICIAL) -> dict[str, Any]:
    """`metrics.summarize` over the frames `protocol` counts (a tune trial's validation AUC, the
    held-out AUC of a search: the same numbers `evaluate` would report)."""
    counted = {v: counted_frames(len(psnr[v]), geom, protocol) for v in labels}
    return metrics_mod.summarize({v: np.asarray(labels[v])[counted[v]] for v in labels},
                                 {v: np.asarray(psnr[v])[counted[v]] for v in labels})


def scores_csv(labels: dict[str, np.ndarray], psnr: dict[str, np.ndarray], scores: dict[str, np.ndarray],
               region: dict[str, np.ndarray] | None = None, region_scores: dict[str, np.ndarray] | None = None,
               counted: dict[str, slice] | None = None, floor_scores: dict[str, dict[str, np.ndarray]] | None = None
               ) -> str:
    """video,frame,psnr,score,label (+ region_psnr,region_score, counted (1: in the AUC), and the
    floor's scores, when given); `score` is the chosen score."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    kinds = list(floor_scores or {})
    w.writerow(["video", "frame", "psnr", "score", "label"] + (["region_psnr", "region_score"] if region else [])
               + (["counted"] if counted else []) + [f"floor_{k}" for k in kinds])
    for v in labels:
        inside = np.zeros(len(labels[v]), dtype=bool)
        if counted:
            inside[counted[v]] = True
        for f, (p, s, y) in enumerate(zip(psnr[v], scores[v], labels[v])):
            row = [v, f, f"{p:.4f}", f"{s:.6f}", int(y)]
            if region:
                row += [f"{region[v][f]:.4f}", f"{region_scores[v][f]:.6f}"]
            if counted:
                row.append(int(inside[f]))
            row += [f"{floor_scores[k][v][f]:.6f}" for k in kinds]
            w.writerow(row)
    return buf.getvalue()


def score_with_maps(detector: Detector, store: FrameStore, entries: list[VideoEntry], grid: tuple[int, int],
                    keep_errors: bool = False, progress: bool = False
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, dict[int, np.ndarray]]]:
    """({video: frame PSNR}, {video: region PSNR}, {video: {frame: error map}}) in one pass.

    Frame PSNR is `Detector.score_video`'s, value for value. The region PSNR of a scored frame
    comes from its error map; edge frames carry the nearest scored frame's, as their PSNR does.
    Error maps (float32, the model's frame size) of the scored frames are kept only with
    `keep_errors`, for pixel AUC. `Detector.stream` hands edge frames their nearest scored
    frame's map too (for the annotated video): only the scored frames' own maps count here, so a
    map is counted once.
    """
    from tqdm import tqdm

    g = detector.geometry
    psnr, region, errors = {}, {}, {}
    for e in tqdm(entries, desc="evaluate", unit="video", disable=not progress):
        detector.check_compatible(e, str(store.root))
        frames = store.array(e)
        first, end = g.first_scored, g.first_scored + len(g.starts(len(frames)))   # scored: [first, end)
        p, r, maps = [], [], {}
        for sc in detector.stream(frames, errors=True, name=f"test video {e.id}"):
            p.append(sc.psnr)
            if sc.error is not None and first <= sc.index < end:
                r.append(region_psnr(sc.error, grid))
                if keep_errors:
                    maps[sc.index] = np.asarray(sc.error, dtype=np.float32)
        psnr[e.id] = np.asarray(p, dtype=np.float64)
        region[e.id] = fill_edges(len(p), first, np.asarray(r))
        if keep_errors:
            errors[e.id] = maps
    return psnr, region, errors


def intervals(labels: dict[str, np.ndarray], named: dict[str, dict[str, np.ndarray]], n: int, seed: int = 0
              ) -> dict[str, float]:
    """`<name>_micro_ci_low/high` and `<name>_macro_ci_low/high` of each per-video score set in
    `named` (anomaly scores, higher = more anomalous; a name ending in `raw` is one pooled ROC of
    unnormalised scores: `<name>_ci_low/high`), all on the same video draws."""
    ids = list(labels)
    y = boot.per_video(labels, ids)
    out: dict[str, float] = {}
    for name, scores in named.items():
        s = boot.per_video(scores, ids)
        raw = name.endswith("raw")        # one pooled ROC of unnormalised scores: no macro twin
        stats = {name if raw else f"{name}_micro": boot.pooled_auc(y, s)}
        if not raw:
            per = metrics_mod.video_aucs(labels, scores)
            if any(a is not None for a in per.values()):
                stats[f"{name}_macro"] = boot.mean_of([per[v] for v in ids])
        for key, stat in stats.items():
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = boot.interval(stat, len(ids), n, seed)
    return out


def pixel_metrics(masks_path: str | Path, store: FrameStore, entries: list[VideoEntry],
                  errors: dict[str, dict[int, np.ndarray]], size: tuple[int, int], n: int, seed: int = 0
                  ) -> dict[str, float]:
    """`pixel_auc` (+ its bootstrap interval when n > 0) of the error maps against the masks."""
    every = store.videos("testing")      # the masks file covers the whole test split, in order
    masks = read_pixel_masks(masks_path, [(e.id, e.frames) for e in every])
    masks = {e.id: resize_masks(masks[e.id], size) for e in entries}
    out = {"pixel_auc": pixel_auc(masks, errors)}
    if n > 0:
        ids = list(errors)
        flat = np.concatenate([m.ravel() for v in ids for m in errors[v].values()])
        edges = np.unique(np.quantile(flat, np.linspace(0, 1, 4097)))
        pos, neg = [], []
        for v in ids:
            frames = sorted(errors[v])
            e = np.stack([errors[v][f] for f in frames])
            m = masks[v][frames]
            pos.append(np.histogram(e[m], edges)[0])
            neg.append(np.histogram(e[~m], edges)[0])
        out["pixel_auc_ci_low"], out["pixel_auc_ci_high"] = boot.interval(boot.binned_auc(pos, neg, edges),
                                                                          len(ids), n, seed)
    return out


def describe(detector: Detector, dataset: str, model_ref: str, model_sha256: str | None, fingerprint: str
             ) -> dict[str, Any]:
    """What an evaluation is about: the model (method, variant, seed, file, its sha256, its
    training data), the evaluation set's fingerprint, how it was scored."""
    return {
        **describe_model(detector.meta.get("config", {})),
        "seed": detector.meta.get("config", {}).get("seed"),     # `report` averages over seeds
        "dataset": dataset,
        "model": model_ref,
        "model_sha256": model_sha256,
        "fingerprint": fingerprint,
        "train_fingerprint": detector.meta.get("train_fingerprint"),
        "psnr": PSNR_CONVENTION,
        "inference_amp": detector.precision.name,           # bf16 | fp32, as resolved (inference.amp)
        "inference_memory_format": detector.memory_format,
    }


def roc_csv(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray) -> str:
    lines = ["fpr,tpr,threshold"]
    lines += [f"{a:.6f},{b:.6f},{t:.6f}" if np.isfinite(t) else f"{a:.6f},{b:.6f},inf" for a, b, t in zip(fpr, tpr, thr)]
    return "\n".join(lines) + "\n"


def floor_metrics(store: FrameStore, entries: list[VideoEntry], labels: dict[str, np.ndarray],
                  counted: dict[str, slice]
                  ) -> tuple[dict[str, float], dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """(the floor's AUCs, {kind: {video: per-frame floor score}}, {kind: {video: per-frame PSNR}})
    on the store's frames, counting the same frames as the model (`evaluation.floor`)."""
    psnr: dict[str, dict[str, np.ndarray]] = {k: {} for k in floor.KINDS}
    for e in entries:
        for k, p in floor.frame_psnr(store.array(e)).items():
            psnr[k][e.id] = p
    per_frame = {k: {v: floor.scores(psnr[k][v], counted[v]) for v in labels} for k in floor.KINDS}
    return floor.aucs(labels, psnr, counted), per_frame, psnr


def evaluate(detector: Detector, store: FrameStore, entries: list[VideoEntry], out: Path, *, dataset: str,
             model_ref: str, fingerprint: str, model_sha256: str | None = None, top_k: int = 0,
             progress: bool = False, score: str = "frame", region_grid: tuple[int, int] = (4, 6),
             pixel_masks: str | Path | None = None, bootstrap: int = boot.DEFAULT_RESAMPLES,
             protocol: str = OFFICIAL, threshold: float = calibration.DEFAULT_THRESHOLD, min_segment: int = 1,
             fps: dict[str, float | None] | None = None) -> dict[str, Any]:
    """Score `entries` of `store`, write scores.csv, roc.csv and plots/ into `out`, return the
    results (what evaluate's metrics.json and provenance.json hold, `PROVENANCE_KEYS` the latter).
    `score`: frame (the papers'), region or fused, the score the files show; metrics hold all that
    the model allows (module doc).
    `protocol`: official (only frames a clip scores count) or padded (every frame).
    `threshold`, `min_segment`: the operating point of the calibrated score; `fps` per video id
    (None: no per-hour figure)."""
    if score == "fused":
        fused.check(detector.meta.get("calibration"), model_ref)
    labels = {e.id: store.labels(e).astype(np.int64) for e in entries}
    log.info("evaluate: scoring with %s", detector.describe())
    t0 = time.perf_counter()
    psnr, region, errors = score_with_maps(detector, store, entries, tuple(region_grid), pixel_masks is not None,
                                           progress)
    secs = time.perf_counter() - t0
    frames = sum(len(p) for p in psnr.values())
    log.info("evaluate: scored %d frames in %.1f s (%.0f frames/s)", frames, secs, frames / max(secs, 1e-9))
    counted = {v: counted_frames(len(psnr[v]), detector.geometry, protocol) for v in labels}

    def cut(per_video: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {v: np.asarray(per_video[v])[counted[v]] for v in labels}

    y = cut(labels)
    m = metrics_mod.summarize(y, cut(psnr))
    mr = metrics_mod.summarize(y, cut(region))
    # on every frame, for the files; on the counted frames these are the AUCs' scores (an edge frame
    # carries a scored frame's PSNR, so the per-video min and max are those of the counted frames)
    frame_scores = {v: anomaly_scores(psnr[v]) for v in labels}
    region_scores = {v: anomaly_scores(region[v]) for v in labels}
    floor_aucs, floor_scores, floor_psnr = floor_metrics(store, entries, labels, counted)
    named = {"frame": (frame_scores, psnr, m), "region": (region_scores, region, mr)}
    calib = detector.meta.get("calibration")
    if fused.available(calib):
        fpsnr = {v: fused.fused_psnr(psnr[v], floor_psnr[fused.KIND][v], calib) for v in labels}
        named["fused"] = ({v: anomaly_scores(fpsnr[v]) for v in labels}, fpsnr, metrics_mod.summarize(y, cut(fpsnr)))
    shown, shown_psnr, shown_m = named[score]
    fpr, tpr, thr = metrics_mod.roc(y, cut(shown))
    margin = m["auc_micro"] - floor_aucs["auc_floor"]
    if margin <= 0:
        log.warning("evaluate: the model's micro AUC %.4f does not beat the training-free floor %.4f (%s %.4f, "
                    "%s %.4f): a score that learns nothing detects these anomalies as well", m["auc_micro"],
                    floor_aucs["auc_floor"], floor.NAMES[floor.FRAMEDIFF], floor_aucs["auc_floor_framediff"],
                    floor.NAMES[floor.RESIDUAL], floor_aucs["auc_floor_residual"])
    extra: dict[str, Any] = {"region_auc_micro": mr["auc_micro"], "region_auc_macro": mr["auc_macro"],
                             **floor_aucs, "auc_floor_margin": margin, "bootstrap_resamples": bootstrap}
    if "fused" in named:
        extra.update(fused_auc_micro=named["fused"][2]["auc_micro"], fused_auc_macro=named["fused"][2]["auc_macro"])
    if bootstrap > 0:
        raw = {v: -np.asarray(psnr[v], dtype=np.float64) for v in labels}
        extra.update(intervals(y, {"auc": cut(frame_scores), "auc_raw": cut(raw), "region_auc": cut(region_scores),
                                   **({"fused_auc": cut(named["fused"][0])} if "fused" in named else {})},
                               bootstrap))
    if pixel_masks is not None:
        h, w = (int(x) for x in detector.meta["size"])
        extra.update(pixel_metrics(pixel_masks, store, entries, errors, (h, w), bootstrap))
    calib = detector.meta.get("calibration")
    if calibration.usable(calib):     # every trained video model has one; a bare file (tests) may not
        calibrated = {v: calibration.to_score(psnr[v], calib) for v in labels}
        extra.update(alarms.at_operating_point(calibrated, labels, threshold, min_segment, fps or {}, counted=counted))
        extra.update(operating_threshold=threshold, min_segment=min_segment)

    result: dict[str, Any] = {
        **{k: m[k] for k in SUMMARY_KEYS},
        "frames_left_out": frames - m["frames"],
        "protocol": protocol,
        **describe(detector, dataset, model_ref, model_sha256, fingerprint),
        "video_ids": [e.id for e in entries],
        "video_auc": m["video_auc"],
        **extra,
    }

    write_text(out / "scores.csv", scores_csv(labels, psnr, shown, region, region_scores, counted, floor_scores))
    write_text(out / "roc.csv", roc_csv(fpr, tpr, thr))
    best = max(floor.KINDS, key=lambda k: floor_aucs[f"auc_floor_{k}"])
    with atomic_dir(out / "plots") as pdir:
        title = f"{result['method']} · {result['variant']} on {result['dataset']}" + (f" ({score} score)" if score != "frame" else "")
        plots.roc_plot(fpr, tpr, shown_m["auc_micro"], pdir / "roc.png", title, shown_m["eer"])
        for e in entries:
            plots.timeline_plot(e.id, shown[e.id], labels[e.id], pdir / f"timeline_{_safe(e.id)}.png",
                                shown_m["video_auc"][e.id], counted[e.id], floor_scores[best][e.id],
                                f"training-free floor ({floor.NAMES[best]})")
        if top_k > 0:
            by_id = {e.id: e for e in entries}
            items = []
            scores = shown
            for v, f in top_frames(shown_psnr, scores, top_k, detector.geometry):
                inp, pred = detector.frame_views(store.array(by_id[v]), f)
                items.append({"video": v, "frame": f, "score": float(scores[v][f]), "psnr": float(psnr[v][f]),
                              "label": int(labels[v][f]), "input": inp, "pred": pred})
            plots.topk_plot(items, pdir / "topk.png")
    return result
