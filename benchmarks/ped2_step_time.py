"""Seconds per training step of candidate Ped2 profiles, measured round-robin in one process.

The machine is shared, so absolute times swing with the load; timing the candidates in turn
(one step of each, repeated) exposes them to the same load, and the ratio to the first
candidate is what a step budget is derived from. Each candidate is a method's real
`train_step` on a random batch of the profile's shape (LTGPA: p = 1 for pseudo variants, the
worst case; MAE-NCT: the given mode). Prints a table with `uptime` load before and after.

    .venv/bin/python benchmarks/ped2_step_time.py --rounds 8 \\
        --cand "64x96 w32 fp32:size=[64,96],width=[32,48,64,64],amp=false" \\
        --cand "64x96 w32 bf16:size=[64,96],width=[32,48,64,64],amp=true"

A candidate is `label:key=value,...` with keys method (ltgpa|mae_nct), size, width, g_width,
kind, mode, batch, amp, channels_last, patch, dim, depth, heads.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from contextlib import nullcontext

import _ped2  # noqa: F401  (puts src/ on sys.path)


def parse_cand(text: str) -> tuple[str, dict]:
    label, _, body = text.partition(":")
    opts: dict = {}
    for m in re.finditer(r"(\w+)=(\[[^\]]*\]|[^,]+)", body):
        k, v = m.group(1), m.group(2)
        opts[k] = json.loads(v) if v.startswith("[") else v
    return label.strip(), opts


def build(opts: dict):
    import torch

    from pseudovad import config as config_mod
    from pseudovad.training.methods import build_method

    method = opts.get("method", "ltgpa")
    size = opts.get("size", [64, 96])
    batch = int(opts.get("batch", 4))
    tree: dict = {"data": {"size": size}, "device": "cpu", "train": {"batch_size": batch, "lr": 1e-4}}
    if method == "ltgpa":
        width = opts.get("width", [32, 48, 64, 64])
        tree["model"] = {"method": "ltgpa", "ltgpa": {"width": width, "g_width": opts.get("g_width", width[:3])}}
        kind = opts.get("kind", "none")
        tree["pseudo"] = {"kind": kind, "p": 0.0 if kind == "none" else 1.0}
        shape = (batch, 1, 16, *size)
    else:
        tree["model"] = {"method": "mae_nct", "mae": {"patch_size": int(opts.get("patch", 8)),
                                                      "embed_dim": int(opts.get("dim", 96)),
                                                      "depth": int(opts.get("depth", 4)),
                                                      "heads": int(opts.get("heads", 4)), "in_frames": 4}}
        tree["pseudo"] = {"mode": opts.get("mode", "nct"), "mask_patch": int(opts.get("mask_patch", 16))}
        shape = (batch, 1, 5, *size)
    cfg = config_mod.from_dict(tree)
    torch.manual_seed(0)
    m = build_method(cfg, torch.device("cpu"))
    m.steps_per_epoch = 1000
    x = torch.rand(*shape) * 2 - 1
    if str(opts.get("channels_last", "false")).lower() == "true":
        for mod in m.modules().values():
            mod.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    amp = str(opts.get("amp", "false")).lower() == "true"
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else nullcontext
    gen = torch.Generator().manual_seed(0)

    def step() -> float:
        t0 = time.perf_counter()
        with ctx():
            m.train_step(x, gen)
        return time.perf_counter() - t0
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cand", action="append", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    cands = [parse_cand(c) for c in a.cand]
    steps = [build(o) for _, o in cands]
    for s in steps:
        for _ in range(a.warmup):
            s()
    load0 = os.getloadavg()[0]
    times: list[list[float]] = [[] for _ in cands]
    for _ in range(a.rounds):
        for i, s in enumerate(steps):
            times[i].append(s())
    load1 = os.getloadavg()[0]
    ref = min(times[0])
    print(f"load {load0:.2f} → {load1:.2f}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{a.rounds} rounds")
    print("| candidate | s/step best | s/step median | best / first |")
    print("|---|---:|---:|---:|")
    rows = []
    for (label, opts), t in zip(cands, times):
        rows.append({"label": label, "opts": opts, "best": min(t), "median": statistics.median(t)})
        print(f"| {label} | {min(t):.4f} | {statistics.median(t):.4f} | {min(t) / ref:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"load": [load0, load1], "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
