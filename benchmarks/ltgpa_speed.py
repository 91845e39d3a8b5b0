"""LTGPA training-step speed: fp32 / bf16 autocast × contiguous / channels-last, side by side.

Rows: the baseline F step (`pseudo.kind: none`) and the learned step (F step + G step, p = 1),
at the CPU profile (configs/ped2-cpu.yaml: 16×64×96 clips, widths 32/48/64/64, G 32/48/64,
batch 4) and at paper size (16×256×256, 96/128/256/256, G 96/128/256, batch 4); `--profiles
image` adds the image variant (CIFAR-10 32×32×3, widths 64/128/128/256, batch 256).

Every contender of a row lives in the same process and is timed alternately (one step each per
round, order rotated every round; benchmarks/_speed.py), so load from other jobs hits them alike:
read the ratios, not the absolute times, on a shared machine. A step goes through the training
loop's own code: `training.loop.prepare` resolves train.amp / train.memory_format and puts the
models in that layout, the batch is converted to `input_format`, and `train_step` runs under
the same autocast as in `fit`.

Roofline: FLOPs of one F step (forward + backward of the baseline row) counted with
torch.utils.flop_counter.FlopCounterMode; achieved GFLOP/s = FLOPs / median step, against the
peaks of benchmarks/_speed.py `peaks` (threads × clock × FLOPs/cycle; see there how).

`--compile`: adds torch.compile (inductor) contenders for fp32/contiguous and the fastest eager
layout in bf16; reports compile time (first call minus an eager step) and when it pays back.

`--memory`: peak memory per contender, each in a fresh process (ru_maxrss on CPU,
torch.cuda.max_memory_allocated on CUDA), 1 warm-up + 1 step.

    .venv/bin/python benchmarks/ltgpa_speed.py [--device cpu|cuda] [--profiles cpu,paper]
        [--variants baseline,learned] [--rounds 7] [--compile] [--memory] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import _speed

PROFILES = {
    "cpu": {"size": [64, 96], "width": [32, 48, 64, 64], "g_width": [32, 48, 64], "batch": 4, "variant": "video"},
    "paper": {"size": [256, 256], "width": [96, 128, 256, 256], "g_width": [96, 128, 256], "batch": 4, "variant": "video"},
    "image": {"size": [32, 32], "width": [64, 128, 128, 256], "g_width": [64, 128, 128], "batch": 256,
              "variant": "image", "channels": 3},
}
VARIANTS = {"baseline": ("none", 0.0), "gaussian": ("gaussian", 1.0), "learned": ("learned", 1.0)}
# "+unfused": the step as it was before this benchmark's changes (fp32, for-loop Adam): "today's" step
EAGER = ["fp32/contiguous+unfused", "fp32/contiguous", "fp32/channels_last", "bf16/contiguous", "bf16/channels_last"]
REF = "fp32/contiguous+unfused"


def make_cfg(profile: str, variant: str, amp: str, fmt: str, compile_: bool, device: str):
    from pseudovad import config as config_mod

    prof = PROFILES[profile]
    kind, p = VARIANTS[variant]
    return config_mod.from_dict({
        "device": device, "data": {"size": prof["size"], "channels": prof.get("channels", 1)},
        "model": {"ltgpa": {"variant": prof["variant"], "width": prof["width"], "g_width": prof["g_width"]}},
        "pseudo": {"kind": kind, "p": p},
        "train": {"batch_size": prof["batch"], "lr": 5e-4, "amp": amp, "memory_format": fmt, "compile": compile_},
        "tracking": {"enabled": False}})


def batch_for(profile: str, device):
    import torch

    prof = PROFILES[profile]
    g = torch.Generator().manual_seed(0)
    c = prof.get("channels", 1)
    if prof["variant"] == "image":
        return torch.rand(prof["batch"], c, *prof["size"], generator=g).to(device)
    return (torch.rand(prof["batch"], c, 16, *prof["size"], generator=g) * 2 - 1).to(device)


def contender(profile: str, variant: str, name: str, device_name: str):
    """(step function, runtime) for one contender, e.g. "bf16/channels_last+compile"."""
    import torch

    from pseudovad.training.loop import prepare
    from pseudovad.training.ltgpa import LTGPAMethod

    compile_ = name.endswith("+compile")
    amp, fmt = name.removesuffix("+compile").removesuffix("+unfused").split("/")
    cfg = make_cfg(profile, variant, "bf16" if amp == "bf16" else "off", fmt, compile_, device_name)
    dev = torch.device(device_name)
    torch.manual_seed(0)
    m = LTGPAMethod(cfg, dev)
    if name.endswith("+unfused"):  # the code before train.amp existed: fp32, per-op (for-loop) Adam
        m.opt_f = torch.optim.Adam(m.F.parameters(), lr=cfg.train.lr)
        if m.G is not None:
            m.opt_g = torch.optim.Adam(m.G.parameters(), lr=cfg.train.lr)
    rt = prepare(cfg, m)
    m.train()
    x = batch_for(profile, dev).contiguous(memory_format=rt.input_format)
    gen = torch.Generator().manual_seed(0)

    def step():
        with rt.precision.autocast(dev):
            return m.train_step(x, gen)   # Python floats: waits for the device
    return step, rt, m


def f_step_flops(profile: str, device_name: str) -> int:
    """FLOPs of one F step (forward + backward, fp32, the baseline row's work)."""
    import torch
    import torch.nn.functional as Fn
    from torch.utils.flop_counter import FlopCounterMode

    from pseudovad.models import build_model

    cfg = make_cfg(profile, "baseline", "off", "contiguous", False, device_name)
    F = build_model(cfg).to(device_name)
    x = batch_for(profile, torch.device(device_name))
    with FlopCounterMode(display=False) as fc:
        Fn.mse_loss(F(x), x).backward()
    return fc.get_total_flops()


def row(profile: str, variant: str, names: list[str], device: str, rounds: int, warmup: int) -> dict:
    _speed.cold_compile_cache(names)
    import torch

    steps, runtimes, compile_s = {}, {}, {}
    for n in names:
        step, rt, _ = contender(profile, variant, n, device)
        if n.endswith("+compile"):  # the first call compiles; time it on its own
            t0 = time.perf_counter()
            step()
            compile_s[n] = time.perf_counter() - t0
        steps[n], runtimes[n] = step, rt
    load0 = _speed.load()
    stats = _speed.alternate(steps, rounds, warmup)
    out = {"profile": profile, "variant": variant, "device": device, "threads": torch.get_num_threads(),
           "batch": PROFILES[profile]["batch"], "rounds": rounds, "warmup": warmup,
           "load_before": load0, "load_after": _speed.load(), "contenders": stats,
           "amp_reason": {n: runtimes[n].precision.reason for n in names}}
    out["with_compile"] = bool(compile_s)
    if compile_s:
        out["compile_first_call_s"] = compile_s
    if variant == "baseline":
        out["f_step_flops"] = f_step_flops(profile, device)
    return out


def memory(profile: str, variant: str, name: str, device: str) -> float:
    import torch

    step, _, _ = contender(profile, variant, name, device)
    step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profiles", default="cpu,paper")
    ap.add_argument("--variants", default="baseline,learned")
    ap.add_argument("--contenders", default=",".join(EAGER))
    ap.add_argument("--rounds", type=int, default=7, help="timed steps per contender (alternating)")
    ap.add_argument("--paper-rounds", type=int, default=3, help="rounds for the paper profile (slow steps)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default, all cores)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile contenders")
    ap.add_argument("--memory", action="store_true", help="peak memory per contender (fresh processes)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--mem", help=argparse.SUPPRESS)
    a = ap.parse_args()
    names = a.contenders.split(",")
    _speed.set_threads(a.threads)
    if a.row:
        prof, var = a.row.split(":")
        print(json.dumps(row(prof, var, names, a.device, a.rounds, a.warmup)))
        return 0
    if a.mem:
        prof, var, name = a.mem.split(":")
        print(json.dumps({"peak_mib": memory(prof, var, name, a.device)}))
        return 0

    m = _speed.machine()
    pk = _speed.peaks(m) if a.device == "cpu" else None
    rows = []
    for prof in a.profiles.split(","):
        for var in a.variants.split(","):
            cont = list(names)
            if a.compile:
                cont += ["fp32/contiguous+compile", "bf16/channels_last+compile"]
            rounds = a.paper_rounds if prof == "paper" else a.rounds
            r = _speed.child(__file__, ["--row", f"{prof}:{var}", "--device", a.device, "--rounds", str(rounds), "--threads", str(a.threads),
                        "--warmup", str(a.warmup), "--contenders", ",".join(cont)])
            if r is None:
                return 1
            if a.memory:
                r["peak_mib"] = {}
                for n in cont:
                    mm = _speed.child(__file__, ["--mem", f"{prof}:{var}:{n}", "--device", a.device, "--threads", str(a.threads)])
                    r["peak_mib"][n] = mm and mm["peak_mib"]
            rows.append(r)
            print_row(r, pk)
    m["load_after"] = _speed.load()
    print(f"\n{m['cpu']} ({', '.join(m['flags'])}), {m['threads']} torch threads, torch {m['torch']}, "
          f"load average before {m['load_before']} / after {m['load_after']} on {m['cores']} cores")
    if pk:
        print(f"peaks: fp32 {pk['fp32_gflops']:.0f} GFLOP/s, bf16 {pk['bf16_gflops']:.0f} GFLOP/s ({pk['how']})")
    if not a.no_write:
        for r in rows:
            r["peaks"] = pk
        path = _speed.write_result("ltgpa_speed", m, rows, ("profile", "variant", "device", "threads", "with_compile"))
        print(f"→ {path.relative_to(_speed.REPO)}")
    return 0


def print_row(r: dict, pk: dict | None) -> None:
    c = r["contenders"]
    ref = c.get(REF, next(iter(c.values())))["median"]
    print(f"\n{r['profile']} / {r['variant']} (batch {r['batch']}, {r['device']}, {r['threads']} threads, "
          f"{r['rounds']} alternating rounds, load {r['load_before'][0]} → {r['load_after'][0]})")
    cref = c.get(REF, next(iter(c.values())))["cpu_median"]
    print("| contender | step median (s) | step min (s) | clips/s (median) | × before (wall) | CPU s/step (median) | × before (CPU time) | GFLOP/s (F step) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, s in c.items():
        gf = f"{r['f_step_flops'] / s['median'] / 1e9:.0f}" if "f_step_flops" in r else "–"
        print(f"| {n} | {_speed.fmt_s(s['median'])} | {_speed.fmt_s(s['min'])} | {r['batch'] / s['median']:.2f} | "
              f"{ref / s['median']:.2f} | {_speed.fmt_s(s['cpu_median'])} | {cref / s['cpu_median']:.2f} | {gf} |")
    for n, t in r.get("compile_first_call_s", {}).items():
        eager = c.get(n.removesuffix("+compile"))
        comp = c[n]
        gain = eager["median"] - comp["median"] if eager else 0
        pay = f"pays back after {(t - eager['median']) / gain:.0f} steps" if gain > 0 else "never pays back (no per-step gain)"
        print(f"{n}: first call {t:.1f} s (compile + 1 step); per step {comp['median']:.3f} s vs eager "
              f"{eager['median']:.3f} s → {pay}")
    if "f_step_flops" in r and pk:
        best = min(c, key=lambda n: c[n]["median"])
        ach = r["f_step_flops"] / c[best]["median"] / 1e9
        base = REF if REF in c else next(iter(c))
        fp = r["f_step_flops"] / c[base]["median"] / 1e9
        print(f"roofline (F step, {r['f_step_flops'] / 1e9:.1f} GFLOP fwd+bwd): {base} {fp:.0f} GFLOP/s = "
              f"{100 * fp / pk['fp32_gflops']:.0f}% of fp32 peak {pk['fp32_gflops']:.0f}; {best} {ach:.0f} GFLOP/s = "
              f"{100 * ach / pk['bf16_gflops']:.1f}% of bf16 peak {pk['bf16_gflops']:.0f} "
              f"({100 * ach / pk['fp32_gflops']:.0f}% of fp32 peak)")
    if r.get("peak_mib"):
        print("peak memory (MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in r["peak_mib"].items() if v))


if __name__ == "__main__":
    sys.exit(main())
