"""LTGPA training-step throughput and peak memory: baseline / gaussian / learned, CPU profile and paper size.

Each configuration runs in its own subprocess so peak memory (ru_maxrss on CPU,
torch.cuda.max_memory_allocated on CUDA) is that configuration's alone. A step is one call of
the method's train_step with p = 1 for the pseudo variants (the worst case: F step + G step),
p = 0 for the baseline, after warm-up steps; clips/s = batch / mean step time.

    .venv/bin/python benchmarks/ltgpa_speed.py [--device cpu|cuda] [--profiles cpu,paper] [--steps 3] [--warmup 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PROFILES = {
    "cpu": {"size": [64, 96], "width": [16, 24, 32, 32], "g_width": [16, 24, 32]},
    "paper": {"size": [256, 256], "width": [96, 128, 256, 256], "g_width": [96, 128, 256]},
}
VARIANTS = {"baseline": ("none", 0.0), "gaussian": ("gaussian", 1.0), "learned": ("learned", 1.0)}


def one(profile: str, variant: str, device: str, steps: int, batch: int, threads: int, warmup: int = 2) -> dict:
    import torch

    from pseudovad import config as config_mod
    from pseudovad.training.ltgpa import LTGPAMethod

    if threads:
        torch.set_num_threads(threads)
    prof = PROFILES[profile]
    kind, p = VARIANTS[variant]
    cfg = config_mod.from_dict({"data": {"size": prof["size"]}, "device": device,
                                "model": {"ltgpa": {"width": prof["width"], "g_width": prof["g_width"]}},
                                "pseudo": {"kind": kind, "p": p}, "train": {"batch_size": batch}})
    dev = torch.device(device)
    torch.manual_seed(0)
    m = LTGPAMethod(cfg, dev)
    x = (torch.rand(batch, 1, 16, *prof["size"]) * 2 - 1).to(dev)
    gen = torch.Generator().manual_seed(0)
    for _ in range(warmup):
        m.train_step(x, gen)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = []
    for _ in range(steps):
        t0 = time.perf_counter()
        m.train_step(x, gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t.append(time.perf_counter() - t0)
    step_s = sum(t) / len(t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"profile": profile, "variant": variant, "device": device, "batch": batch,
            "input": f"16x{prof['size'][0]}x{prof['size'][1]}", "step_s": step_s,
            "clips_per_s": batch / step_s, "peak_mib": peak, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profiles", default="cpu,paper")
    ap.add_argument("--variants", default="baseline,gaussian,learned")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        prof, var = a.one.split(":")
        print(json.dumps(one(prof, var, a.device, a.steps, a.batch, a.threads, a.warmup)))
        return
    rows = []
    for prof in a.profiles.split(","):
        for var in a.variants.split(","):
            out = subprocess.run([sys.executable, __file__, "--one", f"{prof}:{var}", "--device", a.device,
                                  "--steps", str(a.steps), "--batch", str(a.batch), "--threads", str(a.threads),
                                  "--warmup", str(a.warmup)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| profile | variant | device | input (T×H×W) | batch | step (s) | clips/s | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mem = "GPU " if r["device"] == "cuda" else "RSS "
        print(f"| {r['profile']} | {r['variant']} | {r['device']} ({r['threads']} threads) | {r['input']} | {r['batch']} | "
              f"{r['step_s']:.3f} | {r['clips_per_s']:.2f} | {mem}{r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
