"""MAE-NCT training speed and memory: clips/s and peak memory of one training step.

Profiles: the CPU profile (configs/ped2-mae-cpu.yaml's tiny ViT) and the paper's ViT-B/16 at
224×224, each in mode `nct` (one forward over [X; X^P], so twice the tokens) and `none`.

Memory: every row runs in a fresh child process so peaks do not leak between rows. On CPU
it is the process's peak resident set (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) minus the
resident set just before the model is built, i.e. model + optimiser state + one step's
activations; on CUDA it is `torch.cuda.max_memory_allocated()` after the steps.
Speed: the fastest and the median of `--steps` timed steps after one untimed warm-up step (on a
shared machine the fastest step is the one least slowed by other jobs).

    .venv/bin/python benchmarks/mae_speed.py [--steps 3] [--device cpu] [--only cpu-nct ...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROFILES = {
    # name: (params file, overrides, batch size)
    "cpu": ("configs/ped2-mae-cpu.yaml", [], 4),
    "paper": ("configs/ped2-mae-gpu.yaml", ["train.amp=false"], 2),
}


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def one(profile: str, mode: str, steps: int, device_name: str) -> dict:
    import torch

    from pseudovad import config as config_mod
    from pseudovad.device import resolve_device
    from pseudovad.training.mae_nct import MAENCTMethod

    path, overrides, batch = PROFILES[profile]
    cfg = config_mod.load(ROOT / path, overrides + [f"pseudo.mode={mode}", "model.mae.pretrained=null",
                                                    f"train.batch_size={batch}"])
    device = resolve_device(device_name)
    torch.manual_seed(0)
    base = rss_mb()
    method = MAENCTMethod(cfg, device)
    method.steps_per_epoch = 100
    h, w = cfg.data.size
    clip = torch.rand(batch, cfg.data.channels, cfg.model.mae.in_frames + 1, h, w, device=device) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    method.train()
    method.train_step(clip, gen)  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        method.train_step(clip, gen)  # returns Python floats: synchronises with the device
        times.append(time.perf_counter() - t0)
    times.sort()
    dt, median = times[0], times[len(times) // 2]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        how = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        how = "ru_maxrss − RSS before build"
    m = cfg.model.mae
    return {"profile": profile, "mode": mode, "size": f"{h}×{w}", "vit": f"p{m.patch_size} d{m.embed_dim} L{m.depth} h{m.heads}",
            "params_m": sum(p.numel() for p in method.F.parameters()) / 1e6, "batch": batch,
            "s_per_step": dt, "s_per_step_median": median, "clips_per_s": batch / dt, "peak_mb": peak, "memory": how,
            "threads": torch.get_num_threads(), "device": str(device)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", help="rows like cpu-nct paper-none (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        profile, mode = args.one.split("-")
        print(json.dumps(one(profile, mode, args.steps, args.device)))
        return 0
    rows = args.only or [f"{p}-{m}" for p in PROFILES for m in ("nct", "none")]
    results = []
    for row in rows:
        out = subprocess.run([sys.executable, __file__, "--one", row, "--steps", str(args.steps),
                              "--device", args.device], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(f"{row}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| profile | mode | frames | ViT | params (M) | batch | s/step best | s/step median | clips/s (best) | peak memory (MiB) |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['profile']} | {r['mode']} | {r['size']} | {r['vit']} | {r['params_m']:.2f} | {r['batch']} | "
              f"{r['s_per_step']:.3f} | {r['s_per_step_median']:.3f} | {r['clips_per_s']:.2f} | {r['peak_mb']:.0f} |")
    r = results[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ndevice {r['device']}, {r['threads']} torch threads, {args.steps} timed steps after 1 warm-up "
          f"(best = fastest step: least disturbed by other jobs); "
          f"memory: {r['memory']}; load average {load} on {os.cpu_count()} cores (other jobs slow CPU rows down)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
