"""`report`: an AUC table, method × dataset, from evaluate metrics files (like the papers' Table 1).

Each metrics.json names its method, pseudo-anomaly variant and dataset, so a set of evaluations
(one per variant and dataset, e.g. the Ped2 benchmark's) becomes one table without extra
bookkeeping. Paths may be globs; glob matches that are not evaluate metrics (e.g. a train
summary) are skipped, a file named explicitly must be one.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from pseudovad.config import Config
from pseudovad.errors import DataError
from pseudovad.evaluation.report import format_table, read_metrics, table
from pseudovad.files import write_text

METRICS = ("auc_micro", "auc_macro", "auc_raw", "eer")


def collect(patterns: list[str]) -> list[tuple[str, dict[str, Any]]]:
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


def run(cfg: Config | None, paths: list[str], markdown: str | Path | None = None, metric: str = "auc_micro") -> dict:
    entries = collect(paths)
    t = table(entries, metric)
    t["text"] = format_table(t)
    t["markdown"] = format_table(t, markdown=True)
    t["files"] = [p for p, _ in entries]
    if markdown:
        write_text(markdown, t["markdown"])
    return t


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="*", default=["runs/**/metrics.json"],
                   help="evaluate metrics.json files or globs (default: runs/**/metrics.json)")
    p.add_argument("--metric", choices=METRICS, default="auc_micro", help="value in the cells, in percent")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")


def main(cfg: Config, args) -> int:
    t = run(cfg, args.paths, args.markdown, args.metric)
    print(f"{t['metric']} (%) from {len(t['files'])} metrics file(s)")
    print(t["text"], end="")
    if args.markdown:
        print(f"→ {args.markdown}")
    return 0
