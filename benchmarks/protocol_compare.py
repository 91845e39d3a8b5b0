"""Old against new evaluation protocol on the same runs: micro AUC (%) with every frame counted
(padded: an edge frame carries the nearest scored frame's score, this project before #24) and
with only the frames a clip scores (official: LNTRA's / STEAL's / MAE-NCT's evaluation), from
each run's own scores.csv, nothing re-scored.

A run is an evaluate output folder (scores.csv + provenance.json), or a folder holding one as
`evaluate/` (ped2_seeds.py's <row>-seed<s>). The counted frames come from scores.csv's `counted`
column when it has one; an older scores.csv has none, and they follow from the clip geometry of
the model the run scored (provenance.json names its model.pt). Per-video min-max is unchanged by
the choice (an edge frame repeats a counted frame's PSNR), so both numbers use the same scores.
With the floor columns (an evaluation since #24), the floor is compared the same way.

    .venv/bin/python benchmarks/protocol_compare.py 'runs/ped2-seeds/ltgpa-1k/*' --name protocol-ped2-ltgpa
"""
from __future__ import annotations

import argparse
import csv
import glob
import re
import statistics
import sys
from pathlib import Path

import _ped2  # benchmarks/ on sys.path; src/ too


def evaluation_folder(path: Path) -> Path | None:
    for p in (path, path / "evaluate"):
        if (p / "scores.csv").is_file():
            return p
    return None


def geometry_of(folder: Path):
    """The clip geometry of the model the evaluation in `folder` scored (its model.pt's meta)."""
    from pseudovad import results
    from pseudovad.geometry import ClipGeometry
    from pseudovad.models.model_file import read_model_file

    model = Path(results.read(folder)["model"])
    if not model.is_file():
        raise SystemExit(f"{folder}: scores.csv has no `counted` column and the model it scored, {model}, "
                         "is not here to give the clip geometry")
    return ClipGeometry.from_meta(read_model_file(model)["meta"])


def compare(folder: Path) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    rows = list(csv.DictReader(open(folder / "scores.csv")))
    if "counted" not in rows[0]:
        geom = geometry_of(folder)
        n = {}
        for r in rows:
            n[r["video"]] = n.get(r["video"], 0) + 1
        for r in rows:
            sl = geom.scored_frames(n[r["video"]])
            r["counted"] = "1" if sl.start <= int(r["frame"]) < sl.stop else "0"
    out = {"frames_padded": len(rows), "frames_official": sum(r["counted"] == "1" for r in rows)}
    columns = ["score"] + [c for c in ("floor_framediff", "floor_residual") if c in rows[0]]
    for c in columns:
        for protocol, sel in (("padded", rows), ("official", [r for r in rows if r["counted"] == "1"])):
            out[f"{c}_{protocol}"] = 100 * roc_auc_score([int(r["label"]) for r in sel], [float(r[c]) for r in sel])
    return out


def fmt(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.2f}" + (f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="evaluate folders (or folders holding evaluate/), globs allowed")
    ap.add_argument("--name", default="", help="write benchmarks/results/<name>.json and append to RESULTS.md")
    a = _ped2.parse(ap)

    folders = []
    for pat in a.runs:
        for p in sorted(glob.glob(pat)) or [pat]:
            f = evaluation_folder(Path(p))
            if f is not None and f not in folders:
                folders.append(f)
    if not folders:
        ap.error(f"no scores.csv under {' '.join(a.runs)}")
    per_run = {str(f): compare(f) for f in folders}
    groups: dict[str, list[dict]] = {}
    for f, r in per_run.items():
        run = Path(f).parent.name if Path(f).name == "evaluate" else Path(f).name
        groups.setdefault(re.sub(r"-seed\d+$", "", run), []).append(r)
    floor = all("floor_framediff_padded" in r for r in per_run.values())
    head = ["row", "runs", "frames padded → official", "padded micro AUC %", "official micro AUC %", "Δ (official − padded)"]
    if floor:
        head += ["floor padded %", "floor official %"]
    table = []
    for g, rs in groups.items():
        row = [g, str(len(rs)), f"{rs[0]['frames_padded']} → {rs[0]['frames_official']}",
               fmt([r["score_padded"] for r in rs]), fmt([r["score_official"] for r in rs]),
               fmt([r["score_official"] - r["score_padded"] for r in rs])]
        if floor:
            best = lambda r, p: max(r[f"floor_framediff_{p}"], r[f"floor_residual_{p}"])  # noqa: E731
            row += [fmt([best(r, "padded") for r in rs]), fmt([best(r, "official") for r in rs])]
        table.append(row)
    md = _ped2.md_table(head, table, left=2)
    print(md)
    if a.name:
        _ped2.record(a.name, {"name": a.name, "commit": _ped2.git_rev(), "runs": per_run}, [
            "", f"## Old against new evaluation protocol (`benchmarks/protocol_compare.py --name {a.name}`)", "",
            f"{_ped2.environment()}. The same runs' scores.csv, nothing re-scored: padded = every frame counted (an edge "
            "frame carries the nearest scored frame's score; the protocol before), official = only the frames a clip "
            "scores (the papers' released evaluation, `evaluate`'s default now). Mean ± std over the runs of a row.",
            "", md, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
