"""`report`: an AUC table, method × dataset, from evaluate metrics files (like the papers' Table 1).

Each metrics.json names its method, pseudo-anomaly variant, seed and dataset, so a set of
evaluations (one per variant, seed and dataset, e.g. the Ped2 benchmark's) becomes one table
without extra bookkeeping: mean ± sample std over the seeds in each cell, the paper's figure
beside it (each method's `paper_auc`, `pseudovad/methods/`). Paths may be globs; glob matches that are not
evaluate metrics (e.g. a train summary) are skipped, a file named explicitly must be one.
"""
from __future__ import annotations

from pathlib import Path

from pseudovad.config import Config
from pseudovad.evaluation.report import collect, format_table, table
from pseudovad.files import write_text

METRICS = ("auc_micro", "auc_macro", "auc_raw", "eer")


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
    print(f"{t['metric']} (%) from {len(t['files'])} metrics file(s); a cell: mean ± sample std (seeds)")
    print(t["text"], end="")
    if args.markdown:
        print(f"→ {args.markdown}")
    return 0
