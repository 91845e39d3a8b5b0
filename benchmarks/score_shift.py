"""Does `score`'s domain-shift check tell another scene from anomalies in the training scene?

    .venv/bin/python benchmarks/score_shift.py --model NAME=model.pt ... --store NAME=store_dir ... [--no-append]

For every (model, store) pair: each labelled test video of the store is scored as `score` scores
it (`Detector`, the model's calibration), and the table says how far its median PSNR sits below
the calibration's minimum and what share of its frames the check counts as outside, with the
margin = q95 − q05 of the calibration alone and with the 3 dB floor (`score.shift_margin_db`).
The rule warns when that share is ≥ 0.5. Same scene (model and store of one dataset) must not
warn, anomalies included; another scene must. Appends to RESULTS.md, writes results/score_shift.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time

import _ped2  # noqa: F401  (puts src/ on sys.path)
from _ped2 import REPO


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--store", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--floor-db", type=float, default=3.0)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args()
    import numpy as np

    from pseudovad.data.store import FrameStore
    from pseudovad.evaluation.streaming import Detector

    models = dict(x.split("=", 1) for x in a.model)
    stores = dict(x.split("=", 1) for x in a.store)
    rows = []
    for mname, mpath in models.items():
        det = Detector.load(mpath, "cpu", 16)
        c = det.meta["calibration"]
        spread = c["psnr_q95"] - c["psnr_q05"]
        for sname, spath in stores.items():
            st = FrameStore(spath)
            for e in st.videos("testing"):
                p = det.score_video(st.array(e), e.id)
                rows.append({"model": mname, "footage": sname, "same_scene": mname == sname, "video": e.id,
                             "calib_min": round(c["psnr_min"], 2), "calib_n": c["n"], "spread_db": round(spread, 2),
                             "median_below_min_db": round(c["psnr_min"] - float(np.median(p)), 2),
                             "share_spread_only": round(float(np.mean(p < c["psnr_min"] - spread)), 3),
                             "share_with_floor": round(float(np.mean(p < c["psnr_min"] - max(spread, a.floor_db))), 3)})
                print(rows[-1], flush=True)
    table = ["| model (trained on) | footage | test videos | calibration n, q95−q05 dB | median below calib. min, dB (range) "
             "| videos warned: spread-only margin | videos warned: margin ≥ 3 dB |", "|---|---|---:|---|---|---:|---:|"]
    for mname in models:
        for sname in stores:
            g = [r for r in rows if r["model"] == mname and r["footage"] == sname]
            d = [r["median_below_min_db"] for r in g]
            table.append(f"| {mname} | {sname}{' (same scene)' if mname == sname else ''} | {len(g)} | "
                         f"{g[0]['calib_n']}, {g[0]['spread_db']:.2f} | {np.median(d):.2f} ({min(d):.2f} … {max(d):.2f}) | "
                         f"{sum(r['share_spread_only'] >= 0.5 for r in g)}/{len(g)} | "
                         f"{sum(r['share_with_floor'] >= 0.5 for r in g)}/{len(g)} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    env = f"{time.strftime('%Y-%m-%d')}, commit {commit}, models: " + ", ".join(f"{k} = `{v}`" for k, v in models.items())
    text = "\n".join([env, "", *table])
    print(text)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "score_shift.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    if not a.no_append:
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as f:
            f.write("\n## `score`'s domain-shift check: another scene vs anomalies of the training scene "
                    "(`benchmarks/score_shift.py`)\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
