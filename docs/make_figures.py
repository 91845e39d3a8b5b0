"""The documentation's pictures, made from real runs, never drawn by hand. Run by hand (not in CI)
from the repository root, with the project's venv, after committing (it works on a fresh clone):

    .venv/bin/python docs/make_figures.py --ped2 ../shared/data/ped2 [--work /tmp/pv-figures] [--only NAME ...]

Writes docs/images/:
- pipeline.png        the stages of dvc.yaml and the files that flow between them (read from dvc.yaml);
- mlflow_version.png  the registered version's page of a real `mlflow server`, after the synthetic
                      default pipeline (`dvc repro`, what `make run` runs) in a fresh clone, taken by
                      headless Chromium (Debian's `chromium` package);
- annotated_frame.png, score_timeline.png  `pseudovad score --video` on UCSD Ped2 test video 04
                      with a model trained on Ped2 here (configs/ped2-cpu.yaml, no pseudo anomalies,
                      1,000 steps: the baseline row of benchmarks/RESULTS.md); the frame with the
                      lowest PSNR (the most anomalous);
- roc.png, timeline.png  `pseudovad evaluate` of that model on Ped2 (its plots/roc.png and
                      plots/timeline_04.png);
- auc_vs_minutes.png  benchmarks/ped2_explore_report.py on the recorded AUC-vs-minutes run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
       "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
ENV.pop("MLFLOW_TRACKING_URI", None)


def sh(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, cmd)), f"(in {cwd})", flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, check=True, **kw)


# ----------------------------------------------------------------------------------------------
# The pipeline, from dvc.yaml

def pipeline_figure(out: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]

    def paths(spec: dict, *fields: str) -> list[str]:
        found = []
        for f in fields:
            for item in spec.get(f, []) or []:
                found.append(next(iter(item)) if isinstance(item, dict) else item)
        return found

    outs = {name: paths(s, "outs", "metrics", "plots") for name, s in stages.items()}
    edges: dict[tuple[str, str], list[str]] = {}
    for b, spec in stages.items():
        for dep in paths(spec, "deps"):
            for a, produced in outs.items():
                if a != b and any(dep == o or dep.startswith(o.rstrip("/") + "/") for o in produced):
                    edges.setdefault((a, b), []).append(dep)
    level: dict[str, int] = {}
    for name in stages:                                   # dvc.yaml lists stages in order
        level[name] = max([level[a] + 1 for (a, b) in edges if b == name and a in level], default=0)
    rows: dict[int, list[str]] = {}
    for name, lv in level.items():
        rows.setdefault(lv, []).append(name)
    pos = {name: (lv * 3.9, -i * 1.5 + (len(rows[lv]) - 1) * 0.75)
           for lv, names in rows.items() for i, name in enumerate(names)}

    fig, ax = plt.subplots(figsize=(12.5, 3.6))
    w, h = 2.5, 0.9
    side = 1
    for (a, b), files in edges.items():
        (xa, ya), (xb, yb) = pos[a], pos[b]
        label = "\n".join(sorted({f.split("/")[-1] if f.count("/") > 1 else f for f in files}))
        if level[b] - level[a] == 1:        # neighbours: a straight arrow, its files above it
            ax.annotate("", xy=(xb - w / 2, yb), xytext=(xa + w / 2, ya),
                        arrowprops=dict(arrowstyle="-|>", color="#555", lw=1.2, shrinkA=2, shrinkB=2))
            up = ya >= yb                   # a slanted arrow's files on its outer side
            ax.text((xa + xb) / 2, (ya + yb) / 2 + (0.12 if up else -0.12), label, ha="center",
                    va="bottom" if up else "top", fontsize=7.5, family="monospace", color="#333")
        else:                               # over a stage: an arc above or below the row
            ax.annotate("", xy=(xb, yb + side * h / 2), xytext=(xa, ya + side * h / 2),
                        arrowprops=dict(arrowstyle="-|>", color="#555", lw=1.2, shrinkA=2, shrinkB=2,
                                        connectionstyle=f"arc3,rad={-0.25 * side}"))
            ax.text((xa + xb) / 2, ya + side * (h / 2 + 0.25 * (xb - xa) / 2 + 0.08), label, ha="center",
                    va="bottom" if side > 0 else "top", fontsize=7.5, family="monospace", color="#333")
            side = -side
    for name, (x, y) in pos.items():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05",
                                    fc="#e8eaf6", ec="#3f51b5", lw=1.4))
        ax.text(x, y + 0.14, name, ha="center", va="center", fontsize=11, weight="bold", color="#1a237e")
        ax.text(x, y - 0.2, stages[name]["cmd"], ha="center", va="center", fontsize=7.5, family="monospace")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - w / 2 - 0.2, max(xs) + w / 2 + 0.2)
    ax.set_ylim(min(ys) - 1.25, max(ys) + 1.25)
    ax.axis("off")
    ax.set_title("dvc.yaml: `dvc repro` runs the stages left to right; arrows carry the files named",
                 fontsize=9, color="#444")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# The synthetic default pipeline in a fresh clone, and the MLflow version page

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(work: Path) -> Path:
    clone = work / "clone"
    if not (clone / "runs" / "register" / "decision.json").is_file():
        shutil.rmtree(clone, ignore_errors=True)
        sh(["git", "clone", "--quiet", str(ROOT), str(clone)], work)
        sh([BIN / "dvc", "repro"], clone)
    return clone


def mlflow_screenshot(clone: Path, out: Path, work: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install -y chromium")
    name = json.loads((clone / "runs" / "register" / "decision.json").read_text())
    port = free_port()
    server = subprocess.Popen([BIN / "mlflow", "server", "--backend-store-uri", "sqlite:///mlflow.db",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              cwd=clone, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        url = f"http://127.0.0.1:{port}/#/models/{name['model_name']}/versions/{name['version']}"
        raw = work / "mlflow_raw.png"
        sh([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={work / 'chromium-profile'}", "--hide-scrollbars", "--window-size=1280,1500",
            "--virtual-time-budget=20000", f"--screenshot={raw}", url], work, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    from PIL import Image

    img = Image.open(raw).convert("RGB")
    # MLflow 3.17 opens an assistant panel on the right; the version page is the left 940 px, the
    # schema table ends above 1,270 px (at this window size)
    img.crop((0, 0, 940, 1270)).save(out, optimize=True)


# ----------------------------------------------------------------------------------------------
# A short Ped2 model: evaluate's plots, score's annotated frame and timeline

def ped2_run(ped2: Path, work: Path) -> dict[str, Path]:
    base = ["-P", ROOT / "configs" / "ped2-cpu.yaml", "-p", f"data.root={ped2}",
            "-p", f"data.store={work / 'ped2-store'}", "-p", "tracking.enabled=false"]
    model = work / "ped2-train" / "model.pt"
    if not (work / "ped2-store" / "manifest.json").is_file():
        sh([BIN / "pseudovad", "extract", *base], work)
    if not model.is_file():
        sh([BIN / "pseudovad", "train", *base, "-p", "pseudo.kind=none", "-p", "train.max_steps=1000",
            "-p", "seed=0", "--out", work / "ped2-train"], work)
    if not (work / "ped2-eval" / "plots" / "roc.png").is_file():
        sh([BIN / "pseudovad", "evaluate", *base, "-p", "evaluate.bootstrap=0", "--model", model,
            "--out", work / "ped2-eval"], work)
    score = work / "ped2-score"
    if not (score / "summary.json").is_file():
        sh([BIN / "pseudovad", "score", ped2 / "testing" / "frames" / "04", *base, "--model", model,
            "--out", score, "--video", score / "annotated.mp4"], work)
    return {"eval": work / "ped2-eval", "score": score}


def annotated_frame(score: Path, out: Path) -> None:
    import cv2
    import pandas as pd

    frames = pd.read_csv(score / "scores.csv", comment="#")
    worst = frames.loc[frames["psnr"].idxmin()]
    cap = cv2.VideoCapture(str(score / "annotated.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, int(worst["frame"]))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"{score / 'annotated.mp4'}: frame {int(worst['frame'])} does not decode")
    frame = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(out), frame, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"annotated frame: frame {int(worst['frame'])}, PSNR {worst['psnr']:.2f} dB, score {worst['score']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ped2", type=Path, help="UCSD Ped2 in the benchmark layout (the Ped2 pictures need it)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "pv-figures",
                    help="scratch folder; finished runs in it are reused")
    ap.add_argument("--only", nargs="*", choices=("pipeline", "mlflow", "ped2", "curve"),
                    help="make these pictures only")
    a = ap.parse_args(argv)
    want = set(a.only or ("pipeline", "mlflow", "ped2", "curve"))
    a.work.mkdir(parents=True, exist_ok=True)
    IMAGES.mkdir(parents=True, exist_ok=True)
    if "pipeline" in want:
        pipeline_figure(IMAGES / "pipeline.png")
    if "mlflow" in want:
        mlflow_screenshot(make_run(a.work), IMAGES / "mlflow_version.png", a.work)
    if "ped2" in want:
        if a.ped2 is None:
            raise SystemExit("--ped2 DATASET is needed for the Ped2 pictures")
        runs = ped2_run(a.ped2.resolve(), a.work)
        annotated_frame(runs["score"], IMAGES / "annotated_frame.png")
        shutil.copyfile(runs["score"] / "timeline.png", IMAGES / "score_timeline.png")
        shutil.copyfile(runs["eval"] / "plots" / "roc.png", IMAGES / "roc.png")
        shutil.copyfile(runs["eval"] / "plots" / "timeline_04.png", IMAGES / "timeline.png")
    if "curve" in want:
        sh([sys.executable, ROOT / "benchmarks" / "ped2_explore_report.py", "--runs", "curve-mae-none-20ep",
            "--x", "train_min", "--plot", IMAGES / "auc_vs_minutes.png"], ROOT, stdout=subprocess.DEVNULL)
    for p in sorted(IMAGES.glob("*.png")):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
