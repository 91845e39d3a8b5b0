"""Ray Tune on UCSD Ped2 at a CPU budget: the searched λ and p against the paper's λ=0.1, p=0.5.

Two runs of the `tune` stage on `../shared/data/ped2` with `configs/ped2-cpu.yaml` (LTGPA,
learned noise, 16×64×96 clips, narrow widths), both scored by the same protocol:
  searched  random search over pseudo.lam ~ loguniform(0.01, 1) and pseudo.p ~ uniform(0.1, 0.9),
            ASHA (grace 1 epoch, reduction factor 2);
  paper     the single point λ=0.1, p=0.5 (a one-point grid, FIFO), i.e. the same training budget
            per trial and the same best-validation-epoch model selection, without the search.
Validation videos (`--val-videos`, default 01 04 07: both classes present) pick the trial and the
epoch; the AUC in the table is the held-out test AUC on the other nine test videos only, so it is
not comparable with the papers' numbers (all twelve videos, GPU, 60 epochs).

CPU budget: an "epoch" is `--clips-per-epoch` clips (train.max_clips_per_epoch), so a trial costs
at most `--max-epochs` × that many clips plus one scoring of the validation videos per epoch. The
defaults (8 trials × ≤ 6 epochs × 256 clips, 2 CPUs per trial, one at a time, ASHA rungs at
epochs 1, 2 and 4) are estimated at 1–1.5 hours on the 2-core development machine, from a smoke
run where one validation pass over the three videos took about 50 s and the final scoring of the
nine held-out videos about 2 min; the wall time of each run is measured and recorded.
The searched/paper rows are appended to benchmarks/RESULTS.md with the exact settings.

    .venv/bin/python benchmarks/ped2_tune.py                         # the stated budget
    .venv/bin/python benchmarks/ped2_tune.py --samples 2 --max-epochs 1 --clips-per-epoch 8 \\
        --no-append -p model.ltgpa.width=[8,8,8,8] -p model.ltgpa.g_width=[8,8,8]   # smoke run
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import _ped2  # benchmarks/ (this script's folder) is on sys.path; it puts src/ there too
from pseudovad import config as config_mod

os.environ.setdefault("PSEUDOVAD_NO_PROGRESS", "1")

PAPER = {"pseudo.lam": 0.1, "pseudo.p": 0.5}
SPACE = {"pseudo.lam": {"type": "loguniform", "low": 0.01, "high": 1.0},
         "pseudo.p": {"type": "uniform", "low": 0.1, "high": 0.9}}


def run_cfg(a, name: str, tune: dict) -> config_mod.Config:
    extra = {"tune": {"val_videos": a.val_videos, "max_epochs": a.max_epochs, "cpus_per_trial": a.cpus_per_trial,
                      "max_concurrent": a.max_concurrent, "out": str(Path(a.out_root) / name), **tune},
             "train": {"max_clips_per_epoch": a.clips_per_epoch, "max_steps": 0}}
    return config_mod.load(a.params, [*a.set], extra=extra)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="configs/ped2-cpu.yaml", help="base params (relative to the repository)")
    ap.add_argument("--samples", type=int, default=8, help="trials of the random search")
    ap.add_argument("--max-epochs", type=int, default=6)
    ap.add_argument("--clips-per-epoch", type=int, default=256)
    ap.add_argument("--cpus-per-trial", type=float, default=2.0)
    ap.add_argument("--max-concurrent", type=int, default=1)
    ap.add_argument("--val-videos", nargs="+", default=["01", "04", "07"])
    _ped2.add_set_option(ap)
    ap.add_argument("--out-root", default="runs/ped2-tune", help="<out-root>/{searched,paper}")
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to the results file")
    ap.add_argument("--results", default="benchmarks/RESULTS.md")
    a = _ped2.parse(ap)

    from pseudovad.stages import tune as tune_stage

    runs = {
        "searched": run_cfg(a, "searched", {"space": SPACE, "search": "random", "scheduler": "asha",
                                            "num_samples": a.samples, "grace_period": 1, "reduction_factor": 2}),
        "paper": run_cfg(a, "paper", {"space": {k: {"type": "grid", "values": [v]} for k, v in PAPER.items()},
                                      "search": "grid", "scheduler": "fifo"}),
    }
    first = runs["searched"]
    _ped2.extract(first)

    rows = []
    for name, cfg in runs.items():
        shutil.rmtree(cfg.tune.out, ignore_errors=True)   # a fresh search, not a restore of an older one
        t1 = time.perf_counter()
        s = tune_stage.run(cfg)
        minutes = (time.perf_counter() - t1) / 60
        b = s["best_config"]
        rows.append([name, f"{b['pseudo.lam']:.4g}", f"{b['pseudo.p']:.3g}", str(s["trials"]),
                     f"{s['completed']}/{s['stopped_early']}/{s['errored']}", f"{s['best_epoch']}",
                     f"{100 * s['best_val_auc']:.2f}", f"{100 * s['test_auc']:.2f}", f"{minutes:.1f}"])
        print(f"{name}: λ={b['pseudo.lam']:.4g} p={b['pseudo.p']:.3g}, val AUC {100 * s['best_val_auc']:.2f}, "
              f"held-out test AUC {100 * s['test_auc']:.2f} on {', '.join(s['test_videos'])}, {minutes:.1f} min")

    head = ["run", "λ", "p", "trials", "completed/stopped/failed", "best epoch", "val AUC %", "held-out test AUC %",
            "wall min"]
    table = _ped2.md_table(head, rows, left=1)
    print()
    print(table)
    if a.no_append:
        return 0
    val = ", ".join(first.tune.val_videos)
    text = [
        "",
        "## Ray Tune on UCSD Ped2: searched λ, p vs the paper's λ=0.1, p=0.5 (`benchmarks/ped2_tune.py`)",
        "",
        f"{_ped2.environment()}. Params `{a.params}`"
        + _ped2.overrides(a.set)
        + f". Budget per trial: ≤ {a.max_epochs} epochs × {a.clips_per_epoch} clips "
          f"(`train.max_clips_per_epoch`), {a.cpus_per_trial:g} CPUs, {a.max_concurrent or 'all'} at once; "
          f"searched: {a.samples} random trials, ASHA (grace 1, factor 2). Validation videos {val} "
          "choose the trial and its epoch; the test AUC is on the other nine test videos only "
          "(not comparable with the papers' all-video AUC).",
        "",
        table,
        "",
    ]
    _ped2.append(a.results, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
