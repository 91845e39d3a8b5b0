"""The training-free floor of frame stores: what `evaluate` writes as `auc_floor`, per scene,
resolution, method's edge frames and protocol, without any model.

For each store and each method's clip geometry (LTGPA: 16-frame clips scored at index 8;
MAE-NCT: 4 input frames, the next one scored), the micro AUC (%) of the two floor scores
(`pseudovad.evaluation.floor`: frame difference = mean MSE to the previous and next frame,
temporal residual = MSE to their mean) on the frames each protocol counts (official: the frames
a clip scores; padded: every frame). Beside them, as a diagnostic only, the score the floor does
not use: the MSE to the previous frame alone, and how many frames repeat their predecessor
exactly (what breaks it: a 100 dB frame squeezes its video's min-max).

    .venv/bin/python benchmarks/floor_table.py /work/stores/ped2-64x96 /work/stores/ped2-128x192 \\
        /work/stores/ped1-64x96 /work/stores/ped1-128x192 --name floor
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _ped2  # benchmarks/ on sys.path; src/ too

METHODS = {"ltgpa": (16, 8), "mae_nct": (5, 4)}   # (clip_len, scored_index): the CPU profiles' geometry


def previous_only_psnr(frames) -> tuple:
    """Diagnostic: (PSNR of each frame's MSE to the previous frame (frame 0: to the next), exact repeats)."""
    import numpy as np

    f = frames.astype(np.float32) / 255.0
    d = np.square(f[1:] - f[:-1]).reshape(len(f) - 1, -1).mean(1, dtype=np.float64)
    return 10 * np.log10(1 / np.maximum(np.r_[d[0], d], 1e-10)), int((d == 0).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", help="frame stores (pseudovad extract) with a labelled test split")
    ap.add_argument("--name", default="", help="write benchmarks/results/<name>.json and append to RESULTS.md")
    a = ap.parse_args()

    from pseudovad.data.store import FrameStore
    from pseudovad.evaluation import floor
    from pseudovad.evaluation.protocol import PROTOCOLS, counted_frames
    from pseudovad.geometry import ClipGeometry

    head = ["store", "frames", "method edges", "protocol", "frames counted", "frame difference %",
            "temporal residual %", "auc_floor %", "previous frame only % (diagnostic)", "repeated frames"]
    rows, out = [], []
    for path in a.stores:
        store = FrameStore(path)
        entries = store.videos("testing")
        labels = {e.id: store.labels(e) for e in entries}
        psnr = {k: {} for k in floor.KINDS}
        prev, repeats = {}, 0
        for e in entries:
            frames = store.array(e)
            for k, p in floor.frame_psnr(frames).items():
                psnr[k][e.id] = p
            prev[e.id], r = previous_only_psnr(frames)
            repeats += r
        size = f"{entries[0].height}×{entries[0].width}"
        for method, (clip_len, scored) in METHODS.items():
            geom = ClipGeometry(clip_len, scored)
            for protocol in PROTOCOLS:
                counted = {e.id: counted_frames(e.frames, geom, protocol) for e in entries}
                got = floor.aucs(labels, psnr, counted)
                diag = floor.aucs(labels, {k: prev for k in floor.KINDS}, counted)["auc_floor"]
                n = sum(len(range(*counted[e.id].indices(e.frames))) for e in entries)
                rec = {"store": str(path), "size": size, "method": method, "protocol": protocol, "frames": n,
                       **{k: round(100 * v, 2) for k, v in got.items()}, "previous_only": round(100 * diag, 2),
                       "repeated_frames": repeats}
                out.append(rec)
                rows.append([Path(path).name, size, method, protocol, str(n), f"{rec['auc_floor_framediff']:.2f}",
                             f"{rec['auc_floor_residual']:.2f}", f"{rec['auc_floor']:.2f}", f"{rec['previous_only']:.2f}",
                             str(repeats)])
                print(" | ".join(rows[-1]), flush=True)
    md = _ped2.md_table(head, rows, left=4)
    print()
    print(md)
    if a.name:
        _ped2.record(a.name, {"name": a.name, "commit": _ped2.git_rev(), "rows": out}, [
            "", f"## The training-free floor of the real stores (`benchmarks/floor_table.py --name {a.name}`)", "",
            f"{_ped2.environment()}. No model: `pseudovad.evaluation.floor` on each store's test split, on the frames "
            "each method's clips score (official) or on every frame (padded, the protocol before). `auc_floor` is what "
            "`evaluate` writes beside a model's AUC and what the registry's gate requires a model to beat. The "
            "previous-frame-only column is a diagnostic (not a floor): Ped1's test videos 03, 10, 12 and 17 each hold "
            "one exact repeat of the frame before, whose 100 dB PSNR squeezes its video's min-max.", "", md, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
