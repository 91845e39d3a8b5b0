"""Does the label-free proxy mean anything? And what an operator lives with on labelled data.

For every trained model given (run folders holding train/model.pt or model.pt, model.pt files,
globs of either, or the runs an INDEX.jsonl lists), on the frame store it was trained on: `--store`
if given, else the store whose training split has the model's `train_fingerprint` (the model's
own `data.store`, then every store under `--stores`); a model whose store is not found is skipped
with a message:
- **the real thing**, on the labelled test split (`evaluation.protocol`, as `evaluate` runs it,
  official protocol): the papers' micro AUC, the training-free floor beside it (`auc_floor`), the
  AUC without per-video normalisation (`auc_raw`), and at the default
  operating point of the calibrated score (threshold 0.99, alarms of ≥ score.min_segment frames):
  the event recall (an event is found when an alarm overlaps it), false alarms per hour of normal
  test footage (UCSD: 10 fps) and the share of normal test frames flagged;
- **the proxy**, on held-out *training* footage only (`evaluation.labelfree`): the injected-anomaly
  AUC of each kind (object, speed, appearance), mean over `--seeds` injection seeds. The footage is
  the model's held-out end (`train.holdout_fraction`) or, for a model trained without one, the
  validation tail it was calibrated on: frames it never trained on either way (the AUC compares
  raw PSNR, so the calibration does not enter it).
Per scene: Spearman ρ between the proxy and the real micro AUC (and auc_raw) over the models,
with a 95 % bootstrap interval (resampling models, 2,000 draws); per kind too. Writes
benchmarks/results/labelfree_proxy.json and deployment_metrics.json, prints both tables as
Markdown for RESULTS.md.

    .venv/bin/python benchmarks/labelfree_proxy.py /work/runs/explore/* /work/runs/ped2-seeds/*/* \
        [--index /work/runs/INDEX.jsonl] [--stores /work/stores | --store STORE] [--seeds 0 1 2] [--fps 10]
        [--device cpu] [--threads 1] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pseudovad import calibration
from pseudovad.data.inject import KINDS, resembled
from pseudovad.data.store import FrameStore
from pseudovad.evaluation import labelfree, protocol
from pseudovad.evaluation.report import describe_model
from pseudovad.evaluation.streaming import Detector
from pseudovad.files import sha256_file, write_json

HERE = Path(__file__).resolve().parent
MIN_SEGMENT = 3          # score.min_segment's default: alarms as `score` raises them


def model_file(path: Path) -> Path | None:
    """The model of a run folder (`train/model.pt`, else `model.pt`), or `path` itself when it is a file."""
    for candidate in (path / "train" / "model.pt", path / "model.pt", path):
        if candidate.is_file():
            return candidate
    return None


def find_runs(patterns: list[str], index: str | None) -> list[Path]:
    """Model files: of the given run folders / model.pt files / globs, then of the folders
    INDEX.jsonl lists (one JSON object a line with a `run`, `dir` or `path` naming the folder)."""
    found: list[Path] = []
    for pat in patterns:
        hits = [Path(p) for p in sorted(glob.glob(pat))]
        if not hits:   # a mistyped path must not shrink the model set unnoticed: ρ depends on it
            print(f"labelfree_proxy: {pat}: no such run folder or model file", file=sys.stderr)
            raise SystemExit(2)
        found += hits
    if index and Path(index).is_file():
        for line in Path(index).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                where = rec.get("run") or rec.get("dir") or rec.get("path")
                if where:
                    found.append(Path(where) if Path(where).is_absolute() else Path(index).parent / where)
    models, seen = [], set()
    for p in found:
        model = model_file(p)
        if model is not None and model.resolve() not in seen:
            seen.add(model.resolve())
            models.append(model)
    return models


def run_name(model: Path) -> str:
    """A model's name in the tables: its run folder's (…/<run>/train/model.pt, …/<run>/model.pt)."""
    folder = model.parent.parent if model.parent.name == "train" else model.parent
    return f"{folder.parent.name}/{folder.name}"


def store_for(meta: dict, stores: Path, store: str | None = None) -> FrameStore:
    """The store the model was trained on (module doc): `store`, else the first candidate whose
    training split has the model's train_fingerprint."""
    if store:
        return FrameStore(store)
    want = meta.get("train_fingerprint")
    own = Path(str(meta.get("config", {}).get("data", {}).get("store") or ""))
    candidates = [own, stores / own.name, *sorted(p for p in stores.glob("*") if (p / "manifest.json").is_file())]
    for c in candidates:
        if str(c) not in ("", ".") and (c / "manifest.json").is_file() and FrameStore(c).fingerprint("training") == want:
            return FrameStore(c)
    raise FileNotFoundError(f"no frame store with this model's training data (train_fingerprint {str(want)[:12]}) "
                            f"at {own} or under {stores}: pass --store")


def measure(model: Path, stores: Path, seeds: list[int], fps: float, device: str, store: str | None = None) -> dict:
    """One model: its labelled test metrics and its proxy on held-out training footage."""
    detector = Detector.load(model, device, batch_size=16)
    meta = detector.meta
    fs = store_for(meta, stores, store)
    conf = meta.get("config", {})
    desc = describe_model(conf)
    entries = protocol.select_videos(fs)
    protocol.check_videos(detector, fs, entries)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        real = protocol.evaluate(detector, fs, entries, Path(tmp), dataset=conf["data"]["name"], model_ref=str(model),
                                 fingerprint="", top_k=0, bootstrap=0, threshold=calibration.DEFAULT_THRESHOLD,
                                 min_segment=MIN_SEGMENT, fps={e.id: e.fps or fps for e in entries})
    source = "holdout"
    parts = labelfree.held_out(fs, meta, "holdout", fps)
    if not parts:
        source, parts = "validation", labelfree.held_out(fs, meta, "validation", fps)
    proxy: dict[str, list[float]] = {k: [] for k in KINDS}
    frames = 0
    for seed in seeds:
        numbers, _ = labelfree.evaluate(detector, fs, parts, KINDS, seed, calibration.DEFAULT_THRESHOLD, MIN_SEGMENT)
        frames = numbers["holdout_frames"]
        for k in KINDS:
            if numbers[f"synthetic_auc_{k}"] is not None:
                proxy[k].append(numbers[f"synthetic_auc_{k}"])
    per_kind = {k: float(np.mean(v)) if v else None for k, v in proxy.items()}
    pseudo = conf.get("pseudo", {})
    kind = pseudo.get("kind") if desc["method"] == "ltgpa" else pseudo.get("mode")
    return {
        "run": run_name(model), "model": str(model), "store": str(fs.root),
        "store_matches": fs.fingerprint("training") == meta.get("train_fingerprint"),
        "model_sha256": sha256_file(model), "dataset": conf["data"]["name"],
        "size": meta["size"], "method": desc["method"], "variant": desc["variant"], "seed": conf.get("seed"),
        "steps": meta.get("steps"),
        "protocol": real["protocol"], "auc_micro": real["auc_micro"], "auc_floor": real["auc_floor"],
        "auc_raw": real["auc_raw"], "event_recall": real.get("event_recall"),
        "events": real.get("events"), "events_found": real.get("events_found"),
        "false_alarms": real.get("false_alarms"), "false_alarms_per_hour": real.get("false_alarms_per_hour"),
        "flagged_share": real.get("flagged_share"), "test_frames": real["frames"],
        "proxy_source": source, "proxy_frames": frames, "proxy_videos": len(parts), "proxy_seeds": seeds,
        "synthetic_auc": float(np.mean([v for v in per_kind.values() if v is not None])),
        **{f"synthetic_auc_{k}": v for k, v in per_kind.items()},
        "resembles": resembled(desc["method"], kind, pseudo.get("p") if desc["method"] == "ltgpa" else None),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def spearman(x: list[float], y: list[float], draws: int = 2000, seed: int = 0) -> dict:
    """ρ and its 95 % bootstrap interval over the pairs (resampled with replacement)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(draws):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boot.append(spearmanr(x[i], y[i]).statistic)
    lo, hi = (float(v) for v in np.nanpercentile(boot, [2.5, 97.5])) if boot else (float("nan"), float("nan"))
    return {"rho": rho, "ci_low": lo, "ci_high": hi, "models": len(x)}


def correlations(rows: list[dict]) -> dict:
    out = {}
    for scene in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == scene]
        if len(mine) < 3:
            out[scene] = {"models": len(mine), "note": "fewer than 3 models: no correlation"}
            continue
        entry = {}
        for real in ("auc_micro", "auc_raw"):
            entry[real] = {"synthetic_auc": spearman([r["synthetic_auc"] for r in mine], [r[real] for r in mine])}
            for k in KINDS:
                pairs = [(r[f"synthetic_auc_{k}"], r[real]) for r in mine if r[f"synthetic_auc_{k}"] is not None]
                if len(pairs) >= 3:
                    entry[real][f"synthetic_auc_{k}"] = spearman(*map(list, zip(*pairs)))
        out[scene] = entry
    return out


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def tables(rows: list[dict], corr: dict) -> str:
    lines = ["### Does the label-free proxy mean anything?", "",
             "| scene | models | ρ(proxy, micro AUC) [95% CI] | ρ(proxy, raw AUC) [95% CI] | "
             + " | ".join(f"ρ({k}, micro AUC)" for k in KINDS) + " |",
             "|---|---:|---|---|" + "---|" * len(KINDS)]
    for scene, c in corr.items():
        if "note" in c:
            lines.append(f"| {scene} | {c['models']} | {c['note']} | | " + " | " * len(KINDS))
            continue
        cell = lambda s: ("– (a constant column)" if not np.isfinite(s["rho"])  # noqa: E731
                          else f"{s['rho']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}]")
        kinds = " | ".join(cell(c["auc_micro"][f"synthetic_auc_{k}"]) if f"synthetic_auc_{k}" in c["auc_micro"] else "–"
                           for k in KINDS)
        lines.append(f"| {scene} | {c['auc_micro']['synthetic_auc']['models']} | {cell(c['auc_micro']['synthetic_auc'])} | "
                     f"{cell(c['auc_raw']['synthetic_auc'])} | {kinds} |")
    lines += ["", "| scene | model | method · variant | steps | proxy footage (frames) | proxy AUC | "
              + " | ".join(KINDS) + " | micro AUC | floor | raw AUC |",
              "|---|---|---|---:|---|---:|" + "---:|" * len(KINDS) + "---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], -r["auc_micro"])):
        kinds = " | ".join(_pct(r[f"synthetic_auc_{k}"]) + ("*" if r["resembles"] == k else "") for k in KINDS)
        lines.append(f"| {r['dataset']} | {r['run']} | {r['method']} · {r['variant']} | {r['steps']} | "
                     f"{r['proxy_source']} ({r['proxy_frames']}) | {_pct(r['synthetic_auc'])} | {kinds} | "
                     f"{_pct(r['auc_micro'])} | {_pct(r['auc_floor'])} | {_pct(r['auc_raw'])} |")
    lines += ["", "\\* the kind resembles the model's own pseudo anomalies.", "",
              "### What an operator lives with (default threshold 0.99 of the calibrated score)", "",
              "| scene | model | method · variant | micro AUC | floor | raw AUC | events found | recall | false alarms / h "
              "| normal frames flagged |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], -r["auc_micro"])):
        per_hour = "–" if r["false_alarms_per_hour"] is None else f"{r['false_alarms_per_hour']:.0f}"
        lines.append(f"| {r['dataset']} | {r['run']} | {r['method']} · {r['variant']} | "
                     f"{_pct(r['auc_micro'])} | {_pct(r['auc_floor'])} | {_pct(r['auc_raw'])} | "
                     f"{r['events_found']}/{r['events']} | "
                     f"{_pct(r['event_recall'])} | {per_hour} | {_pct(r['flagged_share'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run folders (with train/model.pt or model.pt), model.pt files, or globs")
    ap.add_argument("--index", help="an INDEX.jsonl of run folders (e.g. /work/runs/INDEX.jsonl)")
    ap.add_argument("--stores", default="/work/stores", help="folder of frame stores, searched for the one each "
                                                              "model was trained on (its train_fingerprint)")
    ap.add_argument("--store", help="the frame store every model given was trained on (skips the search)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="injection seeds (the proxy is their mean)")
    ap.add_argument("--fps", type=float, default=10.0, help="frame rate of frame-folder footage (UCSD: 10)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is faster beside other jobs)")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args()
    if a.threads:
        from pseudovad.device import set_threads

        set_threads(a.threads)
    runs = find_runs(a.runs, a.index)
    if not runs:
        print("labelfree_proxy: no model files found (run folders with train/model.pt or model.pt)", file=sys.stderr)
        return 2
    rows = []
    t0 = time.perf_counter()
    for run in runs:
        try:
            rows.append(measure(run, Path(a.stores), a.seeds, a.fps, a.device, a.store))
        except Exception as e:           # one unusable run (another scene's store missing …) is reported, not fatal
            print(f"labelfree_proxy: {run}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        r = rows[-1]
        if not r["store_matches"]:
            print(f"labelfree_proxy: {run}: WARNING: {r['store']} is not the training data this model was trained on "
                  "(train_fingerprint differs)", file=sys.stderr)
        print(f"{r['dataset']} {r['run']}: micro {_pct(r['auc_micro'])}, proxy {_pct(r['synthetic_auc'])} "
              f"({r['proxy_source']}, {r['proxy_frames']} frames), {r['seconds']}s", file=sys.stderr, flush=True)
    if not rows:
        print("labelfree_proxy: no model could be measured (see above)", file=sys.stderr)
        return 2
    corr = correlations(rows)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    about = {"commit": commit, "host": platform.node(), "cpus": os.cpu_count(), "load": os.getloadavg()[0],
             "minutes": round((time.perf_counter() - t0) / 60, 1), "seeds": a.seeds, "fps": a.fps}
    out = Path(a.out)
    write_json(out / "labelfree_proxy.json", {**about, "correlations": corr, "models": rows})
    write_json(out / "deployment_metrics.json", {**about, "models": [
        {k: r[k] for k in ("run", "dataset", "method", "variant", "steps", "seed", "protocol", "auc_micro", "auc_floor",
                           "auc_raw", "events",
                           "events_found", "event_recall", "false_alarms", "false_alarms_per_hour", "flagged_share",
                           "test_frames")} for r in rows]})
    print(tables(rows, corr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
