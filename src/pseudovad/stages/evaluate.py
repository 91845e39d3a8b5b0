"""`evaluate`: score every test frame with a trained model and report frame-level AUC.

The protocol (the LTGPA / MAE-NCT papers') and the files beside the numbers are
`pseudovad.evaluation.protocol`. Writes to `evaluate.out`: scores.csv, roc.csv (a DVC plot),
plots/, provenance.json (the model file and its sha256, the test set's fingerprint …) and
metrics.json (numbers only, a DVC metric; `pseudovad.results`), which change together
(`files.staged_outputs`): a kill at any instant leaves the previous evaluation or this one, never
a mix. The test videos are checked against the model (size, length, labels) before any frame is scored.
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
from pseudovad import registry, results, tracking
from pseudovad.evaluation import protocol
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import claim, settle, sha256_file, staged_outputs


def _model_ref(cfg: Config, model: str | Path | None) -> str:
    ref = str(model) if model is not None else str(Path(cfg.train.out) / "model.pt")
    if model is None:
        settle(cfg.train.out)     # a train killed while committing model.pt: finish that first
    if model is None and not Path(ref).is_file():
        raise DataError(f"{ref}: model file not found (run `pseudovad train` first or pass --model)")
    return ref


def _evaluate(cfg: Config, model_ref: str, local: Path, sha256: str, store: str | Path | FrameStore | None,
              out: Path, videos: list[str] | None, progress: bool) -> dict[str, Any]:
    """Score the test split of `store` with the model file `local` (`model_ref` as the user named
    it, `sha256` its hash); write and return the results."""
    fs = store if isinstance(store, FrameStore) else FrameStore(store or cfg.data.store)
    only = list(videos or cfg.evaluate.videos or []) or None
    entries = protocol.select_videos(fs, only)
    detector = Detector.load(local, resolve_device(cfg.device), cfg.evaluate.batch_size,
                             cfg.inference.amp, cfg.inference.memory_format)
    protocol.check_videos(detector, fs, entries)     # before any scoring: what would fail late
    with staged_outputs(out, "evaluate") as stage:   # scores, ROC, plots, metrics and provenance change together
        result = protocol.evaluate(detector, fs, entries, stage, dataset=cfg.data.name, model_ref=model_ref,
                                   fingerprint=evaluation_version(fs.root, [e.id for e in entries]),
                                   model_sha256=sha256, top_k=cfg.evaluate.top_k, progress=progress,
                                   score=cfg.evaluate.score, region_grid=tuple(cfg.evaluate.region_grid),
                                   pixel_masks=cfg.data.pixel_masks, bootstrap=cfg.evaluate.bootstrap,
                                   protocol=cfg.evaluate.protocol)
        result.update(store=str(fs.root), mlflow_run_id=tracking.active_run_id())
        result = results.write(stage, result, (*protocol.PROVENANCE_KEYS, *TRACKING_KEYS))
    return result


# the evaluation's place in MLflow, in provenance.json: `register` links the version to this run
TRACKING_KEYS = ("store", "mlflow_run_id")


def test_dataset(result: dict[str, Any]):
    """The evaluated test set as an MLflow dataset: its fingerprint (the DVC version of the labelled
    test split alone, `versioning.evaluation_version`, as `_evaluate` computed it) and the DVC hash
    of the whole frame store (`dvc_md5`, what dvc.lock records for it)."""
    from pseudovad.data import versioning

    store = result["store"]
    return tracking.dataset(f"{result['dataset']}-testing", store, result["fingerprint"],
                            dvc_md5=versioning.dvc_hash(store), videos=result["video_ids"], frames=result["frames"])


# --- MLflow tracking (pseudovad.tracking; every call is a no-op when tracking.enabled is false) ---
def run(cfg: Config, model: str | Path | None = None, store: str | Path | FrameStore | None = None,
        out: str | Path | None = None, videos: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Score the test split of `store` with `model` (a path or MLflow URI); write and return the results.

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
    with claim(folder, "evaluate"):   # one evaluate per folder; a run a killed one left RUNNING is closed
        tracking.close_stale_runs(cfg, "evaluate", folder)
        with tracking.run(cfg, "evaluate", tags={"model": model_ref, "model_sha256": sha, **tracking.out_tag(folder)},
                          model_sha256=sha):
            result = _evaluate(cfg, model_ref, local, sha, store, folder, videos, progress)
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


def main(cfg: Config, args) -> int:
    r = run(cfg, args.model, args.store, args.out, args.videos, progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    macro = "n/a" if r["auc_macro"] is None else f"{r['auc_macro']:.4f}"
    left = (f"; {r['frames_left_out']} edge frames no clip scores left out" if r.get("frames_left_out")
            else "")
    print(f"evaluate: micro AUC {r['auc_micro']:.4f} (macro {macro} over {r['macro_videos']}/{r['videos']} videos, "
          f"raw {r['auc_raw']:.4f}, EER {r['eer']:.4f}) on {r['frames']} frames "
          f"({r['anomalous_frames']} anomalous{left}) → {args.out or cfg.evaluate.out}")
    margin = r["auc_floor_margin"]
    print(f"evaluate: training-free floor micro AUC {r['auc_floor']:.4f} (frame difference "
          f"{r['auc_floor_framediff']:.4f}, temporal residual {r['auc_floor_residual']:.4f}); the model's margin "
          f"over it {margin:+.4f}" + ("" if margin > 0 else
                                      " — WARNING: the model does not beat a score that needs no training"))
    extras = [f"region-score micro AUC {r['region_auc_micro']:.4f}"]
    if r.get("fused_auc_micro") is not None:
        extras.append(f"fused-score micro AUC {r['fused_auc_micro']:.4f}")
    if r.get("auc_micro_ci_low") is not None:
        extras.append(f"95% interval of the micro AUC over videos {r['auc_micro_ci_low']:.4f}–{r['auc_micro_ci_high']:.4f}")
    if r.get("pixel_auc") is not None:
        extras.append(f"pixel AUC {r['pixel_auc']:.4f}")
    print("evaluate: " + "; ".join(extras))
    return 0
