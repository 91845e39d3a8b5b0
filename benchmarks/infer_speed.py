"""Scoring speed (Detector frames/s) and start-up time (`pseudovad --help`, a refused key, `score`
to its first scored frame), today's code against this branch's, side by side.

Throughput: LTGPA's video F at the CPU profile (configs/ped2-cpu.yaml: widths 32/48/64/64,
16×64×96 clips, stride 1, scored frame 8), random weights with BatchNorm statistics that are not
the identity (speed does not depend on what a model learned), one 180-frame video of random
uint8 frames per call (Ped2's test videos are 120–180 frames). Contenders, timed alternately in
one process (benchmarks/_speed.py `alternate`: read the ratios under load):
- `today`: the engine before this branch (each clip stacked from its frames, fp32, contiguous,
  BatchNorm as a layer, the whole clip reconstructed and one frame read out, torch.no_grad);
- `<amp>/<format>`: `evaluation.streaming.Detector` as `evaluate`/`score` run it (inference.amp
  off|bf16 × inference.memory_format contiguous|channels_last): BatchNorm folded, clips as
  one float window of frames, inference_mode, the first layer shared by a batch's overlapping
  clips (`VideoAutoencoder.reconstruct_frame_of_clips`), the scored frame's share of the
  decoder only;
- `…+noshare`: the same with the clips stacked (strided views) and the first layer run per
  clip, `…+fullframe`: also the whole clip decoded, `…+nofold`: without folding BatchNorm, to see
  what each buys; `…+evaluate`: what `evaluate` does per frame (error
  maps and the region score beside the PSNR);
- `…@B`: another batch size (default: --batch).
Every contender's PSNR is compared with `today`'s (max |ΔPSNR| dB, recorded). `--method mae_nct`:
the same for MAE-NCT's CPU-profile ViT (configs/ped2-mae-cpu.yaml; `today` predicts the frame
from the 4 before it, fp32, contiguous).

Start-up (`--startup`): each command in a fresh process, the source tree of `--before` (default
main, unpacked with `git archive` into a temp folder) against this checkout's, alternately:
`pseudovad --help`; `pseudovad evaluate -p train.bogus=1` (refused: exit 2); `pseudovad score` on
a 180-frame 240×360 MJPG video with a calibrated CPU-profile model.pt, to its first scored frame
(a post-import hook wraps `Detector.predict`, prints the time since the parent started the
process, and exits) and to the end (whole command, with torch's default threads and with
`--threads 1`).

    .venv/bin/python benchmarks/infer_speed.py [--rounds 3] [--batch 16] [--threads 0]
        [--contenders today,off/contiguous,...] [--startup] [--before main] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _speed

FRAMES = 180
WIDTH = [32, 48, 64, 64]
SIZE = (64, 96)
CONTENDERS = ["today", "off/contiguous", "off/channels_last", "bf16/contiguous", "bf16/channels_last",
              "bf16/channels_last+noshare", "bf16/channels_last+fullframe", "bf16/channels_last+nofold", "bf16/channels_last+evaluate",
              "bf16/channels_last@8", "bf16/channels_last@32"]
MAE_CONTENDERS = ["today", "off/contiguous", "off/channels_last", "bf16/contiguous", "bf16/channels_last"]


# configs/ped2-mae-cpu.yaml's ViT
MAE = {"patch_size": 8, "embed_dim": 96, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "in_frames": 4, "pretrained": None}


def cpu_cfg(method: str = "ltgpa"):
    from pseudovad import config as config_mod

    return config_mod.from_dict({"data": {"size": list(SIZE), "channels": 1, "clip_len": 16, "scored_index": 8},
                                 "model": {"method": method, "ltgpa": {"width": WIDTH, "g_width": [32, 48, 64]},
                                           "mae": MAE}})


def cpu_model(method: str = "ltgpa"):
    """The CPU-profile F (LTGPA: with the running statistics of a few batches of data) or ViT, eval mode."""
    import torch

    from pseudovad.models import build_model

    torch.manual_seed(0)
    net = build_model(cpu_cfg(method))
    if method == "ltgpa":
        for m in net.modules():                   # cumulative statistics: activations normalised, so
            if isinstance(m, torch.nn.BatchNorm3d):   # the output varies with the input (|ΔPSNR| means something)
                m.momentum = None
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.rand(4, 1, 16, *SIZE) * 2 - 1)
    return net.eval()


def today_psnr(net, meta, frames, batch: int):
    """Per-clip PSNR as the engine before this branch computed it (see module doc)."""
    import numpy as np
    import torch

    from pseudovad.data.clips import to_tensor
    from pseudovad.evaluation.psnr import frame_psnr
    from pseudovad.geometry import ClipGeometry

    g = ClipGeometry.from_meta(meta)
    starts = list(g.starts(len(frames)))
    out = []
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            clips = torch.stack([to_tensor(np.stack([frames[s + j * g.frame_step] for j in range(g.clip_len)]), "tanh")
                                 for s in starts[i:i + batch]])
            t = g.scored_index
            pred = net(clips)[:, :, t] if meta["method"] == "ltgpa" else net(clips[:, :, :t])
            out.append(frame_psnr(pred, clips[:, :, g.scored_index], "tanh"))
    return torch.cat(out).numpy()


def throughput(args) -> list[dict]:
    import numpy as np
    import torch

    from pseudovad.evaluation.streaming import Detector
    from pseudovad.geometry import ClipGeometry
    from pseudovad.models.model_file import model_meta

    net = cpu_model(args.method)
    meta = model_meta(cpu_cfg(args.method))
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, *SIZE), dtype=np.uint8)
    first = ClipGeometry.from_meta(meta).first_scored
    scored = {}

    def contender(name: str):
        spec, _, b = name.partition("@")
        batch = int(b) if b else args.batch
        if spec == "today":
            return lambda: scored.__setitem__(name, today_psnr(net, meta, frames, batch))
        spec, _, variant = spec.partition("+")
        amp, fmt = spec.split("/")
        det = Detector(net, meta, "cpu", batch, amp, fmt)
        if variant in ("noshare", "fullframe"):   # clips stacked, the first layer run per clip
            det.net.reconstruct_frame_of_clips = None
        if variant == "fullframe":
            det.net.reconstruct_frame = None      # scored_prediction then decodes the whole clip
        elif variant == "nofold":                 # the frozen copy without folding BatchNorm
            import copy

            det._net = copy.deepcopy(net).eval().to(memory_format=det._weights_format)
        n_clips = FRAMES - ClipGeometry.from_meta(meta).span + 1
        if variant == "evaluate":                 # what evaluate does per frame: error maps, region PSNR too
            from pseudovad.evaluation.regions import region_psnr

            def run():
                p = []
                for sc in det.stream(frames, errors=True):
                    p.append(sc.psnr)
                    if sc.error is not None:
                        region_psnr(sc.error, (4, 6))
                scored[name] = np.asarray(p)[first:first + n_clips]
            return run
        return lambda: scored.__setitem__(name, det.score_video(frames)[first:first + n_clips])

    names = args.contenders.split(",")
    m = _speed.machine()
    print(f"# Detector scoring at the CPU profile ({args.method}), {FRAMES} frames/call, {args.rounds} rounds, "
          f"{m['threads']} threads, load {m['load_before']}", flush=True)
    res = _speed.alternate({n: contender(n) for n in names}, args.rounds,
                           on_round=lambda r: print(f"  round {r + 1}/{args.rounds} load {_speed.load()}", flush=True))
    load_after = _speed.load()
    ref = res.get("today", {}).get("median")
    rows = []
    print(f"{'contender':34s} {'median s':>9s} {'frames/s':>9s} {'cpu s':>7s} {'vs today':>8s} {'max|ΔPSNR| dB':>14s}")
    for n in names:
        r = res[n]
        dpsnr = (float(np.abs(scored[n] - scored["today"]).max()) if "today" in scored and n != "today" else 0.0)
        row = {"method": args.method, "contender": n, "frames": FRAMES, "median_s": round(r["median"], 4), "min_s": round(r["min"], 4),
               "frames_per_s": round(FRAMES / r["median"], 1), "cpu_median_s": round(r["cpu_median"], 4),
               "speedup_vs_today": round(ref / r["median"], 2) if ref else None, "max_abs_dpsnr_db": round(dpsnr, 5),
               "threads": m["threads"], "rounds": args.rounds, "times": r["times"], "load_after": load_after}
        rows.append(row)
        print(f"{n:34s} {r['median']:9.3f} {row['frames_per_s']:9.1f} {r['cpu_median']:7.2f} "
              f"{row['speedup_vs_today'] or 0:8.2f} {dpsnr:14.4f}")
    print(f"# load after: {load_after}")
    if not args.no_write:
        _speed.write_result("infer_speed", m, rows, key=("method", "contender", "threads"))
    return rows


# ----------------------------------------------------------------------------------------------
# start-up

# Run in the child before pseudovad is imported: once evaluation.streaming is loaded, wrap
# Detector.predict so the first scored batch prints the time since the parent's start and exits.
_HOOK = textwrap.dedent("""
    import importlib.abc, importlib.machinery, os, sys, time
    T0 = float(os.environ["PV_T0"])
    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "pseudovad.evaluation.streaming":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module
            def exec_module(module):
                run(module)
                predict = module.Detector.predict
                def first(self, x):
                    out = predict(self, x)
                    print("FIRST_FRAME_S", time.time() - T0, flush=True)
                    os._exit(0)
                module.Detector.predict = first
            spec.loader.exec_module = exec_module
            return spec
    if os.environ.get("PV_FIRST_FRAME"):
        sys.meta_path.insert(0, Hook())
    from pseudovad.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _tree(ref: str, tmp: Path) -> Path:
    dest = tmp / ref.replace("/", "_")
    dest.mkdir()
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=_speed.REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def _run(src: Path, argv: list[str], cwd: Path, first_frame: bool = False) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "PSEUDOVAD_NO_PROGRESS": "1", "PV_T0": repr(time.time())}
    env.pop("PV_FIRST_FRAME", None)
    if first_frame:
        env["PV_FIRST_FRAME"] = "1"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _HOOK, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if first_frame:
        line = [x for x in p.stdout.splitlines() if x.startswith("FIRST_FRAME_S")]
        if not line:
            raise RuntimeError(f"{src}: score never scored a frame: {p.stderr[-800:]}")
        wall = float(line[0].split()[1])
    return wall, p.returncode, (p.stderr.strip().splitlines() or [""])[-1]


def _fixture(src: Path, tmp: Path, tag: str) -> Path:
    """A calibrated CPU-profile model.pt written by that tree's own code (each tree reads its own)."""
    model = tmp / f"model-{tag}.pt"
    # inline, not `import infer_speed`: _speed puts this checkout's src first on sys.path
    code = textwrap.dedent(f"""
        import numpy as np, torch
        from pseudovad import calibration, config
        from pseudovad.evaluation.streaming import score_video
        from pseudovad.models import build_model
        from pseudovad.models.model_file import model_meta, save_model
        cfg = config.from_dict({{"data": {{"size": {list(SIZE)}, "channels": 1}},
                                "model": {{"ltgpa": {{"width": {WIDTH}, "g_width": [32, 48, 64]}}}}}})
        torch.manual_seed(0)
        net = build_model(cfg).eval()
        frames = np.random.default_rng(1).integers(0, 256, (40, *{SIZE!r}), dtype=np.uint8)
        psnr = score_video(net, model_meta(cfg), frames, "cpu", 8)
        save_model({str(model)!r}, net, model_meta(cfg, calibration=calibration.calibrate(psnr)))
    """)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(src)}, check=True)
    return model


def startup(args) -> list[dict]:
    import numpy as np

    from pseudovad.data.synthetic import write_video

    m = _speed.machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="pv-startup-") as t:
        tmp = Path(t)
        trees = {"before": _tree(args.before, tmp), "after": _speed.REPO / "src"}
        (tmp / "params.yaml").write_text("seed: 0\n")
        rng = np.random.default_rng(0)
        video = tmp / "cam.avi"
        write_video(video, list(rng.integers(0, 256, (FRAMES, 240, 360), dtype=np.uint8)), 10)
        models = {k: _fixture(src, tmp, k) for k, src in trees.items()}
        commands = {
            "pseudovad --help": lambda k: (["--help"], False),
            "pseudovad evaluate -p train.bogus=1 (exit 2)": lambda k: (["evaluate", "-p", "train.bogus=1"], False),
            "pseudovad score → first scored frame": lambda k: (["score", str(video), "--model", str(models[k]),
                                                                "--out", str(tmp / f"out-{k}")], True),
            "pseudovad score (whole, 180 frames)": lambda k: (["score", str(video), "--model", str(models[k]),
                                                              "--out", str(tmp / f"out-{k}")], False),
            "pseudovad score --threads 1 (whole)": lambda k: (["score", str(video), "--model", str(models[k]),
                                                               "--out", str(tmp / f"out-{k}"), "--threads", "1"], False),
        }
        print(f"# start-up, {args.rounds} rounds alternating before ({args.before}) / after (this checkout), "
              f"load {m['load_before']}", flush=True)
        print(f"{'command':46s} {'before s':>9s} {'after s':>9s} {'ratio':>6s}  rc / last stderr line (after)")
        for cmd, make in commands.items():
            times = {"before": [], "after": []}
            last = {}
            for r in range(args.rounds):
                for k in (["before", "after"] if r % 2 == 0 else ["after", "before"]):
                    argv, ff = make(k)
                    wall, rc, err = _run(trees[k], argv, tmp, ff)
                    times[k].append(wall)
                    last[k] = (rc, err)
            med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
            row = {"command": cmd, "before_ref": args.before, "before_s": round(med["before"], 3),
                   "after_s": round(med["after"], 3), "ratio": round(med["before"] / med["after"], 2),
                   "times": {k: [round(x, 3) for x in v] for k, v in times.items()},
                   "rc": {k: v[0] for k, v in last.items()}, "stderr_after": last["after"][1][:200],
                   "rounds": args.rounds, "load_after": _speed.load()}
            rows.append(row)
            print(f"{cmd:46s} {med['before']:9.2f} {med['after']:9.2f} {row['ratio']:6.2f}  "
                  f"{last['after'][0]} / {last['after'][1][:60]}", flush=True)
    print(f"# load after: {_speed.load()}")
    if not args.no_write:
        _speed.write_result("startup_speed", m, rows, key=("command",))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="clips per batch (ped2-cpu's evaluate.batch_size)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--method", choices=("ltgpa", "mae_nct"), default="ltgpa",
                    help="LTGPA's video F or MAE-NCT's ViT (configs/ped2-mae-cpu.yaml), both at 64×96")
    ap.add_argument("--contenders", default=None, help=f"default: {','.join(CONTENDERS)} (ltgpa), "
                                                        f"{','.join(MAE_CONTENDERS)} (mae_nct)")
    ap.add_argument("--startup", action="store_true", help="time start-up instead of throughput")
    ap.add_argument("--before", default="main", help="git ref of the 'before' tree for --startup")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.contenders = args.contenders or ",".join(CONTENDERS if args.method == "ltgpa" else MAE_CONTENDERS)
    _speed.set_threads(args.threads)
    startup(args) if args.startup else throughput(args)


if __name__ == "__main__":
    main()
