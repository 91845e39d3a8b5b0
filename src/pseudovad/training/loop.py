"""The training loop shared by every method.

Data order is a function of (seed, epoch) alone, and every random draw of the method comes from
one seeded generator that is checkpointed, so a run killed at any step and resumed from its
last checkpoint replays the same batches and finishes with the same number of steps.

How the steps run — bf16 autocast or fp32 (`train.amp`), memory format
(`train.memory_format`), DataLoader workers (`data.num_workers`), torch threads — is resolved
once by `prepare`, logged, and returned with the result, so metrics.json and the MLflow run say
what a model was trained with. None of it changes data order or what a checkpoint holds:
weights, optimiser state and model.pt stay fp32.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pseudovad.config import Config
from pseudovad.device import Precision, resolve_amp, resolve_memory_format, torch_format
from pseudovad.errors import TrainingError
from pseudovad.files import write_text
from pseudovad.models import model_kind
from pseudovad.training import checkpoint
from pseudovad.training.method import Method

log = logging.getLogger(__name__)
Callback = Callable[[int, dict, Method], None]


def epoch_order(n: int, seed: int, epoch: int, limit: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[:limit] if 0 < limit < n else perm


def steps_per_epoch(n: int, cfg: Config) -> int:
    used = min(n, cfg.train.max_clips_per_epoch) if cfg.train.max_clips_per_epoch else n
    return math.ceil(used / cfg.train.batch_size)


def total_steps(n: int, cfg: Config) -> int:
    total = steps_per_epoch(n, cfg) * cfg.train.epochs
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def loader_workers(cfg: Config, device: torch.device) -> int:
    """`data.num_workers`, or when null: none on CPU (the step needs every core, and the
    memory-mapped store feeds it many times faster than it trains: benchmarks/loader_speed.py),
    up to 4 on CUDA, leaving one of this process's CPU threads to the training loop."""
    if cfg.data.num_workers is not None:
        return cfg.data.num_workers
    return 0 if device.type != "cuda" else max(0, min(4, torch.get_num_threads() - 1))


@dataclass(frozen=True)
class Runtime:
    """How a run's steps execute (resolved from params and the device; see the module doc)."""

    precision: Precision
    memory_format: str      # channels_last | contiguous
    input_format: torch.memory_format   # what the loop turns each batch into
    num_workers: int
    threads: int
    compile: bool

    def record(self) -> dict[str, Any]:
        """Flat keys for metrics.json and the run's MLflow tags."""
        return {"amp": self.precision.name, "amp_reason": self.precision.reason,
                "memory_format": self.memory_format, "num_workers": self.num_workers,
                "threads": self.threads, "compile": self.compile}

    def describe(self) -> str:
        return (f"{'bf16 autocast' if self.precision.dtype is not None else 'fp32'} ({self.precision.reason}), "
                f"{self.memory_format} memory format, {self.threads} torch threads, "
                f"{self.num_workers} loader workers{', torch.compile' if self.compile else ''}")


def prepare(cfg: Config, method: Method) -> Runtime:
    """Resolve the run's precision, layout and loader workers, and put the method's modules in
    that memory format (weights keep their dtype: autocast casts per op, fp32 stays the master).

    channels_last means channels_last_3d for the video models' 5-D weights and batches,
    channels_last for the image variant's 4-D ones; for the ViT it applies to the patch
    embedding's weight only (the ViT flattens its input itself, so batches stay as they are).
    """
    device = method.device
    kind = model_kind(cfg)
    fmt = resolve_memory_format(cfg.train.memory_format, kind, device)
    ndim = 5 if kind == "video" else 4
    if fmt == "channels_last":
        for m in method.modules().values():
            m.to(memory_format=torch_format(fmt, ndim))
    input_format = torch_format(fmt, ndim) if kind != "vit" else torch.contiguous_format
    return Runtime(resolve_amp(cfg.train.amp, device), fmt, input_format, loader_workers(cfg, device),
                   torch.get_num_threads(), cfg.train.compile)


class EpochBatches:
    """The batch sampler of the one DataLoader a run uses: `fit` swaps in each epoch's batches
    before iterating, so with workers the same (persistent) worker processes serve every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Batches(Dataset):
    """A dataset with `batch(indices)` (ClipDataset) seen as one item per batch: the loader then
    fetches each batch in one gather (`batch_size=None`: no per-item fetch, no collation)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]):
        return self.dataset.batch(indices)


def make_loader(dataset: Dataset, sampler: EpochBatches, runtime: Runtime, device: torch.device) -> DataLoader:
    """The training DataLoader: batches in `sampler`'s order (exactly; workers keep order),
    pinned memory on CUDA, and workers that live for the whole run."""
    common = dict(num_workers=runtime.num_workers, pin_memory=device.type == "cuda",
                  persistent_workers=runtime.num_workers > 0)
    if callable(getattr(dataset, "batch", None)):
        return DataLoader(_Batches(dataset), sampler=sampler, batch_size=None, **common)
    return DataLoader(dataset, batch_sampler=sampler, **common)


def _first(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


HISTORY = "history.json"


def _extras(batch: Any) -> dict[str, torch.Tensor]:
    """What a dataset built with the method's lookahead adds to each batch: the windows' reach
    (`Method.train_step`); nothing for plain clip batches."""
    if isinstance(batch, (list, tuple)) and len(batch) > 3:
        return {"reach": batch[3]}
    return {}


def epoch_record(sums: dict[str, float], counts: dict[str, int]) -> dict[str, float]:
    """Per-epoch values of the logged scalars: means over the batches that logged them, and sums
    for counts (keys starting with `n_`, e.g. clips left out of pseudo batches)."""
    return {k: sums[k] if k.startswith("n_") else sums[k] / counts[k] for k in sorted(sums)}


def _read_history(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = json.loads(path.read_text())
    return [r for r in rows if r["epoch"] < before_epoch]


def fit(cfg: Config, method: Method, dataset: Dataset, out: Path, callbacks: list[Callback] | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Train `method` on `dataset` for cfg.train.epochs (or max_steps); resumable from out/checkpoints."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints" / "last.pt"
    # a JSON list (what `dvc plots` renders), rewritten whole each epoch: a few hundred records at most
    history_path = out / HISTORY
    phash = checkpoint.params_hash(cfg.to_dict())
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(dataset)
    per_epoch = steps_per_epoch(n, cfg)
    limit = total_steps(n, cfg)
    method.steps_per_epoch = per_epoch
    device = method.device
    runtime = prepare(cfg, method)   # before the checkpoint: loading keeps the modules' layout
    method.runtime = runtime
    log.info("train: %s", runtime.describe())

    state = checkpoint.load(ckpt, method, gen, phash) or {
        "epoch": 0, "step": 0, "batch": 0, "sums": {}, "counts": {}, "clips": 0, "seconds": 0.0}
    history = _read_history(history_path, state["epoch"])
    sampler = EpochBatches()
    loader = make_loader(dataset, sampler, runtime, device)

    def save_ckpt() -> None:
        checkpoint.save(ckpt, method, gen, state, phash)

    # a checkpoint taken mid-epoch at the step limit still owes that epoch its wrap-up
    while state["epoch"] < cfg.train.epochs and (state["step"] < limit or state["batch"] > 0):
        epoch = state["epoch"]
        order = epoch_order(n, cfg.seed, epoch, cfg.train.max_clips_per_epoch)
        batches = [order[i:i + cfg.train.batch_size].tolist() for i in range(0, len(order), cfg.train.batch_size)]
        sampler.batches = batches[state["batch"]:] if state["step"] < limit else []
        method.train()
        bar = tqdm(loader if sampler.batches else [], total=len(sampler.batches),
                   desc=f"epoch {epoch + 1}/{cfg.train.epochs}", unit="batch", leave=False,
                   disable=None if progress else True)
        t0 = time.perf_counter()
        for batch in bar:
            x = _first(batch).to(device, non_blocking=True)
            x = x.contiguous(memory_format=runtime.input_format)
            with runtime.precision.autocast(device):
                rec = method.train_step(x, gen, **_extras(batch))
            bad = {k: v for k, v in rec.items() if not math.isfinite(v)}
            if bad:
                raise TrainingError(
                    f"non-finite loss at step {state['step'] + 1} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                    f"training stopped, last good checkpoint kept at {ckpt}")
            for k, v in rec.items():
                state["sums"][k] = state["sums"].get(k, 0.0) + v
                state["counts"][k] = state["counts"].get(k, 0) + 1
            state["step"] += 1
            state["batch"] += 1
            state["clips"] += x.shape[0]
            bar.set_postfix({k: f"{v:.4f}" for k, v in rec.items() if k.startswith("loss")})
            if state["step"] % cfg.train.checkpoint_every == 0 or state["step"] >= limit:
                state["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_ckpt()
            if state["step"] >= limit:
                break
        state["seconds"] += time.perf_counter() - t0
        method.end_epoch(epoch)
        record = {"epoch": epoch, "step": state["step"]}
        record.update(epoch_record(state["sums"], state["counts"]))
        record.update(method.lrs())
        record["clips_per_s"] = state["clips"] / state["seconds"] if state["seconds"] > 0 else 0.0
        for cb in callbacks or []:
            cb(epoch, record, method)
        history.append(record)
        write_text(history_path, json.dumps(history, indent=1) + "\n")
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in record.items()
                                                       if isinstance(v, float)))
        state.update({"epoch": epoch + 1, "batch": 0, "sums": {}, "counts": {}, "clips": 0, "seconds": 0.0})
        save_ckpt()
    return {"steps": state["step"], "epochs": state["epoch"], "history": history,
            "final": history[-1] if history else {}, "runtime": runtime.record()}
