"""Does bf16 autocast cost detection quality? fp32 against bf16 on the synthetic default.

The `make run` pipeline by hand, in a scratch folder: `pseudovad synthesize`, `extract`, then per
training seed `pseudovad train -p seed=S -p train.amp=off|bf16` and `pseudovad evaluate` on the
repository's params.yaml (the CPU profile: 4 epochs, widths 16/24/32/32, 64×96), MLflow off.
Same seed, same steps, same data: the two rows differ only in train.amp (memory format and
everything else auto). Reported: micro AUC per seed, the mean and spread, and the per-seed
difference bf16 − fp32, against the requirement |Δ| ≤ 0.5 point.

No hyper-parameter is chosen here: this is a check of a fixed setting, reported on the whole
synthetic test split.

    .venv/bin/python benchmarks/amp_quality.py [--seeds 0,1,2] [--threads N] [--out-root runs/amp_quality] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _speed

from pseudovad import results

ROOT = _speed.REPO


def cli(args: list[str], cwd: Path, threads: int = 0) -> str:
    env = {**os.environ, "PSEUDOVAD_NO_PROGRESS": "1", "MPLBACKEND": "Agg"}
    exe = Path(sys.executable).with_name("pseudovad")
    extra = ["--threads", str(threads)] if threads else []
    out = subprocess.run([str(exe), *args, *extra, "-p", "tracking.enabled=false"], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pseudovad {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out-root", default="runs/amp_quality")
    ap.add_argument("--threads", type=int, default=0, help="--threads for every command (0: torch's default)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    work = (ROOT / a.out_root).resolve()
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", work / "params.yaml")
    m = _speed.machine()
    cli(["synthesize"], work)
    cli(["extract"], work)
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        row = {"seed": seed}
        for amp in ("off", "bf16"):
            run = f"seed{seed}-{amp}"
            t0 = time.perf_counter()
            line = cli(["train", "-p", f"seed={seed}", "-p", f"train.amp={amp}", "--out", f"runs/{run}/train"], work, a.threads)
            secs = time.perf_counter() - t0
            cli(["evaluate", "--model", f"runs/{run}/train/model.pt", "--out", f"runs/{run}/evaluate"], work, a.threads)
            tm = results.read(work / f"runs/{run}/train")       # metrics.json + provenance.json
            ev = results.read(work / f"runs/{run}/evaluate")
            row[amp] = {"auc_micro": ev["auc_micro"], "auc_macro": ev["auc_macro"], "steps": tm["steps"],
                        "amp": tm["amp"], "memory_format": tm["memory_format"], "train_s": round(secs, 1),
                        "final_loss_f_normal": tm.get("loss_f_normal")}
            print(f"seed {seed} {amp}: {line}; micro AUC {ev['auc_micro']:.4f}")
        row["delta_points"] = 100 * (row["bf16"]["auc_micro"] - row["off"]["auc_micro"])
        rows.append(row)

    def col(k):
        return [100 * r[k]["auc_micro"] for r in rows]
    fp, bf, d = col("off"), col("bf16"), [r["delta_points"] for r in rows]
    sd = statistics.stdev if len(rows) > 1 else (lambda xs: 0.0)
    print("\n| seed | steps | fp32 micro AUC % | bf16 micro AUC % | Δ (points) | bf16 train s / fp32 train s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['off']['steps']} | {100 * r['off']['auc_micro']:.2f} | {100 * r['bf16']['auc_micro']:.2f} | "
              f"{r['delta_points']:+.2f} | {r['bf16']['train_s']:.0f} / {r['off']['train_s']:.0f} |")
    print(f"| mean ± sd | | {statistics.mean(fp):.2f} ± {sd(fp):.2f} | {statistics.mean(bf):.2f} ± {sd(bf):.2f} | "
          f"{statistics.mean(d):+.2f} ± {sd(d):.2f} | |")
    ok = all(abs(x) <= 0.5 for x in d)
    print(f"\nrequirement |Δ| ≤ 0.5 point for every seed: {'met' if ok else 'NOT met'} "
          f"(max |Δ| {max(abs(x) for x in d):.2f}); load {m['load_before']} → {_speed.load()}")
    if not a.no_write:
        p = _speed.write_result("amp_quality", m, rows, ("seed",), max_abs_delta_points=max(abs(x) for x in d))
        print(f"→ {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
