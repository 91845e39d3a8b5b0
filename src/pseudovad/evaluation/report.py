"""What a metrics file says about its model (method, variant, dataset), the AUC table, and one
evaluation as Markdown (the Kubeflow evaluate step's report).

The table mirrors Table 1 of the LTGPA / LNTRA / MAE-NCT papers: one row per method and
pseudo-anomaly variant, one column per dataset, frame-level micro AUC in percent, mean ± sample
standard deviation over the seeds found, with the paper's figure beside ours where a paper
reports one (each method's `paper_auc`, with its source), and a last row with the training-free floor
the metrics files record (`auc_floor`, `evaluation.floor`): one figure per dataset, or the range
when the files' floors differ (other resolutions, or other methods' edge frames).
"""
from __future__ import annotations

import csv
import glob
import json
import re
import statistics
from pathlib import Path
from typing import Any, Iterable

from pseudovad import results
from pseudovad.errors import DataError
from pseudovad.method_spec import method_of, methods

DATASET_ALIASES = {"ucsdped2": "ped2", "cuhkavenue": "avenue", "shanghai": "shanghaitech", "sht": "shanghaitech"}

REQUIRED = ("auc_micro", "method", "dataset")


def describe_model(config: dict[str, Any]) -> dict[str, str]:
    """{method, pseudo_kind, variant} from a model's config dict (model.pt meta["config"]), as its
    method's spec reads it (`MethodSpec.describe`).

    pseudo_kind is the raw setting, as the train summary records it (LTGPA: pseudo.kind, MAE-NCT:
    pseudo.mode); variant is the table's row label (baseline, gaussian σ=…, learned, skip, patch,
    steal = skip frames with STEAL's `maximize` loss, nct, …).
    """
    return method_of(config).describe(config)


def paper_figures() -> dict[tuple[str, str, str], tuple[float, str]]:
    """The papers' frame-level AUC (%) of the rows this project can train, by (method, row,
    dataset), each with its source: the methods' `paper_auc`."""
    return {(m.name, row, ds): ref for m in methods() for (row, ds), ref in m.paper_auc.items()}


def read_metrics(path: str | Path) -> dict[str, Any]:
    """An evaluation's results: its metrics.json and the provenance.json beside it (`pseudovad.results`)."""
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise DataError(f"{path}: metrics file not found")
    m = results.read(path)
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise DataError(f"{path}: not an evaluate metrics file (missing {', '.join(missing)})")
    return m


def read_roc(path: str | Path) -> tuple[list[float], list[float], list[float]]:
    """(fpr, tpr, thresholds) from an evaluate roc.csv; the first threshold is inf."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [(float(r["fpr"]), float(r["tpr"]), float(r["threshold"])) for r in csv.DictReader(f)]
    except FileNotFoundError:
        raise DataError(f"{path}: ROC file not found") from None
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: not an evaluate roc.csv (columns fpr,tpr,threshold)") from None
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def collect(patterns: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(path, metrics) of every evaluate metrics file the paths or globs name; glob matches that are
    not evaluate metrics are skipped, a file named explicitly must be one."""
    found: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for pat in patterns:
        if glob.has_magic(pat):
            for path in sorted(glob.glob(pat, recursive=True)):
                if path in seen:
                    continue
                try:
                    found.append((path, read_metrics(path)))
                    seen.add(path)
                except DataError:
                    continue
        elif pat not in seen:
            found.append((pat, read_metrics(pat)))
            seen.add(pat)
    if not found:
        raise DataError(f"{' '.join(patterns)}: no evaluate metrics files found")
    return found


SUMMARY_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer", "frames", "frames_left_out", "anomalous_frames", "videos",
                "auc_floor", "auc_floor_margin", "event_recall", "false_alarms_per_hour", "flagged_share",
                "holdout_frames", "holdout_false_alarms_per_hour", "holdout_flagged_share", "synthetic_auc")
FLOOR_ROW = "training-free floor (frame difference / temporal residual)"


def evaluation_markdown(result: dict[str, Any]) -> str:
    """One evaluation (evaluate's metrics) as Markdown: the summary numbers, then the AUC of
    each test video (n/a where a video has only one class of frames)."""
    lines = [f"## evaluate: {result.get('method', '')} on {result.get('dataset', '')}", "",
             "| metric | value |", "|---|---|"]
    for k in SUMMARY_KEYS:
        if k not in result:
            continue
        v = result.get(k)
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", "| video | AUC |", "|---|---|"]
    lines += [f"| {v} | {'n/a' if a is None else f'{a:.4f}'} |" for v, a in result.get("video_auc", {}).items()]
    return "\n".join(lines) + "\n"


def dataset_key(name: str) -> str:
    """A dataset name as the paper table spells it (`UCSD-Ped2` → ped2, `shanghai` → shanghaitech)."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return DATASET_ALIASES.get(key, key)


def paper_auc(method: str, variant: str, dataset: str) -> tuple[float, str] | None:
    """The paper's figure for a row, if a paper reports one: matched on the row's first word, so
    `patch (image folder)` gets LNTRA's patch figure and `gaussian σ=0.5` none."""
    head = variant.split(" ")[0]
    return paper_figures().get((method, head, dataset_key(dataset)))


def _cell(values: list[float]) -> str:
    """mean ± sample std (n) of AUCs in [0, 1], in percent; one value alone; – when none."""
    if not values:
        return "–"
    pct = [100.0 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.2f}"
    return f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f} ({len(pct)})"


def _floor_cell(values: list[float]) -> str:
    """The floor of a dataset in percent: one figure, or low–high when the files' floors differ."""
    if not values:
        return ""
    lo, hi = 100.0 * min(values), 100.0 * max(values)
    return f"{lo:.2f}" if round(lo, 2) == round(hi, 2) else f"{lo:.2f}–{hi:.2f}"


def _row_order(method: str, variant: str) -> tuple:
    """Methods in the registry's order, each one's rows in its paper's (baseline first)."""
    order = {m.name: m.rows for m in methods()}
    names = list(order)
    heads = order.get(method, ())
    head = variant.split(" ")[0]
    return (names.index(method) if method in names else len(names), method,
            heads.index(head) if head in heads else len(heads), variant)


def table(entries: Iterable[tuple[str, dict[str, Any]]], metric: str = "auc_micro") -> dict[str, Any]:
    """Rows (method · variant) × columns (dataset, and the paper's figure where there is one) of
    `metric` in percent: mean ± sample standard deviation over the seeds found.

    One result per seed and cell: a second file with the same row, dataset and seed (or two
    without a recorded seed) goes to a row of its own, labelled with its folder, so a result is
    never averaged with a rerun of itself and never silently dropped.
    """
    groups: dict[tuple[str, str, str], dict[str, dict[Any, float]]] = {}
    datasets: list[str] = []
    floors: dict[str, list[float]] = {}
    for path, m in entries:
        if metric not in m:
            raise DataError(f"{path}: no {metric!r} in metrics file")
        method, variant = str(m["method"]), str(m.get("variant", m.get("pseudo_kind", "?")))
        ds, seed = str(m["dataset"]), m.get("seed")
        if ds not in datasets:
            datasets.append(ds)
        if metric == "auc_micro" and results.finite(m.get("auc_floor")):
            floors.setdefault(ds, []).append(float(m["auc_floor"]))
        label, n = f"{method} · {variant}", 1
        base = f"{label} ({Path(path).parent.name or path})"
        while seed in groups.get((method, variant, label), {}).get(ds, {}):
            label = base if n == 1 else f"{base} #{n}"
            n += 1
        groups.setdefault((method, variant, label), {}).setdefault(ds, {})[seed] = m[metric]

    # the papers report frame-level micro AUC: no paper column beside another metric
    papers = {d for d in datasets for (meth, var, _) in groups
              if metric == "auc_micro" and paper_auc(meth, var, d)}
    columns = [c for d in datasets for c in ([d, f"{d} paper"] if d in papers else [d])]
    rows, sources = [], []
    for method, variant, label in sorted(groups, key=lambda k: (*_row_order(k[0], k[1]), k[2])):
        cells = groups[(method, variant, label)]
        row: dict[str, Any] = {"row": label, "stats": {}}
        for d in datasets:
            found = cells.get(d, {})
            values = [float(v) for v in found.values() if v is not None]
            row[d] = _cell(values) if found else ""
            if found:
                row["stats"][d] = {"mean": statistics.mean(values) if values else None,
                                   "std": statistics.stdev(values) if len(values) > 1 else None,
                                   "n": len(values), "seeds": sorted(found, key=str)}
            if d in papers:
                ref = paper_auc(method, variant, d)
                row[f"{d} paper"] = f"{ref[0]:.2f}" if ref else ""
                if ref and ref[1] not in sources:
                    sources.append(ref[1])
        rows.append(row)
    if floors:
        row = {"row": FLOOR_ROW, "stats": {}}
        for d in datasets:
            found = floors.get(d, [])
            row[d] = _floor_cell(found)
            if found:
                row["stats"][d] = {"min": min(found), "max": max(found), "n": len(found)}
            if d in papers:
                row[f"{d} paper"] = ""
        rows.append(row)
    return {"metric": metric, "datasets": datasets, "columns": columns, "rows": rows, "sources": sources}


def format_table(t: dict[str, Any], markdown: bool = False) -> str:
    """The table as aligned text or Markdown, then the papers its figures come from."""
    columns = t.get("columns", t["datasets"])
    head = ["method · variant", *columns]
    body = [[r["row"], *(r.get(c, "") for c in columns)] for r in t["rows"]]
    notes = [f"paper: {s}" for s in t.get("sources", [])]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines + ([""] + [f"{n}  " for n in notes] if notes else [])) + "\n"
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body), *notes]) + "\n"
