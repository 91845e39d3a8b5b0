"""What the speed benchmarks (ltgpa_speed.py, mae_speed.py, loader_speed.py) share.

- `alternate`: contenders timed in one process, one step each per round, the order rotated every
  round (ABC, BCA, CAB, …), so a burst of load from other jobs on a shared machine hits every
  contender alike and ratios stay meaningful even when absolute times do not;
- `machine`: CPU model, clock, flags, cores and the load average, recorded with every result;
- `peaks`: this CPU's theoretical fp32 and bf16 GFLOP/s (how they are estimated is in the doc
  of `peaks` and printed with every roofline line);
- `write_result`: benchmarks/results/<name>.json.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
RESULTS = REPO / "benchmarks" / "results"


def load() -> list[float]:
    """1-, 5- and 15-minute load averages (what `uptime` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


def alternate(contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
              on_round: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Per contender: warm-up calls, then `rounds` timed calls interleaved with the others'.

    A call must not return before its work is done (a train_step returns Python floats, which
    synchronises with a GPU). Returns {name: {"times": [...], "median": s, "min": s}}.
    """
    names = list(contenders)
    for n in names:
        for _ in range(warmup):
            contenders[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            contenders[n]()
            times[n].append(time.perf_counter() - t0)
        if on_round:
            on_round(r)
    return {n: {"times": [round(t, 5) for t in ts], "median": statistics.median(ts), "min": min(ts)}
            for n, ts in times.items()}


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            k, _, v = line.partition(":")
            k = k.strip()
            if k and k not in info:
                info[k] = v.strip()
    except OSError:
        pass
    return info


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    m = {"date": dt.datetime.now().isoformat(timespec="minutes"), "host": platform.node(),
         "cpu": info.get("model name", platform.processor()), "cpu_mhz": float(info.get("cpu MHz", 0) or 0),
         "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
         "flags": sorted(f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags),
         "load_before": load()}
    try:
        m["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=REPO, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return m


def peaks(m: dict) -> dict:
    """Theoretical peak GFLOP/s of the cores torch uses: threads × clock × FLOPs per cycle.

    fp32: AVX-512 with two FMA units per core: 2 units × 16 fp32 lanes × 2 FLOPs (mul + add)
    = 64 FLOPs/cycle. bf16: with AMX, Intel's figure for Sapphire Rapids' tile unit is 1,024
    bf16 ops/cycle/core (Intel AMX overview; "ops" counts multiply and add separately, as
    Intel's 256 int8 ops/cycle for AVX-512 VNNI do), i.e. 1,024 FLOPs/cycle; with AVX512_BF16
    only (vdpbf16ps, two ports × 32 bf16 pairs × 2) 128. Clock: /proc/cpuinfo's `cpu MHz` (the
    nominal clock a KVM guest sees; AVX-512/AMX licence clocks may be lower, turbo higher),
    so the peaks are estimates to within a few ten percent, not measurements.
    """
    ghz = m["cpu_mhz"] / 1000 or 1.0
    cores = m["threads"]
    fp32_per_cycle = 64 if "avx512f" in m["flags"] else 32   # AVX2: 2 × 8 lanes × 2
    bf16_per_cycle = 1024 if "amx_bf16" in m["flags"] else 128 if "avx512_bf16" in m["flags"] else fp32_per_cycle
    return {"fp32_gflops": cores * ghz * fp32_per_cycle, "bf16_gflops": cores * ghz * bf16_per_cycle,
            "how": f"{cores} threads × {ghz:.2f} GHz × {fp32_per_cycle} (fp32) / {bf16_per_cycle} (bf16) FLOPs/cycle"}


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"
