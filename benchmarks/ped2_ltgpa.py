"""LTGPA on UCSD Ped2 at a CPU profile: baseline, Gaussian and learned pseudo anomalies, frame-level AUC.

Runs the pipeline's own stage functions (extract → train → evaluate) once per variant on
`../shared/data/ped2` with `configs/ped2-cpu.yaml` (16×64×96 clips, narrow widths), prints a table
next to the paper's numbers (16×256×256, full widths, GPU, 60 epochs) and appends it, with the
exact params, to benchmarks/RESULTS.md.

Time budget: each variant gets `--budget-min` minutes of wall time for train + evaluate. Unless
`--max-steps` is given, a short probe run per variant measures seconds per training step and one
test video measures scoring speed; `train.max_steps` is then set so that training plus the full
evaluation fits the budget (probes are not counted in it; the table reports measured times).

    .venv/bin/python benchmarks/ped2_ltgpa.py --budget-min 15
    .venv/bin/python benchmarks/ped2_ltgpa.py --max-steps 5 --no-append -p evaluate.videos=[01,02]   # smoke run
"""
from __future__ import annotations

import argparse
import datetime as dt
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

# The paper's Ped2 frame-level micro AUC (%), LTGPA (Astrid et al.), 16×256×256, GPU.
PAPER = {"baseline": "92.49", "gaussian": "93.0x", "learned": "94.57"}
VARIANTS = {
    "baseline": ["pseudo.kind=none"],
    "gaussian": ["pseudo.kind=gaussian"],
    "learned": ["pseudo.kind=learned"],
}
SHOWN = ("data", "model.ltgpa", "pseudo", "train", "evaluate")


def variant_cfg(a, variant: str, extra: list[str]) -> config_mod.Config:
    out = Path(a.out_root) / variant
    return config_mod.load(a.params, [*a.set, *VARIANTS[variant], f"train.out={out / 'train'}",
                                      f"evaluate.out={out / 'evaluate'}", *extra])


def probe(a, variant: str) -> tuple[float, float]:
    """(seconds per training step, scored clips per second) measured on this machine now."""
    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device
    from pseudovad.evaluation.scoring import score_clips
    from pseudovad.models.io import load_model
    from pseudovad.stages import train

    cfg = variant_cfg(a, variant, [f"train.max_steps={a.probe_steps}", f"train.checkpoint_every={a.probe_steps}",
                                   "tracking.enabled=false"])   # a probe is not a result: keep it out of MLflow
    out = Path(a.out_root) / variant / "probe"
    shutil.rmtree(out, ignore_errors=True)
    s = train.run(cfg, out=out, progress=False)
    step_s = cfg.train.batch_size / s["history"][-1]["clips_per_s"]
    device = resolve_device(cfg.device)
    model, meta = load_model(out / "model.pt", device)
    store = FrameStore(cfg.data.store)
    entry = store.videos("testing")[0]
    t0 = time.perf_counter()
    _, clips = score_clips(model, meta, store.array(entry), device, cfg.evaluate.batch_size, entry.id)
    clip_rate = len(clips) / (time.perf_counter() - t0)
    shutil.rmtree(out, ignore_errors=True)
    return step_s, clip_rate


def eval_clips(cfg: config_mod.Config) -> int:
    from pseudovad.data.store import FrameStore

    clip_len, _ = config_mod.clip_geometry(cfg)
    span = (clip_len - 1) * cfg.data.frame_step + 1
    store = FrameStore(cfg.data.store)
    return sum(max(0, e.frames - span + 1) for e in store.videos("testing", cfg.evaluate.videos or None))


def shown_params(cfg: config_mod.Config) -> dict:
    d = cfg.to_dict()
    out = {}
    for key in SHOWN:
        node = d
        for p in key.split("."):
            node = node[p]
        out[key] = node
    return out


class _FlowLists(yaml.SafeDumper):
    """Block mappings, [a, b] lists: params.yaml's own style."""


_FlowLists.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


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
    ap.add_argument("--budget-min", type=float, default=15.0, help="wall minutes per variant for train + evaluate")
    ap.add_argument("--max-steps", type=int, default=0, help="fixed train.max_steps (skips the probe and the budget)")
    ap.add_argument("--variants", default="baseline,gaussian,learned")
    ap.add_argument("--params", default="configs/ped2-cpu.yaml", help="params file (relative to the repository)")
    ap.add_argument("-p", "--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override")
    ap.add_argument("--out-root", default="runs/ped2-bench", help="<out-root>/<variant>/{train,evaluate}")
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--no-append", action="store_true", help="print only; do not append to the results file")
    ap.add_argument("--results", default="benchmarks/RESULTS.md", help="results file the table is appended to")
    a = ap.parse_args()
    os.chdir(REPO)  # params files use repository-relative paths (../shared/data/ped2, data/…, runs/…)

    import torch

    from pseudovad.device import resolve_device
    from pseudovad.evaluation.report import format_table, table
    from pseudovad.stages import evaluate, extract, train

    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    base = variant_cfg(a, variants[0], [])
    t0 = time.perf_counter()
    ex = extract.run(base, progress=False)
    print(f"extract: {ex['videos']} videos, {ex['reused']} reused, {time.perf_counter() - t0:.1f}s → {ex['store']}")
    n_eval = eval_clips(base)

    rows, results, cfgs = [], [], {}
    for v in variants:
        plan = ""
        steps = a.max_steps
        if not steps:
            step_s, clip_rate = probe(a, v)
            # scoring at the probed rate, ×1.5 + 30 s for plots, top-k frames, model load and load swings
            eval_s = 1.5 * n_eval / clip_rate + 30.0
            train_s = a.budget_min * 60.0 * 0.9 - eval_s   # 10% margin: validation PSNR, start-up
            if train_s <= 0:
                print(f"{v}: evaluation alone (~{eval_s:.0f}s) exceeds the budget", file=sys.stderr)
                return 1
            steps = max(1, int(train_s / step_s))
            plan = f"probe: {step_s:.3f} s/step, {clip_rate:.1f} scored clips/s → max_steps {steps}"
            print(f"{v}: {plan}")
        cfg = variant_cfg(a, v, [f"train.max_steps={steps}"])
        cfgs[v] = cfg
        shutil.rmtree(cfg.train.out, ignore_errors=True)   # fresh run: no resume from an older checkpoint
        t1 = time.perf_counter()
        tr = train.run(cfg, progress=False)
        t2 = time.perf_counter()
        m = evaluate.run(cfg, progress=False)
        t3 = time.perf_counter()
        results.append((str(Path(cfg.evaluate.out) / "metrics.json"), m))
        macro = "–" if m["auc_macro"] is None else f"{100 * m['auc_macro']:.2f} ({m['macro_videos']}/{m['videos']})"
        rows.append([v, m["variant"], f"{tr['steps']} ({tr['epochs']})", f"{(t2 - t1) / 60:.1f}", f"{(t3 - t2) / 60:.1f}",
                     f"{100 * m['auc_micro']:.2f}", PAPER[v], macro, f"{100 * m['auc_raw']:.2f}", f"{100 * m['eer']:.2f}"])
        print(f"{v}: micro AUC {100 * m['auc_micro']:.2f} (paper {PAPER[v]}), {tr['steps']} steps, "
              f"train {(t2 - t1) / 60:.1f} min, evaluate {(t3 - t2) / 60:.1f} min")

    head = ["variant", "pseudo anomalies", "steps (epochs)", "train min", "eval min", "micro AUC %",
            "paper micro AUC %", "macro AUC % (videos)", "raw AUC %", "EER %"]
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md_table = "\n".join(md)
    print()
    print(md_table)
    print()
    print(format_table(table(results)), end="")

    if a.no_append:
        return 0
    first = cfgs[variants[0]]
    common = shown_params(first)
    budget = (f"fixed train.max_steps = {a.max_steps}" if a.max_steps else
              f"{a.budget_min:g} min wall time per variant (train + evaluate), max_steps from a "
              f"{a.probe_steps}-step probe")
    text = [
        "",
        f"## LTGPA on UCSD Ped2, CPU profile (`benchmarks/ped2_ltgpa.py`)",
        "",
        f"{dt.date.today().isoformat()}, commit {git_rev()}, {platform.machine()} CPU, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {resolve_device(first.device)}. "
        f"Budget: {budget}. Params: `{a.params}`"
        + (f" with `{' '.join('-p ' + s for s in a.set)}`" if a.set else "")
        + "; the variants differ only in `pseudo.kind` and `train.max_steps` (steps column). Paper: 16×256×256 "
          "clips, widths 96/128/256/256, 60 epochs on a GPU; 93.0x = the paper's Gaussian-noise rows "
          "(σ-dependent; exact value not recorded here). Macro AUC leaves out single-class test videos.",
        "",
        md_table,
        "",
        "<details><summary>exact params (shared by all variants, apart from pseudo.kind and train.max_steps)</summary>",
        "",
        "```yaml",
        yaml.dump(common, Dumper=_FlowLists, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "</details>",
        "",
    ]
    with open(a.results, "a") as f:
        f.write("\n".join(text))
    print(f"→ appended to {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
