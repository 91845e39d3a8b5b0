"""`train`: fit a detector on normal footage (LTGPA or MAE-NCT), resumable after a kill.

Reads training videos from the frame store (or CIFAR-10 batches for the LTGPA image variant),
trains with the method's update rule, and writes into `train.out`:
  model.pt          the detector alone + the config and pre-processing to rebuild it
  metrics.json      summary: steps, final losses, validation PSNR, throughput
  history.jsonl     one record per epoch (losses, noise norm, learning rates, clips/s)
  checkpoints/      last.pt / prev.pt: re-running after a kill resumes from here
The tail (`train.val_fraction`) of every training video is held out as normal validation
footage: its PSNR statistics are stored in model.pt as the calibration `score` uses to turn
PSNR into an anomaly score on unlabelled footage.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pseudovad import config as config_mod
from pseudovad.calibration import calibrate
from pseudovad.config import Config
from pseudovad.data.clips import ClipDataset
from pseudovad.data.store import FrameStore
from pseudovad.device import resolve_device
from pseudovad.errors import DataError, TrainingError
from pseudovad.evaluation.psnr import frame_psnr
from pseudovad.files import write_json
from pseudovad.geometry import ClipGeometry
from pseudovad.models import scored_prediction, value_range
from pseudovad.models.model_file import load_model, model_meta, save_model
from pseudovad.training.loop import Callback, fit
from pseudovad.training.method import Method
from pseudovad.training.methods import build_method

log = logging.getLogger(__name__)


def video_datasets(cfg: Config, store: FrameStore) -> tuple[ClipDataset, ClipDataset | None, str]:
    """Training clips from the head of each training video, validation clips from its tail."""
    want = {"size": list(cfg.data.size), "channels": cfg.data.channels}
    if store.params != want:
        raise DataError(f"{store.root}: frame store was extracted with {store.params}, params say {want} "
                        "(re-run `pseudovad extract`)")
    entries = store.videos("training")
    if not entries:
        raise DataError(f"{store.root}: no training videos in the frame store")
    g = ClipGeometry.from_config(cfg)
    vr = value_range(cfg)
    cuts = []
    for e in entries:
        n_val = int(round(e.frames * cfg.train.val_fraction))
        cuts.append(e.frames - n_val if n_val >= g.span and e.frames - n_val >= g.span else e.frames)
    train = ClipDataset(store, entries, g.clip_len, cfg.data.clip_stride, g.frame_step, vr,
                        spans=[(0, c) for c in cuts])
    val_entries = [(e, c) for e, c in zip(entries, cuts) if c < e.frames]
    val = None
    if val_entries:
        val = ClipDataset(store, [e for e, _ in val_entries], g.clip_len, 1, g.frame_step, vr,
                          spans=[(c, e.frames) for e, c in val_entries])
    return train, val, store.fingerprint("training")


def image_datasets(cfg: Config) -> tuple[Dataset, Dataset | None, str]:
    from pseudovad.data.images import one_class

    if not cfg.train.cifar_root:
        raise DataError("train.cifar_root: the image variant needs a folder of CIFAR-10 python batches")
    tr, va, _ = one_class(cfg.train.cifar_root, cfg.train.normal_class, cfg.train.val_fraction,
                          cfg.data.channels, tuple(cfg.data.size))
    return tr, (va if len(va) else None), f"cifar10:{cfg.train.cifar_root}:class{cfg.train.normal_class}"


@torch.no_grad()
def validation_psnr(cfg: Config, model: torch.nn.Module, dataset: Dataset, device: torch.device) -> np.ndarray:
    """PSNR of the scored frame (video) or image on normal held-out data."""
    was_training = model.training
    model.eval()
    vr = value_range(cfg)
    scored = ClipGeometry.from_config(cfg).scored_index
    image = cfg.model.method == "ltgpa" and cfg.model.ltgpa.variant == "image"
    out = []
    for batch in DataLoader(dataset, batch_size=max(cfg.evaluate.batch_size, 1), shuffle=False):
        x = batch[0].to(device)
        if image:
            pred, target = model(x), x
        else:
            pred, target = scored_prediction(model, x, cfg.model.method, scored)
        out.append(frame_psnr(pred, target, vr).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def warm_start(method: Method, init: str, device: torch.device) -> None:
    model, meta = load_model(init, device)
    try:
        method.predictor().load_state_dict(model.state_dict())
    except RuntimeError as e:
        raise TrainingError(f"{init}: cannot warm-start, the model does not match params "
                            f"({str(e).splitlines()[0][:160]})") from None
    log.info("warm start from %s", init)


def _train(cfg: Config, store: str | Path | None = None, out: str | Path | None = None,
           callbacks: list[Callback] | None = None, progress: bool | None = None) -> dict[str, Any]:
    out = Path(out or cfg.train.out)
    progress = (not os.environ.get("PSEUDOVAD_NO_PROGRESS")) if progress is None else progress
    device = resolve_device(cfg.device)
    image = cfg.model.method == "ltgpa" and cfg.model.ltgpa.variant == "image"
    if image:
        train_set, val_set, fingerprint = image_datasets(cfg)
    else:
        train_set, val_set, fingerprint = video_datasets(cfg, FrameStore(store or cfg.data.store))
    torch.manual_seed(cfg.seed)
    method = build_method(cfg, device)
    if cfg.train.init and not (out / "checkpoints" / "last.pt").exists():
        warm_start(method, cfg.train.init, device)

    best: dict[str, Any] = {}
    cbs = list(callbacks or [])
    if image and val_set is not None:
        # one-class image protocol: keep the epoch with the best validation reconstruction
        def keep_best(epoch: int, record: dict, m: Method) -> None:
            val = float(np.mean(validation_psnr(cfg, m.predictor(), val_set, device)))
            record["val_psnr"] = val
            if not best or val > best["val_psnr"]:
                best.update(val_psnr=val, epoch=epoch,
                            state={k: v.detach().clone() for k, v in m.predictor().state_dict().items()})
        cbs.insert(0, keep_best)

    t0 = time.perf_counter()
    result = fit(cfg, method, train_set, out, cbs, progress)
    model = method.predictor()
    if best:
        model.load_state_dict(best["state"])
    val_psnr = validation_psnr(cfg, model, val_set, device) if val_set is not None else np.zeros(0)
    if val_psnr.size == 0:  # no held-out footage: calibrate on (a sample of) training clips, optimistic
        sample = torch.utils.data.Subset(train_set, range(0, len(train_set), max(1, len(train_set) // 512)))
        val_psnr = validation_psnr(cfg, model, sample, device)
        calib = calibrate(val_psnr, "training")
    else:
        calib = calibrate(val_psnr, "validation")
    meta = model_meta(cfg, calibration=calib, train_fingerprint=fingerprint, steps=result["steps"],
                      best_epoch=best.get("epoch"))
    save_model(out / "model.pt", model, meta)
    final = result["final"]
    summary = {
        "method": cfg.model.method, "pseudo_kind": cfg.pseudo.kind if cfg.model.method == "ltgpa" else cfg.pseudo.mode,
        "dataset": cfg.data.name, "steps": result["steps"], "epochs": result["epochs"],
        "train_clips": len(train_set), "val_psnr_mean": float(val_psnr.mean()) if val_psnr.size else None,
        "seconds": round(time.perf_counter() - t0, 2), "device": str(device), "fingerprint": fingerprint,
        **{k: v for k, v in final.items() if k not in ("epoch", "step")},
    }
    if best:
        summary["best_epoch"] = best["epoch"]
    write_json(out / "metrics.json", summary)
    return {**summary, "model": str(out / "model.pt"), "history": result["history"]}


# --- MLflow tracking (pseudovad.tracking; every call is a no-op when tracking.enabled is false) ---
def run(cfg: Config, store: str | Path | None = None, out: str | Path | None = None,
        callbacks: list[Callback] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """`_train` inside an MLflow run: params, one metrics step per epoch, the summary, the model.

    The run starts before any data is read, so an unreachable tracking server fails in seconds.
    """
    from pseudovad import tracking

    logged: set[int] = set()

    def log_epoch(epoch: int, record: dict, method: Method) -> None:
        tracking.log_epoch(record)
        logged.add(epoch)

    with tracking.run(cfg, "train"):
        result = _train(cfg, store, out, [*(callbacks or []), log_epoch], progress)
        for record in result["history"]:  # epochs a killed run trained before this one resumed
            if record["epoch"] not in logged:
                tracking.log_epoch(record)
        tracking.set_tags({"data.fingerprint": result["fingerprint"]})
        tracking.log_metrics({k: result.get(k) for k in ("val_psnr_mean", "seconds", "train_clips")})
        folder = Path(out or cfg.train.out)
        for name in ("metrics.json", "history.jsonl"):
            if (folder / name).is_file():
                tracking.log_artifacts(folder / name)
        tracking.log_model(folder / "model.pt")
    return result
# --- end MLflow tracking ---------------------------------------------------------------------------


def add_arguments(p) -> None:
    p.add_argument("--store", help="frame store (default: data.store)")
    p.add_argument("--out", help="output folder (default: train.out)")
    p.add_argument("--init", help="warm start: model.pt or models:/NAME@ALIAS (default: train.init)")


def main(cfg: Config, args) -> int:
    if args.init:
        cfg = config_mod.with_values(cfg, {"train.init": args.init})
    s = run(cfg, args.store, args.out)
    losses = ", ".join(f"{k}={s[k]:.4g}" for k in sorted(s) if k.startswith(("loss", "noise_norm")) and s[k] is not None)
    print(f"train: {s['method']} ({s['pseudo_kind']}) {s['steps']} steps on {s['device']} in {s['seconds']}s; "
          f"{losses} → {s['model']}")
    return 0
