"""`evaluate`: how good a trained model is, with labels where they exist and without them.

Two checks, one stage, whichever the store allows (at least one, else a one-line error):
- the papers' protocol on the labelled test split (`pseudovad.evaluation.protocol`): frame-level
  AUCs, and the calibrated score's events found and false alarms at the operating threshold;
- the label-free check on the held-out end of each training video (`pseudovad.evaluation.labelfree`):
  false alarms on normal footage the model never saw, and injected anomalies of `evaluate.inject`
  kinds. Without labels it is the promotion gate's evidence, so the champion (or `--baseline`) is
  scored on the same footage beside the model, and its numbers go into metrics.json (`baseline_*`).
Writes to `evaluate.out`: scores.csv and roc.csv (a DVC plot) of the labelled test split — or, with
no labels, of the label-free check (held-out frames clean and injected, `copy` column; ROC of the
injected event frames against the clean ones) — plots/, provenance.json (the model file and its
sha256, the evaluation set's fingerprint …) and metrics.json (numbers only, a DVC metric;
`pseudovad.results`), which change together (`files.staged_outputs`): a kill at any instant leaves
the previous evaluation or this one, never a mix. Test videos and held-out footage are checked
against the model (size, length, labels) before any frame is scored.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pseudovad.config import Config
from pseudovad.data.store import FrameStore
from pseudovad.data.versioning import evaluation_version
from pseudovad.device import resolve_device
from pseudovad.errors import DataError
from pseudovad import registry, results, tracking
from pseudovad.evaluation import labelfree, protocol
from pseudovad.evaluation.alarms import operating_point
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import claim, settle, sha256_file, staged_outputs, write_text


def _model_ref(cfg: Config, model: str | Path | None) -> str:
    ref = str(model) if model is not None else str(Path(cfg.train.out) / "model.pt")
    if model is None:
        settle(cfg.train.out)     # a train killed while committing model.pt: finish that first
    if model is None and not Path(ref).is_file():
        raise DataError(f"{ref}: model file not found (run `pseudovad train` first or pass --model)")
    return ref


def _baseline(cfg: Config, baseline: str | None, sha256: str) -> registry.ResolvedModel | None:
    """The model the label-free numbers are compared with: `--baseline` (`none`: no comparison),
    else the registered champion when tracking is on; None when there is none, or it is this file."""
    if baseline == "none" or (baseline is None and not cfg.tracking.enabled):
        return None
    if baseline is None:
        champ = registry.champion(cfg)
        if champ is None:
            return None
        baseline = champ.uri
    resolved = registry.resolve_model(baseline, cfg)
    if not resolved.path.is_file():
        raise DataError(f"{resolved.path}: baseline model file not found")
    return None if sha256_file(resolved.path) == sha256 else resolved


@dataclass
class Plan:
    """What an evaluation will score, checked before anything is written: the labelled test
    videos, the held-out footage, the model, the baseline beside it."""

    store: FrameStore
    entries: list
    detector: Detector
    parts: list
    baseline: registry.ResolvedModel | None


def plan(cfg: Config, local: Path, sha256: str, store: str | Path | FrameStore | None, videos: list[str] | None,
         baseline: str | None = None) -> Plan:
    """Check the store against the model file `local` (`sha256` its hash): a labelled test split,
    held-out footage, or both (else a DataError); resolve the baseline for a label-free check."""
    fs = store if isinstance(store, FrameStore) else FrameStore(store or cfg.data.store)
    only = list(videos or cfg.evaluate.videos or []) or None
    entries = protocol.labelled_videos(fs, only)
    detector = Detector.load(local, resolve_device(cfg.device), cfg.evaluate.batch_size,
                             cfg.inference.amp, cfg.inference.memory_format)
    if entries:
        protocol.check_videos(detector, fs, entries)     # before any scoring: what would fail late
    parts = labelfree.held_out(fs, detector.meta, fps=cfg.evaluate.fps)
    if not entries and not parts:
        raise DataError(f"{fs.root}: nothing to evaluate on: no labelled test videos, and no held-out normal footage "
                        f"(the model was trained with train.holdout_fraction "
                        f"{detector.meta.get('config', {}).get('train', {}).get('holdout_fraction', 0)}; "
                        "train with e.g. 0.2, or give labelled test videos)")
    for p in parts:
        detector.check_compatible(next(e for e in fs.videos("training") if e.id == p.video), str(fs.root))
    return Plan(fs, entries, detector, parts, _baseline(cfg, baseline, sha256) if parts and not entries else None)


def _evaluate(cfg: Config, model_ref: str, sha256: str, planned: Plan, out: Path, progress: bool) -> dict[str, Any]:
    """Evaluate the planned model (`model_ref` as the user named it, `sha256` its hash) on the
    store's labelled test split and its held-out footage, whichever exist; write and return the results."""
    fs, entries, detector, parts, base = (planned.store, planned.entries, planned.detector, planned.parts,
                                          planned.baseline)
    kinds, seed = cfg.evaluate.inject, cfg.evaluate.inject_seed
    threshold, min_segment = operating_point(cfg.score)
    with staged_outputs(out, "evaluate") as stage:   # scores, ROC, plots, metrics and provenance change together
        result: dict[str, Any] = {}
        texts = [*TRACKING_KEYS, *labelfree.PROVENANCE_KEYS, *BASELINE_KEYS]
        if entries:
            fps = {e.id: e.fps or cfg.evaluate.fps for e in entries}
            result = protocol.evaluate(detector, fs, entries, stage, dataset=cfg.data.name, model_ref=model_ref,
                                       fingerprint=evaluation_version(fs.root, [e.id for e in entries]),
                                       model_sha256=sha256, top_k=cfg.evaluate.top_k, progress=progress,
                                       score=cfg.evaluate.score, region_grid=tuple(cfg.evaluate.region_grid),
                                       pixel_masks=cfg.data.pixel_masks, bootstrap=cfg.evaluate.bootstrap,
                                       protocol=cfg.evaluate.protocol, threshold=threshold,
                                       min_segment=min_segment, fps=fps)
            texts += protocol.PROVENANCE_KEYS
        if parts:
            numbers, scored = labelfree.evaluate(detector, fs, parts, kinds, seed, threshold, min_segment, progress)
            about = labelfree.describe(fs, detector, parts, kinds, seed, "holdout")
            result.update(numbers, **about)
            if not entries:       # the label-free check is the evaluation: its set, files and model record
                result.update(protocol.describe(detector, cfg.data.name, model_ref, sha256, about["labelfree_fingerprint"]))
                texts += protocol.PROVENANCE_KEYS
                write_text(stage / "scores.csv", labelfree.scores_csv(scored))
                write_text(stage / "roc.csv", protocol.roc_csv(*labelfree.roc_points(scored)))
            (stage / "plots").mkdir(exist_ok=True)
            labelfree.write_plots(scored, kinds, numbers, stage / "plots",
                                  f"{result.get('method')} · {result.get('variant')}: held-out normal footage")
            if base is not None:
                other = Detector.load(base.path, resolve_device(cfg.device), cfg.evaluate.batch_size,
                                      cfg.inference.amp, cfg.inference.memory_format)
                b, _ = labelfree.evaluate(other, fs, parts, kinds, seed, threshold, min_segment, progress)
                result.update({f"baseline_{k}": v for k, v in b.items() if k.startswith(("holdout_", "synthetic_"))})
                result.update(baseline_model=base.uri or base.ref, baseline_version=base.version,
                              baseline_sha256=sha256_file(base.path))
        result.update(evidence="labelled" if entries else "label-free", store=str(fs.root),
                      mlflow_run_id=tracking.active_run_id())
        result = results.write(stage, result, texts)
    return result


# the evaluation's place in MLflow, in provenance.json: `register` links the version to this run
TRACKING_KEYS = ("store", "mlflow_run_id", "evidence")
# the model the label-free numbers were measured beside (the champion, pinned by version)
BASELINE_KEYS = ("baseline_model", "baseline_version", "baseline_sha256")


def test_dataset(result: dict[str, Any]):
    """The evaluated test set as an MLflow dataset: its fingerprint (the DVC version of the labelled
    test split alone, `versioning.evaluation_version`, as `_evaluate` computed it) and the DVC hash
    of the whole frame store (`dvc_md5`, what dvc.lock records for it)."""
    from pseudovad.data import versioning

    store = result["store"]
    if result.get("evidence") == "label-free":      # the held-out ends of the training videos
        return tracking.dataset(f"{result['dataset']}-holdout", store, result["fingerprint"],
                                dvc_md5=versioning.dvc_hash(store), videos=result["holdout_video_ids"],
                                frames=result["holdout_frames"])
    return tracking.dataset(f"{result['dataset']}-testing", store, result["fingerprint"],
                            dvc_md5=versioning.dvc_hash(store), videos=result["video_ids"], frames=result["frames"])


# --- MLflow tracking (pseudovad.tracking; every call is a no-op when tracking.enabled is false) ---
def run(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
        out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False,
        baseline: str | None = None) -> dict[str, Any]:
    """Evaluate `model` (a path or MLflow URI) on `store`; write and return the results.
    `baseline`: the model the label-free numbers are compared with (default: the champion; "none").

    Inside an MLflow run (a child of the model's pipeline run): params, the AUCs / EER, the test
    set as a dataset input, the evaluation-set fingerprint (its DVC version,
    `pseudovad.data.versioning.evaluation_version`: what the promotion gate compares) and the model
    file's sha256 as tags, metrics.json, provenance.json, roc.csv and plots/ as artifacts; the
    numbers also go on the logged model of this file when train logged one (so its registered
    versions show them).
    """
    model_ref = _model_ref(cfg, model)
    local = registry.resolve(model_ref, cfg)
    if not local.is_file():
        raise DataError(f"{local}: model file not found")
    sha = sha256_file(local)
    folder = Path(out or cfg.evaluate.out)
    planned = plan(cfg, local, sha, store, videos, baseline)      # bad input: refused before anything is written
    with claim(folder, "evaluate"):   # one evaluate per folder; a run a killed one left RUNNING is closed
        tracking.close_stale_runs(cfg, "evaluate", folder)
        with tracking.run(cfg, "evaluate", tags={"model": model_ref, "model_sha256": sha, **tracking.out_tag(folder)},
                          model_sha256=sha):
            result = _evaluate(cfg, model_ref, sha, planned, folder, progress)
            tracking.set_tags({"data.fingerprint": result["fingerprint"],
                               "train_fingerprint": result.get("train_fingerprint")})
            numbers = {k: v for k, v in result.items() if results.finite(v)}   # metrics.json's top-level numbers
            tracking.log_metrics(numbers)
            if tracking.active_run_id():
                test_set = test_dataset(result)
                tracking.log_dataset(test_set, "testing")
                with tracking.errors("MLflow search_logged_models"):
                    logged = registry.find_logged_model(cfg, sha)
                if logged:
                    tracking.log_model_metrics(logged.removeprefix("models:/"), numbers, test_set)
                    tracking.set_tags({"pseudovad.logged_model": logged})
            for name in (results.METRICS, results.PROVENANCE, "roc.csv"):
                tracking.log_artifacts(folder / name)
            if (folder / "plots").is_dir():
                tracking.log_artifacts(folder / "plots", "plots")
    return result
# --- end MLflow tracking ---------------------------------------------------------------------------


def add_arguments(p) -> None:
    p.add_argument("--model", help="model.pt path or MLflow URI models:/NAME@ALIAS, runs:/… "
                                   "(default: <train.out>/model.pt)")
    p.add_argument("--store", help="frame store with the test split (default: data.store)")
    p.add_argument("--out", help="output folder (default: evaluate.out)")
    p.add_argument("--videos", nargs="+", metavar="ID", help="only these test videos (default: evaluate.videos, else all)")
    p.add_argument("--baseline", help="without labels: the model scored beside this one on the same held-out footage, "
                                      "for the promotion gate (model.pt or MLflow URI; default: the registered "
                                      "champion when tracking is on; none: no comparison)")


def _per_hour(v: Any) -> str:
    return "per hour: n/a (frame rate unknown: set evaluate.fps)" if v is None else f"{v:.1f} per hour"


def lines(r: dict[str, Any], out: str) -> list[str]:
    """What `evaluate` prints: the labelled numbers, then the operating point's, then the label-free check's."""
    printed = []
    if r.get("evidence") == "labelled":
        macro = "n/a" if r["auc_macro"] is None else f"{r['auc_macro']:.4f}"
        left = (f"; {r['frames_left_out']} edge frames no clip scores left out" if r.get("frames_left_out") else "")
        printed.append(f"evaluate: micro AUC {r['auc_micro']:.4f} (macro {macro} over {r['macro_videos']}/{r['videos']} "
                       f"videos, raw {r['auc_raw']:.4f}, EER {r['eer']:.4f}) on {r['frames']} frames "
                       f"({r['anomalous_frames']} anomalous{left}) → {out}")
        margin = r["auc_floor_margin"]
        printed.append(f"evaluate: training-free floor micro AUC {r['auc_floor']:.4f} (frame difference "
                       f"{r['auc_floor_framediff']:.4f}, temporal residual {r['auc_floor_residual']:.4f}); the model's "
                       f"margin over it {margin:+.4f}"
                       + ("" if margin > 0 else " — WARNING: the model does not beat a score that needs no training"))
        extras = [f"region-score micro AUC {r['region_auc_micro']:.4f}"]
        if r.get("fused_auc_micro") is not None:
            extras.append(f"fused-score micro AUC {r['fused_auc_micro']:.4f}")
        if r.get("auc_micro_ci_low") is not None:
            extras.append(f"95% interval of the micro AUC over videos {r['auc_micro_ci_low']:.4f}–{r['auc_micro_ci_high']:.4f}")
        if r.get("pixel_auc") is not None:
            extras.append(f"pixel AUC {r['pixel_auc']:.4f}")
        printed.append("evaluate: " + "; ".join(extras))
        if r.get("events") is not None:
            recall = "n/a" if r["event_recall"] is None else f"{r['event_recall']:.2f}"
            printed.append(f"evaluate: as `score` flags (calibrated score ≥ {r['operating_threshold']:g}, alarms of "
                           f"≥ {r['min_segment']} frames, no per-video normalisation): {r['events_found']}/{r['events']} "
                           f"anomalous events found (recall {recall}); {r['false_alarms']} false alarm(s), "
                           f"{_per_hour(r['false_alarms_per_hour'])} of normal footage; "
                           f"{100 * (r['flagged_share'] or 0):.2f}% of normal frames flagged")
    if r.get("holdout_frames"):
        kinds = ", ".join(f"{k} {r[f'synthetic_auc_{k}']:.3f}" if r.get(f"synthetic_auc_{k}") is not None else f"{k} n/a"
                          for k in r["inject_kinds"])
        recall = "n/a" if r["synthetic_event_recall"] is None else f"{r['synthetic_event_recall']:.2f}"
        head = "evaluate: label-free (no labelled test videos)" if r.get("evidence") == "label-free" else "evaluate: label-free"
        printed.append(f"{head}, on {r['holdout_frames']} held-out normal frames of {r['holdout_videos']} training "
                       f"video(s): {r['holdout_false_alarms']} false alarm(s), {_per_hour(r['holdout_false_alarms_per_hour'])}, "
                       f"{100 * r['holdout_flagged_share']:.2f}% of frames flagged; injected anomalies: AUC "
                       f"{r['synthetic_auc']:.3f} ({kinds}), events found {recall}"
                       + (f" → {out}" if r.get("evidence") == "label-free" else ""))
        if r.get("inject_resembles"):
            printed.append(f"evaluate: note: the `{r['inject_resembles']}` kind resembles this model's own pseudo "
                           "anomalies, so its score is partly a score on what it was trained to reject")
        if r.get("baseline_version") or r.get("baseline_model"):
            who = f"v{r['baseline_version']}" if r.get("baseline_version") else r["baseline_model"]
            printed.append(f"evaluate: beside it, {who} on the same footage: "
                           f"{100 * r['baseline_holdout_flagged_share']:.2f}% of frames flagged, injected-anomaly AUC "
                           f"{r['baseline_synthetic_auc']:.3f}")
    return printed


def main(cfg: Config, args) -> int:
    r = run(cfg, args.model, args.store, args.out, args.videos, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"),
            baseline=args.baseline)
    print("\n".join(lines(r, str(args.out or cfg.evaluate.out))))
    return 0
