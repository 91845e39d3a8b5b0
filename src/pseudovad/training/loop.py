"""The training loop shared by every method.

Data order is a function of (seed, epoch) alone, and every random draw of the method comes from
one seeded generator that is checkpointed, so a run killed at any step and resumed from its
last checkpoint replays the same batches and finishes with the same number of steps.
"""
from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pseudovad.config import Config
from pseudovad.errors import TrainingError
from pseudovad.files import write_text
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


def _first(batch: Any) -> torch.Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def _read_history(path: Path, before_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["epoch"] < before_epoch]


def fit(cfg: Config, method: Method, dataset: Dataset, out: Path, callbacks: list[Callback] | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Train `method` on `dataset` for cfg.train.epochs (or max_steps); resumable from out/checkpoints."""
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints" / "last.pt"
    history_path = out / "history.jsonl"
    phash = checkpoint.params_hash(cfg.to_dict())
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(dataset)
    per_epoch = steps_per_epoch(n, cfg)
    limit = total_steps(n, cfg)
    method.steps_per_epoch = per_epoch

    state = checkpoint.load(ckpt, method, gen, phash) or {
        "epoch": 0, "step": 0, "batch": 0, "sums": {}, "counts": {}, "clips": 0, "seconds": 0.0}
    history = _read_history(history_path, state["epoch"])
    device = method.device
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if cfg.train.amp else nullcontext()

    def save_ckpt() -> None:
        checkpoint.save(ckpt, method, gen, state, phash)

    # a checkpoint taken mid-epoch at the step limit still owes that epoch its wrap-up
    while state["epoch"] < cfg.train.epochs and (state["step"] < limit or state["batch"] > 0):
        epoch = state["epoch"]
        order = epoch_order(n, cfg.seed, epoch, cfg.train.max_clips_per_epoch)
        batches = [order[i:i + cfg.train.batch_size].tolist() for i in range(0, len(order), cfg.train.batch_size)]
        remaining = batches[state["batch"]:] if state["step"] < limit else []
        loader = DataLoader(dataset, batch_sampler=remaining, num_workers=cfg.data.num_workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        method.train()
        bar = tqdm(loader, total=len(remaining), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   unit="batch", leave=False, disable=None if progress else True)
        t0 = time.perf_counter()
        for batch in bar:
            x = _first(batch).to(device, non_blocking=True)
            with amp:
                rec = method.train_step(x, gen)
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
        record.update({k: state["sums"][k] / state["counts"][k] for k in sorted(state["sums"])})
        record.update(method.lrs())
        record["clips_per_s"] = state["clips"] / state["seconds"] if state["seconds"] > 0 else 0.0
        for cb in callbacks or []:
            cb(epoch, record, method)
        history.append(record)
        write_text(history_path, "".join(json.dumps(r) + "\n" for r in history))
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in record.items()
                                                       if isinstance(v, float)))
        state.update({"epoch": epoch + 1, "batch": 0, "sums": {}, "counts": {}, "clips": 0, "seconds": 0.0})
        save_ckpt()
    return {"steps": state["step"], "epochs": state["epoch"], "history": history,
            "final": history[-1] if history else {}}
