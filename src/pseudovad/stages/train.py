"""`train`: fit a detector on normal footage (LTGPA or MAE-NCT), resumable after a kill.

Writes into `train.out`: model.pt (the detector, its config, pre-processing and calibration),
metrics.json (numbers), provenance.json (texts), history.json (per epoch) and checkpoints/
(`pseudovad.training.fit` does the work); model.pt, metrics.json and provenance.json change
together. The MLflow run starts before any data is read, so an unreachable tracking server fails
in seconds; SIGTERM closes it KILLED, and a run a SIGKILLed trainer left RUNNING is closed by the
next train into the same folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudovad import config as config_mod
from pseudovad import results, tracking
from pseudovad.config import Config
from pseudovad.files import claim
from pseudovad.method_spec import get_method
from pseudovad.training.fit import fit_detector
from pseudovad.training.loop import HISTORY, Callback
from pseudovad.training.method import Method

SETTINGS = "params.yaml"   # the run's settings in its MLflow artifacts: `pseudovad train -P` takes it back


def run(cfg: Config, store: str | Path | None = None, out: str | Path | None = None,
        callbacks: list[Callback] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """`fit_detector` inside an MLflow run: params (also as one params.yaml artifact), one metrics
    step per epoch, the summary, the training split as a dataset input, the model (every tracking
    call is a no-op when tracking.enabled is false)."""
    logged: set[int] = set()

    def log_epoch(epoch: int, record: dict, method: Method) -> None:
        tracking.log_epoch(record)
        logged.add(epoch)

    folder = Path(out or cfg.train.out)
    with claim(folder, "train"):   # one trainer per folder; a run a killed trainer left RUNNING is closed
        tracking.close_stale_runs(cfg, "train", folder)
        with tracking.run(cfg, "train", tags=tracking.out_tag(folder)):
            tracking.log_text(config_mod.dump(cfg), SETTINGS)    # what it trains with, before it starts
            result = fit_detector(cfg, store, folder, [*(callbacks or []), log_epoch], progress)
            for record in result["history"]:  # epochs a killed run trained before this one resumed
                if record["epoch"] not in logged:
                    tracking.log_epoch(record)
            tracking.set_tags({"data.fingerprint": result["fingerprint"],
                               **{f"train.resolved.{k}": v for k, v in result["runtime"].items()}})
            tracking.log_metrics({k: result.get(k) for k in ("val_psnr_mean", "seconds", "train_clips")})
            if tracking.active_run_id():
                tracking.log_dataset(training_dataset(cfg, store, result), "training")
            for name in (results.METRICS, results.PROVENANCE, HISTORY):
                if (folder / name).is_file():
                    tracking.log_artifacts(folder / name)
            tracking.log_model(folder / "model.pt")
    return result


def training_dataset(cfg: Config, store: str | Path | None, result: dict[str, Any]):
    """The training data as an MLflow dataset: its fingerprint and the DVC hash of the frame store."""
    if get_method(cfg.model.method).trains_on_images(cfg):
        return tracking.dataset(f"{cfg.data.name}-training", cfg.train.cifar_root, result["fingerprint"],
                                clips=result["train_clips"])
    from pseudovad.data import versioning

    store = store or cfg.data.store
    return tracking.dataset(f"{cfg.data.name}-training", store, result["fingerprint"],
                            dvc_md5=versioning.dvc_hash(store), clips=result["train_clips"])


def add_arguments(p) -> None:
    p.add_argument("--store", help="frame store (default: data.store)")
    p.add_argument("--out", help="output folder (default: train.out)")
    p.add_argument("--init", help="warm start: model.pt or models:/NAME@ALIAS (default: train.init)")


def main(cfg: Config, args) -> int:
    if args.init:
        cfg = config_mod.with_values(cfg, {"train.init": args.init})
    s = run(cfg, args.store, args.out)
    losses = ", ".join(f"{k}={s[k]:.4g}" for k in sorted(s) if k.startswith(("loss", "noise_norm")) and s[k] is not None)
    print(f"train: {s['method']} ({s['pseudo_kind']}) {s['steps']} steps on {s['device']} "
          f"({s['amp']}, {s['memory_format']}) in {s['seconds']}s; "
          f"{losses} → {s['model']}")
    return 0
