"""Extract UCSD Ped2 (../shared/data/ped2) and check it against its PROVENANCE.md counts.

16 training videos (2,550 frames), 12 test videos (2,010 frames), labels aligned to every test
frame (1,648 anomalous), per-video counts and GT intervals as listed in PROVENANCE.md. Prints a
table; exits non-zero on any mismatch.

    .venv/bin/python benchmarks/check_ped2.py [--root ../shared/data/ped2] [--store data/ped2-64x96]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pseudovad import config as config_mod
from pseudovad.data.store import FrameStore
from pseudovad.stages import extract

TRAIN = [120, 150, 150, 180, 180, 150, 150, 120, 180, 180, 180, 180, 180, 150, 150, 150]
TEST = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
GT = [(61, 180), (95, 180), (1, 146), (31, 180), (1, 129), (1, 159), (46, 180), (1, 180), (1, 120), (1, 150),
      (1, 180), (88, 180)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "../shared/data/ped2"))
    ap.add_argument("--store", default="data/ped2-64x96")
    ap.add_argument("--size", default="64,96")
    a = ap.parse_args()
    h, w = (int(v) for v in a.size.split(","))
    cfg = config_mod.from_dict({"data": {"name": "ped2", "root": a.root, "store": a.store, "size": [h, w]}})
    t0 = time.perf_counter()
    s = extract.run(cfg, progress=False)
    took = time.perf_counter() - t0
    store = FrameStore(a.store)
    tr = [e.frames for e in store.videos("training")]
    te = store.videos("testing")
    labels = [store.labels(e) for e in te]
    intervals = []
    for lab in labels:
        idx = np.flatnonzero(lab)
        intervals.append((int(idx[0]) + 1, int(idx[-1]) + 1) if idx.size else None)
    checks = [
        ("training videos", len(tr), 16), ("training frames", sum(tr), 2550),
        ("per-video training counts", tr == TRAIN, True),
        ("test videos", len(te), 12), ("test frames", sum(e.frames for e in te), 2010),
        ("per-video test counts", [e.frames for e in te] == TEST, True),
        ("labelled test frames", sum(len(x) for x in labels), 2010),
        ("anomalous test frames", int(sum(x.sum() for x in labels)), 1648),
        ("GT intervals (1-based)", intervals == GT, True),
    ]
    print(f"Ped2 extraction to {a.store} at {h}x{w}: {took:.1f}s ({s['reused']} videos reused)\n")
    print("| check | got | expected | ok |\n|---|---|---|---|")
    bad = 0
    for name, got, exp in checks:
        ok = got == exp
        bad += not ok
        print(f"| {name} | {got} | {exp} | {'yes' if ok else 'NO'} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
