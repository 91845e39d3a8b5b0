"""The recipe search's logbook as a table and a figure: every run of explore.py.

Reads benchmarks/results/explore.jsonl (one line per run; the older Ped2-only log
ped2_explore.jsonl with --log) and prints a Markdown table: the run, its scene, what it changed,
steps, minutes, s/step, load, the validation AUC of every snapshot (what a recipe was chosen on),
the final snapshot's val / held-out / all AUC with the training-free floor on the same frames
beside each, and the model's MSE over copy-the-last-frame's on normal frames. With --plot, draws
validation AUC against training steps for the chosen runs.

    .venv/bin/python benchmarks/explore_report.py
    .venv/bin/python benchmarks/explore_report.py --runs D1,D2 --plot benchmarks/results/explore_d1_d2.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _ped2  # noqa: F401  (repository paths; Agg backend)


def load(path: str, only: list[str] | None) -> list[dict]:
    runs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    if only:
        runs = [r for r in runs if any(r["name"] == o or r["name"].startswith(o + "-") for o in only)]
    return runs


def changed(run: dict) -> str:
    skip = ("data.root=", "data.name=", "data.store=", "tracking.", "seed=")
    return " ".join(o for o in run["overrides"] if not o.startswith(skip)) or "(params file)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", default="benchmarks/results/explore.jsonl")
    ap.add_argument("--runs", help="comma-separated run names or name prefixes (default: all)")
    ap.add_argument("--plot", help="PNG: validation (solid) and all-video (dashed) AUC against steps")
    ap.add_argument("--x", choices=("step", "train_min"), default="step")
    a = _ped2.parse(ap)
    runs = load(a.log, a.runs.split(",") if a.runs else None)
    print("| run | scene | params overrides | steps | train min | s/step | load | val AUC % by snapshot (step) | "
          "val % (floor) | held-out % (floor) | all % (floor) | MSE / copy |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in runs:
        snaps = ", ".join(f"{s['val_auc']:.1f} ({s['step']})" for s in r["snapshots"])
        f, fl = r["final"], (r.get("floor") or {}).get("max", {})

        def cell(split: str) -> str:
            v = f.get(f"{split}_auc")
            return "–" if v is None else f"{v}" + (f" ({fl[split + '_auc']})" if split + "_auc" in fl else "")

        ratio = r["snapshots"][-1].get("mse_vs_copy", "–")
        print(f"| {r['name']} | {r.get('dataset', 'ped2')} | `{changed(r)}` | {r['steps']} | {r['train_min']} | "
              f"{r['s_per_step']} | {r['load_mean']} | {snaps} | {cell('val')} | {cell('held_out')} | "
              f"{cell('all')} | {ratio} |")
    if a.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for r in runs:
            xs = [s[a.x] for s in r["snapshots"]]
            line, = ax.plot(xs, [s["val_auc"] for s in r["snapshots"]], marker="o", label=r["name"])
            alls = [(s[a.x], s["all_auc"]) for s in r["snapshots"] if "all_auc" in s]
            if alls:
                ax.plot(*zip(*alls), ls="--", marker="x", color=line.get_color())
        ax.set_xlabel("training steps" if a.x == "step" else "training minutes")
        ax.set_ylabel("micro AUC % (solid: val videos; dashed ×: all)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(a.plot, dpi=120)
        print(f"→ {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
