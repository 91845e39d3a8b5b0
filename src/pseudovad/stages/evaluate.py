"""`evaluate`: score every test frame with a trained model and report frame-level AUC.

The protocol (the LTGPA / MAE-NCT papers') and the files beside the numbers are
`pseudovad.evaluation.protocol`. Writes to `evaluate.out`: scores.csv, roc.csv (a DVC plot),
plots/ and metrics.json (a DVC metric), which change together (`files.staged_outputs`): a kill at
any instant leaves the previous evaluation or this one, never a mix. The test videos are checked
against the model (size, length, labels) before any frame is scored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pseudovad.config import Config
from pseudovad.data.store import FrameStore
from pseudovad.data.versioning import evaluation_version
from pseudovad.device import resolve_device
from pseudovad.errors import DataError
from pseudovad import registry, tracking
from pseudovad.evaluation import protocol
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import claim, settle, staged_outputs, write_json


def _evaluate(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
              out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the test split of `store` with `model` (a path or MLflow URI); write and return metrics."""
    model_ref = str(model) if model is not None else str(Path(cfg.train.out) / "model.pt")
    if model is None:
        settle(cfg.train.out)     # a train killed while committing model.pt: finish that first
    if model is None and not Path(model_ref).is_file():
        raise DataError(f"{model_ref}: model file not found (run `pseudovad train` first or pass --model)")
    out = Path(out or cfg.evaluate.out)
    fs = store if isinstance(store, FrameStore) else FrameStore(store or cfg.data.store)
    only = list(videos or cfg.evaluate.videos or []) or None
    entries = protocol.select_videos(fs, only)
    detector = Detector.load(registry.resolve(model_ref, cfg), resolve_device(cfg.device), cfg.evaluate.batch_size,
                             cfg.inference.amp, cfg.inference.memory_format)
    protocol.check_videos(detector, fs, entries)     # before any scoring: what would fail late
    with staged_outputs(out, "evaluate") as stage:   # scores, ROC, plots and metrics change together
        result = protocol.evaluate(detector, fs, entries, stage, dataset=cfg.data.name, model_ref=model_ref,
                                   fingerprint=evaluation_version(fs.root, [e.id for e in entries]), top_k=cfg.evaluate.top_k,
                                   progress=progress, score=cfg.evaluate.score,
                                   region_grid=tuple(cfg.evaluate.region_grid), pixel_masks=cfg.data.pixel_masks,
                                   bootstrap=cfg.evaluate.bootstrap)
        write_json(stage / "metrics.json", result)
    return result


# --- MLflow tracking (pseudovad.tracking; every call is a no-op when tracking.enabled is false) ---
def run(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
        out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the test split of `store` with `model` (a path or MLflow URI); write and return metrics.

    Inside an MLflow run: params, the AUCs / EER, the evaluation-set fingerprint (its DVC version,
    `pseudovad.data.versioning.evaluation_version`: what the promotion gate compares) and the
    model reference as tags, metrics.json, roc.csv and plots/ as artifacts.
    """
    folder = Path(out or cfg.evaluate.out)
    with claim(folder, "evaluate"):   # one evaluate per folder; a run a killed one left RUNNING is closed
        tracking.close_stale_runs(cfg, "evaluate", folder)
        with tracking.run(cfg, "evaluate", tags={"model": model, **tracking.out_tag(folder)}):
            result = _evaluate(cfg, model, store, folder, videos, progress)
            tracking.set_tags({"data.fingerprint": result["fingerprint"], "model": result["model"],
                               "train_fingerprint": result.get("train_fingerprint")})
            tracking.log_metrics({k: result.get(k) for k in ("auc_micro", "auc_macro", "auc_raw", "eer", "frames",
                                                             "anomalous_frames", "videos", "region_auc_micro",
                                                             "region_auc_macro", "pixel_auc", "auc_micro_ci_low",
                                                             "auc_micro_ci_high")})
            for name in ("metrics.json", "roc.csv"):
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


def main(cfg: Config, args) -> int:
    r = run(cfg, args.model, args.store, args.out, args.videos, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    macro = "n/a" if r["auc_macro"] is None else f"{r['auc_macro']:.4f}"
    print(f"evaluate: micro AUC {r['auc_micro']:.4f} (macro {macro} over {r['macro_videos']}/{r['videos']} videos, "
          f"raw {r['auc_raw']:.4f}, EER {r['eer']:.4f}) on {r['frames']} frames "
          f"({r['anomalous_frames']} anomalous) → {args.out or cfg.evaluate.out}")
    extras = [f"region-score micro AUC {r['region_auc_micro']:.4f}"]
    if r.get("auc_micro_ci_low") is not None:
        extras.append(f"95% interval of the micro AUC over videos {r['auc_micro_ci_low']:.4f}–{r['auc_micro_ci_high']:.4f}")
    if r.get("pixel_auc") is not None:
        extras.append(f"pixel AUC {r['pixel_auc']:.4f}")
    print("evaluate: " + "; ".join(extras))
    return 0
