"""What a metrics file says about its model (method, variant, dataset), the AUC table, and one
evaluation as Markdown (the Kubeflow evaluate step's report).

The table mirrors Table 1 of the LTGPA / MAE-NCT papers: one row per method and pseudo-anomaly
variant, one column per dataset, frame-level micro AUC in percent.
"""
from __future__ import annotations

import csv
import glob
import json
from pathlib import Path
from typing import Any, Iterable

from pseudovad.errors import DataError

REQUIRED = ("auc_micro", "method", "dataset")


def describe_model(config: dict[str, Any]) -> dict[str, str]:
    """{method, pseudo_kind, variant} from a model's config dict (model.pt meta["config"]).

    pseudo_kind is the raw setting, as the train summary records it (LTGPA: pseudo.kind, MAE-NCT:
    pseudo.mode); variant is the table's row label (baseline, gaussian σ=…, learned, nct).
    """
    model = config.get("model", {})
    pseudo = config.get("pseudo", {})
    method = model.get("method", "ltgpa")
    if method == "ltgpa":
        kind = pseudo.get("kind", "learned")
        variant = {"none": "baseline", "learned": "learned"}.get(kind, kind)
        if kind == "gaussian":
            variant = f"gaussian σ={pseudo.get('sigma', 0.1):g}"
        if pseudo.get("p", 0.5) == 0:        # pseudo anomalies never drawn: the baseline
            variant = "baseline"
        if model.get("ltgpa", {}).get("variant") == "image":
            method = "ltgpa-image"
        return {"method": method, "pseudo_kind": kind, "variant": variant}
    mode = pseudo.get("mode", "nct")       # MAE-NCT's pseudo anomalies are always masked patches
    variant = {"none": "baseline", "nct": "nct"}.get(mode, f"{mode} p={pseudo.get('p', 0.5):g}")
    return {"method": method, "pseudo_kind": mode, "variant": variant}


def read_metrics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: metrics file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg})") from None
    missing = [k for k in REQUIRED if not isinstance(m, dict) or k not in m]
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


SUMMARY_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer", "frames", "anomalous_frames", "videos")


def evaluation_markdown(result: dict[str, Any]) -> str:
    """One evaluation (evaluate's metrics) as Markdown: the summary numbers, then the AUC of
    each test video (n/a where a video has only one class of frames)."""
    lines = [f"## evaluate: {result.get('method', '')} on {result.get('dataset', '')}", "",
             "| metric | value |", "|---|---|"]
    for k in SUMMARY_KEYS:
        v = result.get(k)
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", "| video | AUC |", "|---|---|"]
    lines += [f"| {v} | {'n/a' if a is None else f'{a:.4f}'} |" for v, a in result.get("video_auc", {}).items()]
    return "\n".join(lines) + "\n"


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100.0 * float(v):.2f}"


def table(entries: Iterable[tuple[str, dict[str, Any]]], metric: str = "auc_micro") -> dict[str, Any]:
    """Rows (method · variant) × columns (dataset) of `metric` in percent.

    Two files with the same row and dataset get separate rows, labelled with their folder, so no
    result is silently dropped.
    """
    cells: dict[str, dict[str, str]] = {}
    datasets: list[str] = []
    for path, m in entries:
        if metric not in m:
            raise DataError(f"{path}: no {metric!r} in metrics file")
        row = f"{m['method']} · {m.get('variant', m.get('pseudo_kind', '?'))}"
        ds = str(m["dataset"])
        if ds not in datasets:
            datasets.append(ds)
        if ds in cells.get(row, {}):
            base, n = f"{row} ({Path(path).parent.name or path})", 1
            row = base
            while ds in cells.get(row, {}):
                n += 1
                row = f"{base} #{n}"
        cells.setdefault(row, {})[ds] = _pct(m[metric])
    return {"metric": metric, "datasets": datasets,
            "rows": [{"row": r, **{d: c.get(d, "") for d in datasets}} for r, c in cells.items()]}


def format_table(t: dict[str, Any], markdown: bool = False) -> str:
    head = ["method · variant", *t["datasets"]]
    body = [[r["row"], *(r[d] for d in t["datasets"])] for r in t["rows"]]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(t["datasets"])) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)]) + "\n"
