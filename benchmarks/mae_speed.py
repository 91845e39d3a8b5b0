"""MAE-NCT training-step speed: fp32 / bf16 autocast × contiguous / channels-last, side by side.

Profiles: the CPU profile (configs/ped2-mae-cpu.yaml: ViT p8 d96 L4 h4 at 64×96, batch 8) and
the paper's ViT-B/16 at 224×224 (configs/ped2-mae-gpu.yaml, batch 2 here: a CPU cannot do 8),
in mode `nct` (one forward over [X; X^P], twice the tokens) and, with `--modes nct,none`, `none`.

As in ltgpa_speed.py, every contender of a row lives in one process and they are timed
alternately (benchmarks/_speed.py), through the training loop's own `prepare` + autocast.
channels_last for the ViT means the patch embedding's weight (the only conv); the batch stays.

`--memory`: peak memory per contender in fresh processes (CPU: ru_maxrss minus RSS before the
model is built, i.e. model + AdamW state + one step's activations; CUDA: max_memory_allocated).

    .venv/bin/python benchmarks/mae_speed.py [--device cpu] [--profiles cpu,paper] [--modes nct]
        [--rounds 9] [--memory] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys

import _speed

ROOT = _speed.REPO

PROFILES = {
    # name: (params file, overrides, batch size)
    "cpu": ("configs/ped2-mae-cpu.yaml", [], 8),
    "paper": ("configs/ped2-mae-gpu.yaml", [], 2),
}
# "+unfused": the step as it was before this benchmark's changes (fp32, for-loop AdamW): "today's" step
CONTENDERS = ["fp32/contiguous+unfused", "fp32/contiguous", "fp32/channels_last", "bf16/contiguous", "bf16/channels_last"]
REF = "fp32/contiguous+unfused"


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def contender(profile: str, mode: str, name: str, device_name: str):
    import torch

    from pseudovad import config as config_mod
    from pseudovad.device import resolve_device
    from pseudovad.training.loop import prepare
    from pseudovad.training.mae_nct import MAENCTMethod

    compile_ = name.endswith("+compile")
    amp, fmt = name.removesuffix("+compile").removesuffix("+unfused").split("/")
    path, overrides, batch = PROFILES[profile]
    cfg = config_mod.load(ROOT / path, overrides + [
        f"pseudo.mode={mode}", "model.mae.pretrained=null", f"train.batch_size={batch}",
        f"train.amp={'bf16' if amp == 'bf16' else 'off'}", f"train.memory_format={fmt}", f"device={device_name}",
        f"train.compile={str(compile_).lower()}"])
    device = resolve_device(device_name)
    torch.manual_seed(0)
    method = MAENCTMethod(cfg, device)
    method.steps_per_epoch = 100
    if name.endswith("+unfused"):  # the code before train.amp existed: fp32, for-loop AdamW
        t = cfg.train
        method.opt = torch.optim.AdamW(method.F.parameters(), lr=t.lr, betas=(0.9, 0.999), weight_decay=t.weight_decay)
        method.sched.optimizer = method.opt
    rt = prepare(cfg, method)
    h, w = cfg.data.size
    g = torch.Generator().manual_seed(0)
    clip = (torch.rand(batch, cfg.data.channels, cfg.model.mae.in_frames + 1, h, w, generator=g) * 2 - 1).to(device)
    gen = torch.Generator().manual_seed(0)
    method.train()

    def step():
        with rt.precision.autocast(device):
            return method.train_step(clip, gen)   # Python floats: waits for the device
    m = cfg.model.mae
    info = {"size": f"{h}×{w}", "vit": f"p{m.patch_size} d{m.embed_dim} L{m.depth} h{m.heads}",
            "params_m": sum(p.numel() for p in method.F.parameters()) / 1e6, "batch": batch}
    return step, rt, info


def row(profile: str, mode: str, names: list[str], device: str, rounds: int, warmup: int) -> dict:
    _speed.cold_compile_cache(names)
    import torch

    import time

    steps, info, compile_s = {}, {}, {}
    for n in names:
        steps[n], _, info = contender(profile, mode, n, device)
        if n.endswith("+compile"):  # the first call compiles; time it on its own
            t0 = time.perf_counter()
            steps[n]()
            compile_s[n] = time.perf_counter() - t0
    load0 = _speed.load()
    stats = _speed.alternate(steps, rounds, warmup)
    out = {"profile": profile, "mode": mode, "device": device, "threads": torch.get_num_threads(), **info,
           "rounds": rounds, "warmup": warmup, "load_before": load0, "load_after": _speed.load(),
           "contenders": stats}
    out["with_compile"] = bool(compile_s)
    if compile_s:
        out["compile_first_call_s"] = compile_s
    return out


def memory(profile: str, mode: str, name: str, device: str) -> float:
    import torch

    base = rss_mb()
    step, _, _ = contender(profile, mode, name, device)
    step()
    step()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base


def print_row(r: dict) -> None:
    c = r["contenders"]
    ref = c.get(REF, next(iter(c.values())))["median"]
    print(f"\n{r['profile']} / {r['mode']}: {r['size']}, ViT {r['vit']} ({r['params_m']:.2f} M params), "
          f"batch {r['batch']}, {r['device']} {r['threads']} threads, {r['rounds']} alternating rounds, "
          f"load {r['load_before'][0]} → {r['load_after'][0]}")
    cref = c.get(REF, next(iter(c.values())))["cpu_median"]
    print("| contender | step median (s) | step min (s) | clips/s (median) | × before (wall) | CPU s/step (median) | × before (CPU time) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n, s in c.items():
        print(f"| {n} | {_speed.fmt_s(s['median'])} | {_speed.fmt_s(s['min'])} | {r['batch'] / s['median']:.2f} | "
              f"{ref / s['median']:.2f} | {_speed.fmt_s(s['cpu_median'])} | {cref / s['cpu_median']:.2f} |")
    for n, t in r.get("compile_first_call_s", {}).items():
        eager, comp = c.get(n.removesuffix("+compile")), c[n]
        gain = eager["median"] - comp["median"] if eager else 0
        pay = f"pays back after {(t - eager['median']) / gain:.0f} steps" if gain > 0 else "never pays back (no per-step gain)"
        print(f"{n}: first call {t:.1f} s (compile + 1 step); per step {comp['median']:.3f} s "
              f"(CPU {comp['cpu_median']:.3f}) vs eager {eager['median']:.3f} s (CPU {eager['cpu_median']:.3f}) → {pay}")
    if r.get("peak_mib"):
        print("peak memory (MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in r["peak_mib"].items() if v))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profiles", default="cpu,paper")
    ap.add_argument("--modes", default="nct")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--paper-rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default, all cores)")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--mem", help=argparse.SUPPRESS)
    a = ap.parse_args()
    names = a.contenders.split(",")
    _speed.set_threads(a.threads)
    if a.row:
        prof, mode = a.row.split(":")
        print(json.dumps(row(prof, mode, names, a.device, a.rounds, a.warmup)))
        return 0
    if a.mem:
        prof, mode, name = a.mem.split(":")
        print(json.dumps({"peak_mib": memory(prof, mode, name, a.device)}))
        return 0
    m = _speed.machine()
    rows = []
    for prof in a.profiles.split(","):
        for mode in a.modes.split(","):
            rounds = a.paper_rounds if prof == "paper" else a.rounds
            r = _speed.child(__file__, ["--row", f"{prof}:{mode}", "--device", a.device, "--rounds", str(rounds), "--threads", str(a.threads),
                        "--warmup", str(a.warmup), "--contenders", ",".join(names)])
            if r is None:
                return 1
            if a.memory:
                r["peak_mib"] = {n: (_speed.child(__file__, ["--mem", f"{prof}:{mode}:{n}", "--device", a.device, "--threads", str(a.threads)]) or {}).get("peak_mib")
                                 for n in names}
            rows.append(r)
            print_row(r)
    m["load_after"] = _speed.load()
    print(f"\n{m['cpu']} ({', '.join(m['flags'])}), {m['threads']} torch threads, torch {m['torch']}, "
          f"load average before {m['load_before']} / after {m['load_after']} on {m['cores']} cores")
    if not a.no_write:
        path = _speed.write_result("mae_speed", m, rows, ("profile", "mode", "device", "threads", "with_compile"))
        print(f"→ {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
