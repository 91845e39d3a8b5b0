"""What the Ped2 (and Ped1) benchmark scripts (ped2_ltgpa.py, ped2_mae.py, ped2_tune.py, ped2_seeds.py) share.

One copy of the parts whose logic is the same in each script, so that a fix to, say, the probe
or the environment line of the results reaches every benchmark. The scripts are run as
`.venv/bin/python benchmarks/<script>.py`, which puts this folder on sys.path; importing this
module puts the repository's src/ there too and selects matplotlib's Agg backend before
pseudovad is imported.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("MPLBACKEND", "Agg")

from pseudovad import config as config_mod  # noqa: E402

# The UCSD scenes the benchmarks run on: raw data (the params files' data.root is Ped2's) and the
# test videos recipes may be chosen on (`val`; the others are held out). Ped1: test videos 01–18
# only (../shared/data/ped1/PROVENANCE.md); its val videos are a fixed third of them, every third.
DATASETS = {
    "ped2": {"root": "../shared/data/ped2", "val": ["01", "04", "07"]},
    "ped1": {"root": "../shared/data/ped1", "val": ["03", "06", "09", "12", "15", "18"]},
}


def dataset_overrides(cfg: config_mod.Config, dataset: str) -> list[str]:
    """Params overrides that run a Ped2 profile on `dataset`: the same profile (model, sizes, budget)
    with the scene's raw data and a store of its own (the profile's store path with ped2 → ped1)."""
    if dataset == "ped2" or cfg.data.name == dataset:
        return []
    store = str(cfg.data.store).replace("ped2", dataset)
    if store == str(cfg.data.store):
        store = f"{cfg.data.store}-{dataset}"
    return [f"data.name={dataset}", f"data.root={DATASETS[dataset]['root']}", f"data.store={store}"]


def split_aucs(scores_csv: Path, val: list[str], column: str = "score", counted_only: bool = True
               ) -> dict[str, float]:
    """Micro AUC (%) on val / held-out / all test videos from evaluate's scores.csv, on the rows
    its AUC counted (`counted`; a file without the column counted every row), or on every row
    (`counted_only=False`: the padded protocol, with the same per-video scores)."""
    import csv

    from sklearn.metrics import roc_auc_score

    rows = list(csv.DictReader(open(scores_csv)))
    if counted_only:
        rows = [r for r in rows if r.get("counted", "1") == "1"]
    out = {}
    for name, keep in (("val", lambda v: v in val), ("held_out", lambda v: v not in val), ("all", lambda v: True)):
        sel = [r for r in rows if keep(r["video"])]
        out[name] = round(100 * roc_auc_score([int(r["label"]) for r in sel], [float(r[column]) for r in sel]), 2)
    return out


def floor_splits(scores_csv: Path, val: list[str]) -> dict[str, dict[str, float]]:
    """The training-free floor on the same splits and rows: {framediff, residual, max: {val, held_out, all}}."""
    fl = {k: split_aucs(scores_csv, val, f"floor_{k}") for k in ("framediff", "residual")}
    fl["max"] = {s: max(fl["framediff"][s], fl["residual"][s]) for s in fl["framediff"]}
    return fl


# Columns every train + evaluate row has between its name/label and its script's own columns.
RUN_HEAD = ["steps (epochs)", "train min", "eval min", "micro AUC %", "paper micro AUC %", "macro AUC % (videos)"]


# --- command line ------------------------------------------------------------------------------

def add_budget_options(ap: argparse.ArgumentParser, budget_min: float, per: str) -> None:
    ap.add_argument("--budget-min", type=float, default=budget_min, help=f"wall minutes per {per} for train + evaluate")
    ap.add_argument("--max-steps", type=int, default=0, help="fixed train.max_steps (skips the probe and the budget)")


def add_set_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("-p", "--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override")


def add_run_options(ap: argparse.ArgumentParser, params: str, out_root: str, per: str, results: str) -> None:
    """--params, -p, --out-root, --probe-steps and --no-append (`results`: where the table would go)."""
    ap.add_argument("--params", default=params, help="params file (relative to the repository)")
    add_set_option(ap)
    ap.add_argument("--out-root", default=out_root, help=f"<out-root>/<{per}>/{{train,evaluate}}")
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--no-append", action="store_true", help=f"print only; do not append to {results}")


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    a = ap.parse_args()
    os.chdir(REPO)  # params files use repository-relative paths (../shared/data/ped2, data/…, runs/…)
    return a


def pick(ap: argparse.ArgumentParser, text: str, known: dict, what: str) -> list[str]:
    """The comma-separated names in `text`; an unknown one is a usage error (exit 2)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown {what}(s) {', '.join(unknown)} (known: {', '.join(known)})")
    return names


# --- runs ----------------------------------------------------------------------------------------

def extract(cfg: config_mod.Config) -> dict:
    from pseudovad.stages import extract as extract_stage

    t0 = time.perf_counter()
    ex = extract_stage.run(cfg, progress=False)
    print(f"extract: {ex['videos']} videos, {ex['reused']} reused, {time.perf_counter() - t0:.1f}s → {ex['store']}")
    return ex


def eval_clips(cfg: config_mod.Config) -> int:
    """Clips a full evaluation scores: the probe's clip rate turns this into seconds."""
    from pseudovad.data.store import FrameStore

    from pseudovad.geometry import ClipGeometry

    span = ClipGeometry.from_config(cfg).span
    return sum(max(0, e.frames - span + 1) for e in FrameStore(cfg.data.store).videos("testing", cfg.evaluate.videos or None))


def probe(cfg: config_mod.Config, out: Path) -> tuple[float, float]:
    """(seconds per training step, scored clips per second) measured on this machine now.

    `cfg` is the probe's config (its small train.max_steps); `out` is scratch, removed afterwards.
    """
    from pseudovad.data.store import FrameStore
    from pseudovad.device import resolve_device
    from pseudovad.evaluation.streaming import Detector
    from pseudovad.stages import train

    shutil.rmtree(out, ignore_errors=True)
    s = train.run(cfg, out=out, progress=False)
    step_s = cfg.train.batch_size / s["history"][-1]["clips_per_s"]
    device = resolve_device(cfg.device)
    detector = Detector.load(out / "model.pt", device, cfg.evaluate.batch_size)
    store = FrameStore(cfg.data.store)
    entry = store.videos("testing")[0]
    t0 = time.perf_counter()
    detector.score_video(store.array(entry), entry.id)
    clip_rate = len(detector.geometry.starts(entry.frames)) / (time.perf_counter() - t0)
    shutil.rmtree(out, ignore_errors=True)
    return step_s, clip_rate


def fit_steps(name: str, budget_min: float, share: float, eval_s: float, step_s: float) -> int | None:
    """train.max_steps that fits `share` of the budget after the evaluation's `eval_s`; None (and a
    message on stderr) when the evaluation alone does not fit."""
    train_s = budget_min * 60.0 * share - eval_s
    if train_s <= 0:
        print(f"{name}: evaluation alone (~{eval_s:.0f}s) exceeds the budget", file=sys.stderr)
        return None
    return max(1, int(train_s / step_s))


def train_evaluate(name: str, cfg: config_mod.Config, paper: str, results: list) -> tuple[dict, dict, list[str]]:
    """A fresh train + evaluate of one row: (train summary, metrics, the RUN_HEAD cells).

    Appends (metrics.json path, metrics) to `results`, the input of evaluation.report.table.
    """
    from pseudovad.stages import evaluate, train

    shutil.rmtree(cfg.train.out, ignore_errors=True)   # fresh run: no resume from an older checkpoint
    t1 = time.perf_counter()
    tr = train.run(cfg, progress=False)
    t2 = time.perf_counter()
    m = evaluate.run(cfg, progress=False)
    t3 = time.perf_counter()
    results.append((str(Path(cfg.evaluate.out) / "metrics.json"), m))
    macro = "–" if m["auc_macro"] is None else f"{100 * m['auc_macro']:.2f} ({m['macro_videos']}/{m['videos']})"
    cells = [f"{tr['steps']} ({tr['epochs']})", f"{(t2 - t1) / 60:.1f}", f"{(t3 - t2) / 60:.1f}",
             f"{100 * m['auc_micro']:.2f}", paper, macro]
    print(f"{name}: micro AUC {100 * m['auc_micro']:.2f} (paper {paper}), {tr['steps']} steps, "
          f"train {(t2 - t1) / 60:.1f} min, evaluate {(t3 - t2) / 60:.1f} min")
    return tr, m, cells


# --- report --------------------------------------------------------------------------------------

def md_table(head: list[str], rows: list[list[str]], left: int) -> str:
    """A Markdown table whose first `left` columns are left-aligned and the rest right-aligned."""
    md = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * left + ["---:"] * (len(head) - left)) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(md)


def print_tables(head: list[str], rows: list[list[str]], results: list) -> str:
    """Prints the rows as a Markdown table (returned, for the results file), then the pipeline's
    own report table of the same runs."""
    from pseudovad.evaluation.report import format_table, table

    md = md_table(head, rows, left=3)
    print()
    print(md)
    print()
    print(format_table(table(results)), end="")
    return md


def budget_note(a: argparse.Namespace, per: str) -> str:
    """How train.max_steps was chosen (--max-steps, or --budget-min through the probe), in words."""
    return (f"fixed train.max_steps = {a.max_steps}" if a.max_steps else
            f"{a.budget_min:g} min wall time per {per} (train + evaluate), max_steps from a {a.probe_steps}-step probe")


def shown_params(cfg: config_mod.Config, keys: tuple[str, ...]) -> dict:
    """The config sections (dotted keys such as "model.ltgpa") a results entry records."""
    d, out = cfg.to_dict(), {}
    for key in keys:
        node = d
        for p in key.split("."):
            node = node[p]
        out[key] = node
    return out


def budget_entry(title: str, a: argparse.Namespace, per: str, device: object, note: str, table: str,
                 summary: str, params_yaml: str) -> list[str]:
    """Results-file lines of a budgeted train + evaluate benchmark: heading, environment, budget and
    params overrides, then `note` (what the rows differ in, the paper's setting), the table and
    the exact params folded in a <details> block headed `summary`."""
    return [
        "",
        f"## {title}",
        "",
        f"{environment(device)}. Budget: {budget_note(a, per)}. Params: `{a.params}`" + overrides(a.set) + note,
        "",
        table,
        "",
        f"<details><summary>{summary}</summary>",
        "",
        "```yaml",
        params_yaml.rstrip(),
        "```",
        "</details>",
        "",
    ]


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted" if dirty else "")
    except OSError:
        return "unknown"


def environment(device: object = None) -> str:
    """Date, commit, machine and torch version of a results entry; with `device`, also torch's
    thread count and the device the runs used."""
    import torch

    line = (f"{dt.date.today().isoformat()}, commit {git_rev()}, {platform.machine()} CPU, {os.cpu_count()} cores, "
            f"torch {torch.__version__}")
    if device is not None:
        line += f" ({torch.get_num_threads()} threads), device {device}"
    return line


def overrides(sets: list[str]) -> str:
    """The ' with `-p K=V …`' naming the command line's params overrides; empty when there are none."""
    return f" with `{' '.join('-p ' + s for s in sets)}`" if sets else ""


def record(name: str, entry: dict, section: list[str] | None) -> None:
    """A benchmark's record: `benchmarks/results/<name>.json`, and `section` (Markdown lines) appended
    to RESULTS.md unless None."""
    res = REPO / "benchmarks" / "results" / f"{name}.json"
    res.write_text(json.dumps(entry, indent=1) + "\n")
    print(f"→ {res}")
    if section is not None:
        append(REPO / "benchmarks" / "RESULTS.md", section)


def append(path, lines: list[str]) -> None:
    with open(path, "a") as f:
        f.write("\n".join(lines))
    print(f"→ appended to {path}")
