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


def child(script: str, args: list[str]) -> dict | None:
    """Run `script args` in a fresh Python (a contender's row or memory in its own process) and
    return the JSON its last stdout line holds; None (stderr printed) if it failed."""
    out = subprocess.run([sys.executable, str(Path(script).resolve()), *args], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def load() -> list[float]:
    """1-, 5- and 15-minute load averages (what `uptime` prints)."""
    return [round(x, 2) for x in os.getloadavg()]


def alternate(contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
              on_round: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Per contender: warm-up calls, then `rounds` timed calls interleaved with the others'.

    A call must not return before its work is done (a train_step returns Python floats, which
    synchronises with a GPU). Wall time is what a user waits; CPU time (`time.process_time`, all
    of this process's threads) is the work done, which other jobs on the machine disturb far less
    (with one thread it is close to the step's cost on an idle machine; with more it also counts
    threads spinning at barriers). Returns {name: {"times", "median", "min", "cpu", "cpu_median"}}.
    """
    names = list(contenders)
    for n in names:
        for _ in range(warmup):
            contenders[n]()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            c0, t0 = time.process_time(), time.perf_counter()
            contenders[n]()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
        if on_round:
            on_round(r)
    return {n: {"times": [round(t, 5) for t in wall[n]], "median": statistics.median(wall[n]), "min": min(wall[n]),
                "cpu": [round(t, 5) for t in cpu[n]], "cpu_median": statistics.median(cpu[n])} for n in names}


def cold_compile_cache(names: list[str]) -> None:
    """torch.compile contenders compile into a fresh inductor cache, so their first call costs what
    a first training run pays (a re-run with the same shapes finds its kernels in the cache,
    /tmp/torchinductor_$USER, and compiles much faster). Call before torch is imported."""
    if any(n.endswith("+compile") for n in names):
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="pv-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
        atexit.register(shutil.rmtree, path, True)


def set_threads(n: int) -> None:
    """--threads of the benchmark scripts (0: torch's default: OMP_NUM_THREADS, else every core)."""
    if n:
        from pseudovad.device import set_threads as apply

        apply(n)


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


def write_result(name: str, machine_info: dict, rows: list[dict], key: tuple[str, ...], **extra) -> Path:
    """benchmarks/results/<name>.json: {"rows": [...], ...}. Rows from earlier invocations whose
    `key` fields differ from every new row's are kept (e.g. a 1-thread run next to a 2-thread one),
    so one file holds the latest measurement of every configuration; each row carries the machine,
    date and load it was measured with."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    for r in rows:
        r.setdefault("machine", machine_info)
    new_keys = {tuple(r.get(k) for k in key) for r in rows}
    old = []
    if path.is_file():
        try:
            old = [r for r in json.loads(path.read_text()).get("rows", []) if tuple(r.get(k) for k in key) not in new_keys]
        except (ValueError, AttributeError):
            old = []
    path.write_text(json.dumps({"rows": old + rows, **extra}, indent=1) + "\n")
    return path


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"
