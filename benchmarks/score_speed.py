"""How fast `pseudovad score` runs at the CPU profile, with and without the annotated video.

    .venv/bin/python benchmarks/score_speed.py [--videos 01,02,03,04] [--repeats 3] [--model M.pt]
                                               [--codecs none,h264,vp9] [--no-append]

The input is UCSD Ped2 test footage at its own resolution (360×240), written once into one MJPG
.avi, the way a camera export arrives. The model has the CPU profile's architecture
(configs/ped2-cpu.yaml: 16-frame clips at 64×96, widths 32-48-64-64); without --model its weights
are random and calibrated on one Ped2 training video (speed does not depend on the weights).
Each row runs the real command, `python -m pseudovad score …`, in a fresh process, conditions
alternating within each repeat. Reported per condition (median of the repeats, min–max):
  scoring fps       frames / (last frame done − first frame scored), encoder finish included
  start-up s        process spawn → first scored frame (imports, model load, first clip filled)
Prints a table, appends it to benchmarks/RESULTS.md and writes benchmarks/results/score_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _ped2  # noqa: F401  (puts src/ on sys.path)
from _ped2 import REPO

PED2 = REPO.parent / "shared" / "data" / "ped2"
if not PED2.is_dir():
    PED2 = Path("/work/shared/data/ped2")


def build_video(videos: list[str], dest: Path) -> tuple[int, tuple[int, int]]:
    import cv2

    from pseudovad.data.sources import frame_files

    writer = None
    n = 0
    for v in videos:
        for f in frame_files(PED2 / "testing" / "frames" / v):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(dest), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
            writer.write(img)
            n += 1
    writer.release()
    return n, (h, w)


def build_model(dest: Path) -> None:
    import numpy as np
    import torch

    from pseudovad import calibration
    from pseudovad import config as config_mod
    from pseudovad.data.sources import frame_files, read_frames, Source
    from pseudovad.evaluation.streaming import Detector
    from pseudovad.models import build_model as build
    from pseudovad.models.model_file import model_meta, save_model

    cfg = config_mod.load(REPO / "configs" / "ped2-cpu.yaml", [])
    torch.manual_seed(0)
    net = build(cfg).eval()
    meta = model_meta(cfg)
    src = Source("01", "training", PED2 / "training" / "frames" / "01", "frames")
    assert frame_files(src.path)
    frames = np.stack(list(read_frames(src, tuple(cfg.data.size), cfg.data.channels)))
    psnr = Detector(net, meta, "cpu", cfg.score.batch_size).score_video(frames)
    save_model(dest, net, model_meta(cfg, calibration=calibration.calibrate(psnr)))


def run_once(video: Path, model: Path, out: Path, codec: str) -> dict:
    cmd = [sys.executable, "-m", "pseudovad", "score", str(video), "--model", str(model), "--out", str(out),
           "--device", "cpu", "-P", str(REPO / "params.yaml")]
    if codec != "none":
        suffix = {"h264": ".mp4", "vp9": ".webm", "mjpg": ".avi", "mp4v": ".mp4"}[codec]
        cmd += ["--video", str(out.parent / f"{out.name}{suffix}"), "--video-codec", codec]
    env = {**os.environ, "PSEUDOVAD_NO_PROGRESS": "1"}
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.time() - t0
    if p.returncode != 0:
        raise SystemExit(f"score failed ({p.returncode}): {p.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    t = s["timing"]
    return {"fps": t["fps"], "startup_s": round(t["first_frame_at"] - t0, 2), "wall_s": round(wall, 2),
            "frames": s["frames"]}


def breakdown(video: Path, model: Path, repeats: int) -> dict[str, list[float]]:
    """ms per frame of each part of scoring with the annotated video, measured alone in this process."""
    import numpy as np

    from pseudovad.data.sources import Source, convert, decode_frames, to_bgr
    from pseudovad.scoring.annotate import Annotator, error_range
    from pseudovad.evaluation.streaming import Detector
    from pseudovad.scoring.video_out import VideoWriter

    det = Detector.load(model, "cpu", 8)
    src = Source("v", "score", video, "video")
    raw = list(decode_frames(src))
    size, ch = tuple(det.meta["size"]), int(det.meta["channels"])
    small = [convert(f, size, ch) for f in raw]
    h, w = raw[0].shape[:2]
    ann = Annotator((h, w), 0.99, error_range(det.meta.get("calibration")))
    errs = [s.error for s in det.stream(iter(small[:40]), errors=True)]
    out: dict[str, list[float]] = {"decode": [], "resize to the model": [], "detector (PSNR + error map)": [],
                                   "draw annotation": [], "encode H.264 (ffmpeg process)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t = time.perf_counter()
            n = sum(1 for _ in decode_frames(src))
            out["decode"].append(1000 * (time.perf_counter() - t) / n)
            t = time.perf_counter()
            for f in raw:
                convert(f, size, ch)
            out["resize to the model"].append(1000 * (time.perf_counter() - t) / len(raw))
            t = time.perf_counter()
            k = sum(1 for _ in det.stream(iter(small), errors=True))
            out["detector (PSNR + error map)"].append(1000 * (time.perf_counter() - t) / k)
            t = time.perf_counter()
            drawn = [ann.draw(to_bgr(f), errs[i % len(errs)], 0.5, i % 50 > 40, "00:00:00.00") for i, f in enumerate(raw)]
            out["draw annotation"].append(1000 * (time.perf_counter() - t) / len(raw))
            t = time.perf_counter()
            vw = VideoWriter(Path(tmp) / "x.mp4", (w, h), 25.0, "h264")
            for f in drawn:
                vw.write(f)
            vw.close()
            out["encode H.264 (ffmpeg process)"].append(1000 * (time.perf_counter() - t) / len(drawn))
    del np
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default="01,02,03,04", help="Ped2 test videos, concatenated into one input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--codecs", default="none,h264,vp9", help="none (no annotated video), h264, vp9, mjpg, mp4v")
    ap.add_argument("--model", help="a trained model.pt (default: random weights, CPU profile architecture)")
    ap.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for the scoring processes (0: torch's default)")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    codecs = [c.strip() for c in a.codecs.split(",") if c.strip()]
    import torch

    with tempfile.TemporaryDirectory(prefix="score-speed-") as tmp:
        tmp = Path(tmp)
        video = tmp / "ped2.avi"
        n, (h, w) = build_video(a.videos.split(","), video)
        model = Path(a.model) if a.model else tmp / "model.pt"
        if not a.model:
            build_model(model)
        parts = breakdown(video, model, a.repeats)
        runs: dict[str, list[dict]] = {c: [] for c in codecs}
        loads = []
        for r in range(a.repeats):
            order = codecs if r % 2 == 0 else codecs[::-1]
            for c in order:
                loads.append(os.getloadavg()[0])
                runs[c].append(run_once(video, model, tmp / f"out-{c}-{r}", c))
                print(f"repeat {r + 1} {c}: {runs[c][-1]}", flush=True)
    rows = []
    for c in codecs:
        fps = [x["fps"] for x in runs[c]]
        st = [x["startup_s"] for x in runs[c]]
        rows.append({"video": c, "fps_median": statistics.median(fps), "fps_min": min(fps), "fps_max": max(fps),
                     "startup_median_s": statistics.median(st), "startup_min_s": min(st), "startup_max_s": max(st),
                     "runs": runs[c]})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    env = (f"{time.strftime('%Y-%m-%d')}, commit {commit}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
           f"{a.threads or torch.get_num_threads()} torch threads; load average during the runs {min(loads):.1f}–{max(loads):.1f} "
           f"(shared machine)")
    head = (f"Input: Ped2 test videos {a.videos} ({n} frames, {w}×{h}) as one MJPG .avi; model: "
            f"{'`' + a.model + '`' if a.model else 'CPU profile architecture (configs/ped2-cpu.yaml), random weights'}; "
            f"{a.repeats} repeats, conditions alternating.")
    table = ["| annotated video | scoring fps (median, min–max) | start-up to first frame s (median, min–max) |",
             "|---|---:|---:|"]
    for r in rows:
        table.append(f"| {r['video']} | {r['fps_median']:.1f} ({r['fps_min']:.1f}–{r['fps_max']:.1f}) | "
                     f"{r['startup_median_s']:.1f} ({r['startup_min_s']:.1f}–{r['startup_max_s']:.1f}) |")
    table += ["", "Where the time of one frame goes, each part measured alone in one process (ms per frame, "
              "median of the repeats; the encoder runs in its own process, beside scoring):", "",
              "| part | ms / frame |", "|---|---:|"]
    table += [f"| {k} | {statistics.median(v):.2f} |" for k, v in parts.items()]
    text = "\n".join([env, "", head, "", *table])
    print(text)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "score_speed.json").write_text(json.dumps({"environment": env, "input": head, "rows": rows, "breakdown_ms_per_frame": parts}, indent=2) + "\n")
    if not a.no_append:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n## `score` speed at the CPU profile, with the annotated video (`benchmarks/score_speed.py`)\n\n"
                    + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
