"""Ped2 (or Ped1) rows × seeds at one step budget: mean ± std AUC on held-out and all test videos,
each beside the training-free floor of the same frames.

One command per results table. Each (row, seed) is a fresh `train` + `evaluate` with the
pipeline's own stage functions, in its own single-thread process (`--jobs` of them at once: on
this shared 2-core machine two 1-thread runs get far more done than one 2-thread run, whose
threads wait on each other whenever another job takes a core). The budget is a step count
(`--steps`), fixed in advance from the idle step time; each run's actual wall time and the
machine load during it are recorded beside it.

For every run the AUCs are computed on three splits of the test videos, from evaluate's own
scores.csv (per-video min-max normalised scores, so a subset's AUC needs no re-scoring), on the
frames evaluate's protocol counted (official: the frames a clip scores):
  val       `--val-videos` (Ped2: 01, 04, 07; Ped1: 03, 06, 09, 12, 15, 18): what recipes were
            chosen on (explore.py),
  held-out  the other test videos: the number that was never looked at while choosing,
  all       all test videos: the papers' protocol, comparable with their tables.
Beside each: the training-free floor (`floor`: frame difference, temporal residual and the higher,
on the same splits and frames) and the AUC under the padded protocol of before (`auc_padded`,
every frame, the same scores).

`--dataset ped1` runs the same profile on UCSD Ped1 (test videos 01–18 of ../shared/data/ped1,
its own store: the profile's store path with ped2 → ped1). Writes
`benchmarks/results/<name>.json` (dataset, method, params, rows, seeds, per-seed AUCs and floors,
mean, std, train minutes, load, commit) and, unless --no-append, a table in benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/ped2_seeds.py --name ltgpa-ablation --method ltgpa --steps 12000 \\
        --rows baseline,gaussian-0.1,gaussian-0.5,gaussian-1,learned --seeds 0,1,2 --jobs 2
    .venv/bin/python benchmarks/ped2_seeds.py --name ped1-ltgpa --dataset ped1 --method ltgpa --rows baseline,learned
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import _ped2  # benchmarks/ (this script's folder) is on sys.path; it puts src/ there too
from pseudovad import config as config_mod

PARAMS = {"ltgpa": "configs/ped2-cpu.yaml", "mae_nct": "configs/ped2-mae-cpu.yaml"}
# Rows: name → (what it is, params overrides). The paper figure is for the full 256×256 / ViT-B GPU runs.
ROWS = {
    "ltgpa": {
        "baseline": ("no pseudo anomalies", ["pseudo.kind=none"], "92.49"),
        "gaussian-0.1": ("Gaussian noise σ = 0.1", ["pseudo.kind=gaussian", "pseudo.sigma=0.1"], "93.0x"),
        "gaussian-0.5": ("Gaussian noise σ = 0.5", ["pseudo.kind=gaussian", "pseudo.sigma=0.5"], "93.0x"),
        "gaussian-1": ("Gaussian noise σ = 1", ["pseudo.kind=gaussian", "pseudo.sigma=1.0"], "93.0x"),
        "learned": ("learned noise G (LTGPA)", ["pseudo.kind=learned"], "94.57"),
        # LNTRA's p = 0.2; its patches move ≤ 10 px/frame at 256×256, i.e. 4 at the CPU profile's 64×96
        "skip": ("LNTRA skip frames", ["pseudo.kind=skip", "pseudo.p=0.2"], "96.50"),
        "patch": ("LNTRA patch", ["pseudo.kind=patch", "pseudo.p=0.2", "pseudo.patch_max_move=4"], "94.77"),
        "learned-maximize": ("learned, STEAL-style maximise loss", ["pseudo.kind=learned", "train.pseudo_loss=maximize"], "–"),
    },
    "mae_nct": {
        "none": ("no pseudo anomalies", ["pseudo.mode=none"], "–"),
        "prob": ("pseudo anomalies with prob. p = 0.2, no NCT", ["pseudo.mode=prob", "pseudo.p=0.2"], "–"),
        "nct": ("pseudo anomalies + NCT (MAE-NCT)", ["pseudo.mode=nct"], "95.5"),
    },
}
VAL_VIDEOS = _ped2.DATASETS["ped2"]["val"]
SCRIPT = str(Path(__file__).resolve())
split_aucs = _ped2.split_aucs


# --- one run (a child process) ------------------------------------------------------------------


def child(a) -> int:
    from pseudovad.stages import evaluate, train

    cfg = config_mod.load(a.params, json.loads(a.child))
    out = Path(cfg.train.out).parent
    loads = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    tr = train.run(cfg, progress=False)
    t1 = time.perf_counter()
    loads.append(os.getloadavg()[0])
    m = evaluate.run(cfg, progress=False)
    t2 = time.perf_counter()
    val = a.val_videos.split(",")
    scores = Path(cfg.evaluate.out) / "scores.csv"
    res = {
        "dataset": cfg.data.name, "commit": _ped2.git_rev(),
        "steps": tr["steps"], "epochs": tr["epochs"], "train_min": round((t1 - t0) / 60, 2),
        "eval_min": round((t2 - t1) / 60, 2), "s_per_step": round((t1 - t0) / max(1, tr["steps"]), 4),
        "load": round(sum(loads) / len(loads), 2), "threads": __import__("torch").get_num_threads(),
        "auc": split_aucs(scores, val),
        "floor": _ped2.floor_splits(scores, val),
        "auc_padded": split_aucs(scores, val, counted_only=False),
        "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        "video_auc": m.get("video_auc"),
    }
    if "region_score" in open(scores).readline():
        res["auc_region"] = split_aucs(scores, val, "region_score")
    (out / "result.json").write_text(json.dumps(res, indent=1))
    return 0


# --- the table (the parent) ---------------------------------------------------------------------

def mean_std(xs: list[float]) -> tuple[float, float]:
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(xs: list[float]) -> str:
    m, s = mean_std(xs)
    return f"{m:.2f} ± {s:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="results name: benchmarks/results/<name>.json")
    ap.add_argument("--method", choices=list(ROWS), default="ltgpa")
    ap.add_argument("--dataset", choices=list(_ped2.DATASETS), default="ped2",
                    help="the scene: the same profile on its raw data and a store of its own")
    ap.add_argument("--params", help="params file (default: the method's CPU profile in configs/)")
    _ped2.add_set_option(ap)
    ap.add_argument("--rows", help="comma-separated rows (default: all of the method's paper rows)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=0, help="train.max_steps of every run (0: the params file's)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each")
    ap.add_argument("--val-videos", help="comma-separated (default: the dataset's, see the module doc)")
    ap.add_argument("--out-root", help="default: runs/<dataset>-seeds")
    ap.add_argument("--title", default="", help="heading of the RESULTS.md section")
    ap.add_argument("--note", default="", help="text under the heading (what the budget is, why)")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = _ped2.parse(ap)
    a.params = a.params or PARAMS[a.method]
    a.val_videos = a.val_videos or ",".join(_ped2.DATASETS[a.dataset]["val"])
    a.out_root = a.out_root or f"runs/{a.dataset}-seeds"
    if a.child:
        return child(a)

    table = ROWS[a.method]
    default_rows = [r for r in table if r not in ("skip", "patch", "learned-maximize")]
    rows = _ped2.pick(ap, a.rows, table, "row") if a.rows else default_rows
    seeds = [int(s) for s in a.seeds.split(",")]
    profile = config_mod.load(a.params, a.set)
    scene = _ped2.dataset_overrides(profile, a.dataset)     # before the user's -p: theirs win
    base = config_mod.load(a.params, [*scene, *a.set])
    if base.model.method != a.method:
        ap.error(f"{a.params} is a {base.model.method} profile, not {a.method}")
    _ped2.extract(base)

    jobs, started = [], dt.datetime.now().isoformat(timespec="seconds")
    for r in rows:
        for s in seeds:
            out = Path(a.out_root) / a.name / f"{r}-seed{s}"
            sets = [*scene, *a.set, *table[r][1], f"seed={s}", "tracking.enabled=false",
                    f"train.out={out / 'train'}", f"evaluate.out={out / 'evaluate'}"]
            if a.steps:
                sets.append(f"train.max_steps={a.steps}")
            cfg = config_mod.load(a.params, sets)     # validates every row before anything runs
            jobs.append((r, s, out, sets, cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    running: list[tuple] = []
    queue = list(jobs)
    t0 = time.perf_counter()
    while queue or running:
        while queue and len(running) < a.jobs:
            r, s, out, sets, _ = queue.pop(0)
            if (out / "result.json").is_file():
                print(f"{r} seed {s}: kept from an earlier run of this command ({out / 'result.json'})")
                continue
            out.mkdir(parents=True, exist_ok=True)
            for sub in ("train", "evaluate"):
                (out / sub).exists() and subprocess.run(["rm", "-rf", str(out / sub)], check=True)
            log = open(out / "log.txt", "w")
            cmd = [sys.executable, SCRIPT, "--params", a.params, "--val-videos", a.val_videos,
                   "--name", a.name, "--method", a.method, "--child", json.dumps(sets)]
            running.append((r, s, out, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"{r} seed {s}: started", flush=True)
        time.sleep(5)
        for item in list(running):
            r, s, out, proc, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            if proc.returncode != 0:
                print(f"{r} seed {s}: FAILED (exit {proc.returncode}); see {out / 'log.txt'}", file=sys.stderr)
                for _, _, _, p, _ in running:
                    p.terminate()
                return 1
            res = json.loads((out / "result.json").read_text())
            print(f"{r} seed {s}: all {res['auc']['all']:.2f} held-out {res['auc']['held_out']:.2f} "
                  f"val {res['auc']['val']:.2f}, {res['steps']} steps in {res['train_min']} min (load {res['load']})",
                  flush=True)
    wall = (time.perf_counter() - t0) / 60

    results = {r: {s: json.loads((Path(a.out_root) / a.name / f"{r}-seed{s}" / "result.json").read_text())
                   for s in seeds} for r in rows}
    entry = {"name": a.name, "dataset": a.dataset, "method": a.method, "params": a.params, "overrides": [*scene, *a.set],
             "steps": a.steps or None,
             "seeds": seeds, "val_videos": a.val_videos.split(","), "commit": _ped2.git_rev(), "started": started,
             "wall_min": round(wall, 1), "jobs": a.jobs, "rows": {}}
    val = a.val_videos.split(",")
    n_all = len(results[rows[0]][seeds[0]].get("video_auc") or {}) or "all"
    n_held = n_all - len(val) if isinstance(n_all, int) else "held-out"
    head = ["row", "pseudo anomalies", "steps", "train min (load)", f"all {n_all} micro AUC %", f"held-out {n_held} %",
            f"val {len(val)} %", "macro % (all)", "floor all % (held-out)", "padded all %", "paper %"]
    extra_cols = []
    sample = results[rows[0]][seeds[0]]
    if "auc_region" in sample:
        extra_cols.append(("region all 12 %", lambda x: x["auc_region"]["all"]))
        extra_cols.append(("region held-out %", lambda x: x["auc_region"]["held_out"]))
        extra_cols.append(("region val %", lambda x: x["auc_region"]["val"]))
    if "pixel_auc" in sample["metrics"]:
        extra_cols.append(("pixel AUC %", lambda x: 100 * x["metrics"]["pixel_auc"]))
    if "auc_micro_ci_low" in sample["metrics"]:
        extra_cols.append(("95% CI (all, seed mean)", None))
    head += [c for c, _ in extra_cols]
    md_rows = []
    for r in rows:
        per = [results[r][s] for s in seeds]
        row_entry = {"label": table[r][0], "overrides": table[r][1], "per_seed": {}}
        for s, x in zip(seeds, per):
            row_entry["per_seed"][str(s)] = {"all": x["auc"]["all"], "held_out": x["auc"]["held_out"],
                                            "val": x["auc"]["val"], "floor": x["floor"], "padded": x["auc_padded"],
                                            "dataset": x["dataset"], "commit": x["commit"],
                                            "train_min": x["train_min"], "load": x["load"],
                                            "steps": x["steps"], "eval_min": x["eval_min"], "metrics": x["metrics"],
                                            "video_auc": x.get("video_auc"),
                                            **({"region": x["auc_region"]} if "auc_region" in x else {})}
        for k in ("all", "held_out", "val"):
            m, sd = mean_std([x["auc"][k] for x in per])
            row_entry[f"{k}_mean"], row_entry[f"{k}_std"] = round(m, 2), round(sd, 2)
        row_entry["train_min_mean"] = round(statistics.fmean(x["train_min"] for x in per), 1)
        for k in ("all", "held_out", "val"):   # the floor of a row's runs is one number (same frames, no training)
            row_entry[f"floor_{k}"] = per[0]["floor"]["max"][k]
            m, sd = mean_std([x["auc_padded"][k] for x in per])
            row_entry[f"padded_{k}_mean"], row_entry[f"padded_{k}_std"] = round(m, 2), round(sd, 2)
        if "auc_region" in per[0]:
            for k in ("all", "held_out", "val"):
                m, sd = mean_std([x["auc_region"][k] for x in per])
                row_entry[f"region_{k}_mean"], row_entry[f"region_{k}_std"] = round(m, 2), round(sd, 2)
        entry["rows"][r] = row_entry
        macro = [100 * x["metrics"]["auc_macro"] for x in per if x["metrics"].get("auc_macro") is not None]
        cells = [r, table[r][0], str(per[0]["steps"]),
                 f"{row_entry['train_min_mean']} ({statistics.fmean(x['load'] for x in per):.1f})",
                 fmt([x["auc"]["all"] for x in per]), fmt([x["auc"]["held_out"] for x in per]),
                 fmt([x["auc"]["val"] for x in per]), fmt(macro) if macro else "–",
                 f"{row_entry['floor_all']:.2f} ({row_entry['floor_held_out']:.2f})",
                 fmt([x["auc_padded"]["all"] for x in per]), table[r][2] if a.dataset == "ped2" else "–"]
        for c, f in extra_cols:
            if f is None:
                lo = statistics.fmean(100 * x["metrics"]["auc_micro_ci_low"] for x in per)
                hi = statistics.fmean(100 * x["metrics"]["auc_micro_ci_high"] for x in per)
                cells.append(f"{lo:.1f}–{hi:.1f}")
            else:
                cells.append(fmt([f(x) for x in per]))
        md_rows.append(cells)
    md = _ped2.md_table(head, md_rows, left=2)
    videos = sorted({v for r in rows for s in seeds for v in (results[r][s].get("video_auc") or {})})
    defined = [v for v in videos if all(results[r][s]["video_auc"].get(v) is not None for r in rows for s in seeds)]
    if defined:   # where a row wins or loses: per-video AUC (single-class videos have none)
        vrows = [[r, table[r][0]] + [fmt([100 * results[r][s]["video_auc"][v] for s in seeds]) for v in defined]
                 for r in rows]
        md += "\n\nPer-video AUC % (mean ± std over seeds; videos with both classes):\n\n" + _ped2.md_table(
            ["row", "pseudo anomalies", *defined], vrows, left=2)
    entry["compute_min"] = round(sum(x["train_min"] + x["eval_min"] for r in rows for x in results[r].values()), 1)
    print()
    print(md)
    res_path = _ped2.REPO / "benchmarks" / "results" / f"{a.name}.json"
    res_path.parent.mkdir(parents=True, exist_ok=True)
    res_path.write_text(json.dumps(entry, indent=1) + "\n")
    print(f"→ {res_path}")
    if a.no_append:
        return 0
    loads = [x["load"] for r in rows for x in results[r].values()]
    text = ["", f"## {a.title or a.name} (`benchmarks/ped2_seeds.py --name {a.name} --dataset {a.dataset}`)", "",
            f"{_ped2.environment()}. {a.dataset}; params `{a.params}`{_ped2.overrides([*scene, *a.set])}; "
            f"{'train.max_steps = ' + str(a.steps) if a.steps else 'steps from the params file'}; seeds "
            f"{', '.join(map(str, seeds))}; {a.jobs} single-thread runs at once; machine load during the runs "
            f"{min(loads):.1f}–{max(loads):.1f} (2 cores); {entry['compute_min']} run-minutes (train + evaluate) in all. Recipes chosen on val videos {a.val_videos.replace(',', ', ')}; "
            "held-out = the other test videos; all = the papers' protocol (official: only frames a clip scores). "
            "Floor: the training-free floor (the higher of frame difference and temporal residual) on the same frames; "
            "padded: the same runs under the protocol before (every frame counted). Mean ± std over seeds. "
            f"Machine-readable: `benchmarks/results/{a.name}.json`. {a.note}", "", md, ""]
    _ped2.append(_ped2.REPO / "benchmarks" / "RESULTS.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
