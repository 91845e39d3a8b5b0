"""The training loader alone against the training step: clips/s of each, at the CPU profile and at
paper size, on UCSD Ped2's training videos (../shared/data/ped2, extracted into data/ by this
script if needed).

Loader: the DataLoader `training.loop.fit` builds (`make_loader`, the run's resolved workers),
iterated over one full epoch order (`epoch_order(n, seed, 0)`, every training clip once),
including the loop's own per-batch work (`.to(device)` and the memory-format conversion).
Contenders, alternating epoch by epoch: the batch gather the loop uses (`ClipDataset.batch`:
one uint8 gather, one float conversion) and the per-clip fetch + default collation it replaced,
each with 0 and 2 workers. Step: `train_step` of the same profile at its default settings
(train.amp / memory_format auto), baseline F step (the fastest step, so the strictest test),
timed in the same invocation. The requirement: loader ≥ 10× the step's clips/s.

    .venv/bin/python benchmarks/loader_speed.py [--profiles cpu,paper] [--epochs 3] [--steps 5] [-p KEY=VALUE] [--no-write]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import _speed

PROFILES = {
    # name: (params file, batch of the step)
    "cpu": ("configs/ped2-cpu.yaml", 4),
    "paper": ("configs/ped2-gpu.yaml", 4),
}


def loaders(cfg, train_set, device):
    """name → a function that iterates one full epoch and returns the number of clips."""
    import torch
    from torch.utils.data import DataLoader

    from pseudovad.training.loop import EpochBatches, Runtime, epoch_order, make_loader, prepare
    from pseudovad.training.methods import build_method

    method = build_method(cfg, device)
    rt = prepare(cfg, method)
    order = epoch_order(len(train_set), cfg.seed, 0)
    bs = cfg.train.batch_size
    batches = [order[i:i + bs].tolist() for i in range(0, len(order), bs)]
    out = {}
    for workers in (0, 2):
        rtw = Runtime(rt.precision, rt.memory_format, rt.input_format, workers, rt.threads, rt.compile)
        for how in ("batch gather", "per-clip collate"):
            sampler = EpochBatches()
            if how == "batch gather":
                dl = make_loader(train_set, sampler, rtw, device)
            else:
                dl = DataLoader(train_set, batch_sampler=sampler, num_workers=workers,
                                pin_memory=device.type == "cuda", persistent_workers=workers > 0)

            def epoch(dl=dl, sampler=sampler):
                sampler.batches = batches
                n = 0
                for b in dl:
                    x = b[0].to(device, non_blocking=True).contiguous(memory_format=rt.input_format)
                    n += x.shape[0]
                return n
            out[f"{how}, {workers} workers"] = epoch
    return out, rt, method


def step_rate(cfg, method, rt, device, steps: int, batch: int) -> dict:
    import torch

    x = (torch.rand(batch, cfg.data.channels, cfg.data.clip_len, *cfg.data.size) * 2 - 1).to(device)
    x = x.contiguous(memory_format=rt.input_format)
    gen = torch.Generator().manual_seed(0)
    method.train()
    times, cpu = [], []
    for i in range(steps + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        with rt.precision.autocast(device):
            method.train_step(x, gen)
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"median": statistics.median(times), "min": min(times), "clips_per_s": batch / statistics.median(times),
            "cpu_median": statistics.median(cpu), "clips_per_cpu_s": batch / statistics.median(cpu)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="cpu,paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loader contender (alternating)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default, all cores)")
    ap.add_argument("-p", "--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override, e.g. -p data.root=/path/to/ped2 (from a worktree without ../shared)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    import os

    os.chdir(_speed.REPO)
    from pseudovad import config as config_mod
    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device
    from pseudovad.stages import extract as extract_stage
    from pseudovad.training.fit import video_datasets

    _speed.set_threads(a.threads)
    m = _speed.machine()
    device = resolve_device(a.device)
    rows = []
    for prof in a.profiles.split(","):
        path, batch = PROFILES[prof]
        cfg = config_mod.load(path, ["pseudo.kind=none", f"train.batch_size={batch}", f"device={a.device}", *a.set])
        extract_stage.run(cfg, progress=False)
        train_set, _, _ = video_datasets(cfg, FrameStore(cfg.data.store))
        fns, rt, method = loaders(cfg, train_set, device)
        load0 = _speed.load()
        ld = _speed.alternate(fns, a.epochs, warmup=1)   # the warm-up epoch also fills the page cache
        st = step_rate(cfg, method, rt, device, a.steps, batch)
        n = len(train_set)
        row = {"profile": prof, "device": a.device, "params": path, "clips": n, "input": f"{cfg.data.clip_len}x{cfg.data.size[0]}x{cfg.data.size[1]}",
               "batch": batch, "step": st, "amp": rt.precision.name, "memory_format": rt.memory_format,
               "default_workers": rt.num_workers, "load_before": load0, "load_after": _speed.load(),
               "threads": m["threads"],
               "loaders": {k: {"epoch_s_median": v["median"], "clips_per_s": n / v["median"],
                               "x_step": n / v["median"] / st["clips_per_s"], "epoch_cpu_s_median": v["cpu_median"],
                               "x_step_cpu": n / v["cpu_median"] / st["clips_per_cpu_s"]} for k, v in ld.items()}}
        rows.append(row)
        print(f"\n{prof}: {n} training clips of {row['input']}, batch {batch}; step ({rt.precision.name}, "
              f"{rt.memory_format}, baseline F step): {st['median']:.3f} s median = {st['clips_per_s']:.1f} clips/s "
              f"(CPU {st['cpu_median']:.3f} s = {st['clips_per_cpu_s']:.1f} clips per CPU-s); "
              f"load {load0[0]} → {row['load_after'][0]}")
        print("| loader | epoch (s, median) | clips/s | × step clips/s | epoch CPU s | × step (CPU time) |")
        print("|---|---:|---:|---:|---:|---:|")
        for k, v in row["loaders"].items():
            print(f"| {k} | {v['epoch_s_median']:.2f} | {v['clips_per_s']:.0f} | {v['x_step']:.0f} | "
                  f"{v['epoch_cpu_s_median']:.2f} | {v['x_step_cpu']:.0f} |")
    m["load_after"] = _speed.load()
    print(f"\n{m['cpu']}, {m['threads']} torch threads, load average before {m['load_before']} / after "
          f"{m['load_after']} on {m['cores']} cores; default loader workers on {a.device}: {rows[0]['default_workers']}")
    if not a.no_write:
        p = _speed.write_result("loader_speed", m, rows, ("profile", "device"))
        print(f"→ {p.relative_to(_speed.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
