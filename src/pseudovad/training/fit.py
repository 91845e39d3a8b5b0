"""Fitting a detector on normal footage (LTGPA or MAE-NCT), resumable after a kill.

What `pseudovad train`, Ray Tune trials and retraining rounds run. Reads training videos from the frame store (or CIFAR-10 batches for the LTGPA image variant),
trains with the method's update rule (`training.loop`), and writes into the output folder:
  model.pt          the detector alone + the config and pre-processing to rebuild it
  metrics.json      numbers: steps, final losses, validation PSNR, throughput (a DVC metric)
  provenance.json   what they are about: method, dataset, training fingerprint, device, model sha256
  history.json      one record per epoch (losses, noise norm, learning rates, clips/s; a DVC plot)
  checkpoints/      last.pt / prev.pt: re-running after a kill resumes from here
Each training video is split by time (`pseudovad.data.split`): the end (`train.holdout_fraction`)
is held out for evaluate's label-free check and never read here; before it, a validation tail
(`train.val_fraction`) whose PSNR statistics are stored in model.pt as the calibration `score`
uses to turn PSNR into an anomaly score on unlabelled footage; the rest trains.
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

from pseudovad.calibration import calibrate
from pseudovad.config import Config
from pseudovad.data.clips import ClipDataset
from pseudovad.data.split import VideoSplit, shortest_holdout_video, split_videos
from pseudovad.data.store import FrameStore
from pseudovad.data.versioning import dvc_hash
from pseudovad.device import resolve_device
from pseudovad.errors import DataError, TrainingError
from pseudovad.evaluation.fused import motion_calibration
from pseudovad.evaluation.streaming import Detector
from pseudovad import results
from pseudovad.files import claim, sha256_file, staged_outputs
from pseudovad.geometry import ClipGeometry
from pseudovad.method_spec import get_method
from pseudovad.models import value_range
from pseudovad.models.model_file import load_model, model_meta, read_model_file, save_model
from pseudovad.training import checkpoint
from pseudovad.training.loop import Callback, fit
from pseudovad.training.method import Method
from pseudovad.training.methods import build_method, method_class

log = logging.getLogger(__name__)

# the texts of train's summary: provenance.json (`pseudovad.results`); the rest is metrics.json
# (the runtime record's texts and flags too: amp, amp_reason, memory_format, compile)
PROVENANCE_KEYS = ("method", "pseudo_kind", "dataset", "device", "amp", "amp_reason", "memory_format", "compile",
                   "fingerprint", "model", "model_sha256")


def video_datasets(cfg: Config, store: FrameStore) -> tuple[ClipDataset, ClipDataset | None, str]:
    """Training clips from the head of each training video, validation clips from the tail
    before its held-out end (`pseudovad.data.split`: the held-out end is never read here).

    The training clips carry the footage ahead that the method asks for (`Method.lookahead`:
    skip-frame pseudo anomalies), taken from the same head only: never from the validation tail.
    """
    want = {"size": list(cfg.data.size), "channels": cfg.data.channels}
    if store.params != want:
        raise DataError(f"{store.root}: frame store was extracted with {store.params}, params say {want} "
                        "(re-run `pseudovad extract`)")
    entries = store.videos("training")
    if not entries:
        raise DataError(f"{store.root}: no training videos in the frame store")
    g = ClipGeometry.from_config(cfg)
    vr = value_range(cfg)
    splits = split_videos(entries, cfg.train.val_fraction, cfg.train.holdout_fraction, g.span)
    check_holdout(store, splits, cfg.train.holdout_fraction, g.span)
    lookahead = method_class(cfg).lookahead(cfg)
    train = ClipDataset(store, entries, g.clip_len, cfg.data.clip_stride, g.frame_step, vr,
                        spans=[s.train for s in splits], lookahead=lookahead)
    if lookahead:
        _check_jumps(cfg, train)
    val_entries = [(e, s) for e, s in zip(entries, splits) if s.val_end > s.train_end]
    val = None
    if val_entries:
        val = ClipDataset(store, [e for e, _ in val_entries], g.clip_len, 1, g.frame_step, vr,
                          spans=[s.validation for _, s in val_entries])
    return train, val, store.fingerprint("training")


def scored_frames(clips: ClipDataset, cfg: Config):
    """(frames, indices of the frames its clips score) per video of `clips`: where the model's
    calibration PSNRs come from, for statistics of the same frames without the model."""
    first = ClipGeometry.from_config(cfg).first_scored
    for vi, e in enumerate(clips.entries):
        starts = clips.index[clips.index[:, 0] == vi, 1]
        yield clips.store.array(e), starts + first


def check_holdout(store: FrameStore, splits: list[VideoSplit], fraction: float, span: int) -> None:
    """With `train.holdout_fraction` > 0, at least one video must be long enough to hold out a
    tail of it (else the label-free check would have nothing to score)."""
    if fraction > 0 and not any(s.val_end < s.frames for s in splits):
        longest = max(s.frames for s in splits)
        raise DataError(f"{store.root}: training footage too short to hold out train.holdout_fraction "
                        f"{fraction:g} of it: the longest video has {longest} frames, and a video needs "
                        f"{shortest_holdout_video(fraction, span)} for a held-out end of one {span}-frame clip "
                        "span; give longer videos or a larger fraction")


def _check_jumps(cfg: Config, train: ClipDataset) -> None:
    """Skip-frame training needs clips that can jump: refuse footage where none can, say how many can."""
    reach = np.array([train.reach(i) for i in range(len(train))])
    smallest = min(cfg.pseudo.jumps)
    steps = cfg.data.clip_len - 1
    need = steps * smallest + 1
    if not (reach >= need).any():
        raise DataError(f"pseudo.jumps: no training clip has the {need} frames a jump of {smallest} needs "
                        f"(training videos too short for skip-frame pseudo anomalies)")
    for j in sorted(set(cfg.pseudo.jumps)):
        log.info("skip-frame: %d of %d training clips can jump %d", int((reach >= steps * j + 1).sum()),
                 len(reach), j)


def image_datasets(cfg: Config) -> tuple[Dataset, Dataset | None, str]:
    from pseudovad.data.images import one_class

    if not cfg.train.cifar_root:
        raise DataError("train.cifar_root: the image variant needs a folder of CIFAR-10 python batches")
    tr, va, _ = one_class(cfg.train.cifar_root, cfg.train.normal_class, cfg.train.val_fraction,
                          cfg.data.channels, tuple(cfg.data.size))
    return tr, (va if len(va) else None), f"cifar10:{cfg.train.cifar_root}:class{cfg.train.normal_class}"


def validation_psnr(cfg: Config, model: torch.nn.Module, dataset: Dataset, device: torch.device) -> np.ndarray:
    """PSNR of the scored frame (video) or image on normal held-out data, scored as `evaluate` does."""
    detector = Detector(model, model_meta(cfg), device, amp=cfg.inference.amp,
                        memory_format=cfg.inference.memory_format)
    out = []
    with detector.evaluating():
        for batch in DataLoader(dataset, batch_size=max(cfg.evaluate.batch_size, 1), shuffle=False):
            out.append(detector.psnr(batch[0]))
    return torch.cat(out).numpy() if out else np.zeros(0)


def resuming(out: Path) -> bool:
    """A checkpoint in `out`: training continues from it, and a warm start does not apply."""
    return (out / "checkpoints" / "last.pt").exists()


def warm_start(method: Method, init: str, device: torch.device, cfg: Config | None = None) -> None:
    """The detector's weights from `init`, a model.pt or an MLflow URI (fetched by the registry
    from the tracking server `cfg` names)."""
    from pseudovad import registry

    model, meta = load_model(registry.resolve(init, cfg), device)
    try:
        method.predictor().load_state_dict(model.state_dict())
    except RuntimeError as e:
        raise TrainingError(f"{init}: cannot warm-start, the model does not match params "
                            f"({str(e).splitlines()[0][:160]})") from None
    log.info("warm start from %s", init)


def finished_outputs(cfg: Config, out: Path, steps: int, fingerprint: str) -> dict[str, Any] | None:
    """The results (metrics.json + provenance.json) of `out` if model.pt and they are this
    training's (same params, same training data, same number of steps), else None."""
    try:
        summary = results.read(out)
        meta = read_model_file(out / "model.pt")["meta"]
    except (OSError, ValueError, DataError):
        return None
    same = (summary.get("steps") == steps == meta.get("steps")
            and summary.get("fingerprint") == fingerprint == meta.get("train_fingerprint")
            and isinstance(meta.get("config"), dict)
            and checkpoint.params_hash(meta["config"]) == checkpoint.params_hash(cfg.to_dict()))
    return summary if same else None


def fit_detector(cfg: Config, store: str | Path | None = None, out: str | Path | None = None,
                 callbacks: list[Callback] | None = None, progress: bool | None = None) -> dict[str, Any]:
    """Train, calibrate on the validation tail, write model.pt, metrics.json and provenance.json
    into `out` (default `train.out`), together; `callbacks` run after every epoch. Returns the summary,
    the model path and the per-epoch history. `out` is claimed for the whole run (one trainer
    per folder: checkpoints are not shared). A re-run of a finished training rewrites nothing."""
    out = Path(out or cfg.train.out)
    with claim(out, "train"):
        return _fit_detector(cfg, store, out, callbacks, progress)


def _fit_detector(cfg: Config, store: str | Path | None, out: Path, callbacks: list[Callback] | None,
                  progress: bool | None) -> dict[str, Any]:
    progress = (not os.environ.get("PSEUDOVAD_NO_PROGRESS")) if progress is None else progress
    device = resolve_device(cfg.device)
    image = get_method(cfg.model.method).trains_on_images(cfg)
    data: dict[str, str] = {}
    if image:
        train_set, val_set, fingerprint = image_datasets(cfg)
    else:
        fs = FrameStore(store or cfg.data.store)
        train_set, val_set, fingerprint = video_datasets(cfg, fs)
        # the store's DVC hash (what dvc.lock records for it): the model's data version, tagged on
        # its registered versions and shown on the Kubeflow Model artifact
        data["data_version"] = dvc_hash(fs.root)
    torch.manual_seed(cfg.seed)
    method = build_method(cfg, device)
    if cfg.train.init and not resuming(out):
        warm_start(method, cfg.train.init, device, cfg)

    best: dict[str, Any] = {}
    trained: list[int] = []           # epochs this call trained (none: the checkpoint was final)
    cbs = [*(callbacks or []), lambda epoch, record, m: trained.append(epoch)]
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
    if not trained:
        kept = finished_outputs(cfg, out, result["steps"], fingerprint)
        if kept is not None:   # re-run of a finished training: its model.pt and results stand
            log.info("%s: training finished already; model.pt, metrics.json and provenance.json kept", out)
            return {**kept, "model": str(out / "model.pt"), "history": result["history"],
                    "runtime": result["runtime"]}
    model = method.predictor()
    if best:
        model.load_state_dict(best["state"])
    val_psnr = validation_psnr(cfg, model, val_set, device) if val_set is not None else np.zeros(0)
    if val_psnr.size == 0:  # no held-out footage: calibrate on (a sample of) training clips, optimistic
        clips = train_set.with_lookahead(0) if getattr(train_set, "lookahead", 0) else train_set
        sample = torch.utils.data.Subset(clips, range(0, len(clips), max(1, len(clips) // 512)))
        val_psnr = validation_psnr(cfg, model, sample, device)
        calib = calibrate(val_psnr, "training")
    else:
        calib = calibrate(val_psnr, "validation")
    if calib is not None and not image:    # the fused score's other half, on the same footage
        motion = motion_calibration(scored_frames(val_set if calib["source"] == "validation" else train_set, cfg))
        if motion is not None:
            calib["motion"] = motion
    meta = model_meta(cfg, calibration=calib, train_fingerprint=fingerprint, **data, steps=result["steps"],
                      best_epoch=best.get("epoch"))
    final = result["final"]
    summary = {
        "method": cfg.model.method, "pseudo_kind": get_method(cfg.model.method).pseudo_kind(cfg.to_dict()),
        "dataset": cfg.data.name, "steps": result["steps"], "epochs": result["epochs"],
        "train_clips": len(train_set), "val_psnr_mean": float(val_psnr.mean()) if val_psnr.size else None,
        "seconds": round(time.perf_counter() - t0, 2), "device": str(device), "fingerprint": fingerprint,
        "model": str(out / "model.pt"),
        **result["runtime"],   # amp, memory format, threads, loader workers, compile: as resolved
        **{k: v for k, v in final.items() if k not in ("epoch", "step")},
    }
    if best:
        summary["best_epoch"] = best["epoch"]
    with staged_outputs(out, "train") as stage:     # model.pt and its summary change together
        save_model(stage / "model.pt", model, meta)
        summary["model_sha256"] = sha256_file(stage / "model.pt")   # the bytes model.pt will have
        summary = results.write(stage, summary, PROVENANCE_KEYS)
    return {**summary, "history": result["history"], "runtime": result["runtime"]}
