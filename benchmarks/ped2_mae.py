"""MAE-NCT on UCSD Ped2 at a CPU profile: the paper's Table-4 ablation shape, frame-level AUC.

Rows (the paper's Table 4 asks what pseudo anomalies and NCT each add):
  none  no pseudo anomalies: future-frame prediction alone              (pseudo.mode=none)
  prob  pseudo anomalies fed with probability `--prob-p`, no NCT         (pseudo.mode=prob)
  nct   pseudo anomaly for every sample + normalcy-consistency KL       (pseudo.mode=nct, the method)
Runs the pipeline's own stage functions (extract → train → evaluate) on `../shared/data/ped2`
with `configs/ped2-mae-cpu.yaml` (64×96, tiny ViT) and prints the table next to the paper's
95.5 (ViT-B/16 at 224×224, SimMIM-pretrained, GPU). Appends it, with the exact params, to
benchmarks/RESULTS.md unless --no-append.

Budget: each row gets `--budget-min` wall minutes for train + evaluate. Unless `--max-steps` is
given, a short probe per row measures seconds per step and scoring speed, and `train.max_steps`
is set so training plus the full evaluation fits the budget. `train.epochs` is raised so the
step cap, not the epoch count, ends training, and the cosine schedule spans exactly those steps.

    .venv/bin/python benchmarks/ped2_mae.py --budget-min 10
    .venv/bin/python benchmarks/ped2_mae.py --max-steps 5 --no-append -p 'evaluate.videos=["01","02"]'   # smoke run
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("MPLBACKEND", "Agg")

from pseudovad import config as config_mod  # noqa: E402

# Ped2 frame-level micro AUC (%) of MAE-NCT (Huang et al. 2023, Table 4 shape). Only the full
# method's 95.5 is recorded here; the ablation rows of the paper are not.
PAPER = {"none": "–", "prob": "–", "nct": "95.5"}
ROWS = {
    "none": ("no pseudo anomalies", ["pseudo.mode=none"]),
    "prob": ("pseudo anomalies with prob. p, no NCT", ["pseudo.mode=prob"]),
    "nct": ("pseudo anomalies + NCT (MAE-NCT)", ["pseudo.mode=nct"]),
}
SHOWN = ("data", "model.mae", "pseudo", "train", "evaluate")


def row_cfg(a, row: str, extra: list[str]) -> config_mod.Config:
    out = Path(a.out_root) / row
    return config_mod.load(a.params, [*a.set, *ROWS[row][1], f"pseudo.p={a.prob_p}", f"train.out={out / 'train'}",
                                      f"evaluate.out={out / 'evaluate'}", *extra])


def steps_per_epoch(cfg: config_mod.Config) -> int:
    from pseudovad.data.store import FrameStore
    from pseudovad.stages.train import video_datasets
    from pseudovad.training.loop import steps_per_epoch as spe

    train_set, _, _ = video_datasets(cfg, FrameStore(cfg.data.store))
    return spe(len(train_set), cfg)


def probe(a, row: str) -> tuple[float, float]:
    """(seconds per training step, scored clips per second) measured on this machine now."""
    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device
    from pseudovad.evaluation.scoring import score_clips
    from pseudovad.models.io import load_model
    from pseudovad.stages import train

    cfg = row_cfg(a, row, [f"train.max_steps={a.probe_steps}", f"train.checkpoint_every={a.probe_steps}"])
    out = Path(a.out_root) / row / "probe"
    shutil.rmtree(out, ignore_errors=True)
    s = train.run(cfg, out=out, progress=False)
    step_s = cfg.train.batch_size / s["history"][-1]["clips_per_s"]
    device = resolve_device(cfg.device)
    model, meta = load_model(out / "model.pt", device)
    store = FrameStore(cfg.data.store)
    entry = store.videos("testing")[0]
    t0 = time.perf_counter()
    _, clips = score_clips(model, meta, store.array(entry), device, cfg.evaluate.batch_size, entry.id)
    rate = len(clips) / (time.perf_counter() - t0)
    shutil.rmtree(out, ignore_errors=True)
    return step_s, rate


def eval_clips(cfg: config_mod.Config) -> int:
    from pseudovad.data.store import FrameStore

    clip_len, _ = config_mod.clip_geometry(cfg)
    span = (clip_len - 1) * cfg.data.frame_step + 1
    return sum(max(0, e.frames - span + 1) for e in FrameStore(cfg.data.store).videos("testing", cfg.evaluate.videos or None))


def shown_params(cfg: config_mod.Config) -> dict:
    d, out = cfg.to_dict(), {}
    for key in SHOWN:
        node = d
        for p in key.split("."):
            node = node[p]
        out[key] = node
    return out


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget-min", type=float, default=10.0, help="wall minutes per row for train + evaluate")
    ap.add_argument("--max-steps", type=int, default=0, help="fixed train.max_steps (skips the probe and the budget)")
    ap.add_argument("--rows", default="none,prob,nct")
    ap.add_argument("--prob-p", type=float, default=0.2, help="pseudo.p of the `prob` row (a small probability)")
    ap.add_argument("--params", default="configs/ped2-mae-cpu.yaml", help="params file (relative to the repository)")
    ap.add_argument("-p", "--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override")
    ap.add_argument("--out-root", default="runs/ped2-mae-bench", help="<out-root>/<row>/{train,evaluate}")
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to benchmarks/RESULTS.md")
    a = ap.parse_args()
    os.chdir(REPO)  # params files use repository-relative paths (../shared/data/ped2, data/…, runs/…)

    import torch

    from pseudovad.device import resolve_device
    from pseudovad.evaluation.report import format_table, table
    from pseudovad.stages import evaluate, extract, train

    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {', '.join(unknown)} (known: {', '.join(ROWS)})")
    base = row_cfg(a, rows[0], [])
    t0 = time.perf_counter()
    ex = extract.run(base, progress=False)
    print(f"extract: {ex['videos']} videos, {ex['reused']} reused, {time.perf_counter() - t0:.1f}s → {ex['store']}")
    n_eval = eval_clips(base)
    per_epoch = steps_per_epoch(base)

    md_rows, results, cfgs = [], [], {}
    for r in rows:
        steps = a.max_steps
        if not steps:
            step_s, rate = probe(a, r)
            eval_s = n_eval / rate + 20.0                 # + plots, model load, store open
            train_s = a.budget_min * 60.0 * 0.92 - eval_s  # 8% margin for validation PSNR and start-up
            if train_s <= 0:
                print(f"{r}: evaluation alone (~{eval_s:.0f}s) exceeds the budget", file=sys.stderr)
                return 1
            steps = max(1, int(train_s / step_s))
            print(f"{r}: probe {step_s:.3f} s/step, {rate:.1f} scored clips/s → max_steps {steps}")
        epochs = max(base.train.epochs if a.max_steps else 1, math.ceil(steps / per_epoch))
        cfg = row_cfg(a, r, [f"train.max_steps={steps}", f"train.epochs={epochs}"])
        cfgs[r] = cfg
        shutil.rmtree(cfg.train.out, ignore_errors=True)   # fresh run: no resume from an older checkpoint
        t1 = time.perf_counter()
        tr = train.run(cfg, progress=False)
        t2 = time.perf_counter()
        m = evaluate.run(cfg, progress=False)
        t3 = time.perf_counter()
        results.append((str(Path(cfg.evaluate.out) / "metrics.json"), m))
        macro = "–" if m["auc_macro"] is None else f"{100 * m['auc_macro']:.2f} ({m['macro_videos']}/{m['videos']})"
        md_rows.append([r, ROWS[r][0], f"{tr['steps']} ({tr['epochs']})", f"{(t2 - t1) / 60:.1f}", f"{(t3 - t2) / 60:.1f}",
                        f"{100 * m['auc_micro']:.2f}", PAPER[r], macro, f"{100 * m['eer']:.2f}"])
        print(f"{r}: micro AUC {100 * m['auc_micro']:.2f} (paper {PAPER[r]}), {tr['steps']} steps, "
              f"train {(t2 - t1) / 60:.1f} min, evaluate {(t3 - t2) / 60:.1f} min")

    head = ["row", "pseudo anomalies", "steps (epochs)", "train min", "eval min", "micro AUC %",
            "paper micro AUC %", "macro AUC % (videos)", "EER %"]
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    md += ["| " + " | ".join(x) + " |" for x in md_rows]
    md_table = "\n".join(md)
    print()
    print(md_table)
    print()
    print(format_table(table(results)), end="")
    if a.no_append:
        return 0

    first = cfgs[rows[0]]
    budget = (f"fixed train.max_steps = {a.max_steps}" if a.max_steps else
              f"{a.budget_min:g} min wall time per row (train + evaluate), max_steps from a {a.probe_steps}-step probe")
    text = [
        "",
        "## MAE-NCT on UCSD Ped2, CPU profile (`benchmarks/ped2_mae.py`)",
        "",
        f"{dt.date.today().isoformat()}, commit {git_rev()}, {platform.machine()} CPU, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {resolve_device(first.device)}. "
        f"Budget: {budget}. Params: `{a.params}`"
        + (f" with `{' '.join('-p ' + s for s in a.set)}`" if a.set else "")
        + f"; rows differ only in `pseudo.mode` (`prob`: pseudo.p = {a.prob_p:g}) and the step cap. Paper: ViT-B/16 "
          "at 224×224, SimMIM-pretrained, GPU; only the full method's Ped2 AUC (95.5) is recorded here.",
        "",
        md_table,
        "",
        "<details><summary>exact params (row nct; the others differ only in pseudo.mode and train.max_steps/epochs)</summary>",
        "",
        "```yaml",
        yaml.safe_dump(shown_params(cfgs.get("nct", first)), sort_keys=False, default_flow_style=None).rstrip(),
        "```",
        "</details>",
        "",
    ]
    with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
        f.write("\n".join(text))
    print(f"→ appended to {REPO / 'benchmarks' / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
