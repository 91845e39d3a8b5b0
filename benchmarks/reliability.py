"""Reliability probes (issue #15): bad inputs, kills and concurrency, and whether each is handled cleanly.

    python benchmarks/reliability.py [--tries 60] [--seed 15] [--record]

1. Runs the probes of tests/test_reliability.py (one per defect of the issue), tests/test_files.py
   (the commit mechanism, SIGKILLed at each of its steps) and tests/test_faults.py through pytest:
   one row per probe, "handled cleanly" = the test passed.
2. Runs longer kill -9 loops on evaluate and on train than CI does (tests/faults.py): each try a
   random instant or a step of the outputs' commit; after each, is the folder the previous run's
   outputs or the new run's (complete), or a mix?
Prints both tables; writes benchmarks/results/reliability.json; with --record appends the
tables to benchmarks/RESULTS.md. Needs no dataset (tiny synthetic footage in a tmp folder).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROBE_FILES = ["tests/test_reliability.py", "tests/test_files.py", "tests/test_faults.py"]


class Collect:
    """pytest plugin: the outcome of each test's call."""

    def __init__(self):
        self.rows: list[dict] = []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.rows.append({"probe": report.nodeid.split("::", 1)[1], "file": report.nodeid.split("::")[0],
                              "handled": report.outcome == "passed", "seconds": round(report.duration, 1)})


def probes() -> list[dict]:
    import pytest

    c = Collect()
    pytest.main(["-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), *[str(ROOT / f) for f in PROBE_FILES]],
                plugins=[c])
    return c.rows


def kill_loops(tries: int, seed: int) -> list[dict]:
    os.environ.setdefault("PSEUDOVAD_NO_PROGRESS", "1")
    from tests import faults

    rows = []
    for loop in (faults.evaluate_loop, faults.train_loop):
        with tempfile.TemporaryDirectory(prefix="pv-reliability-") as tmp:
            report, state_of, targets, _ = loop(Path(tmp), tries, seed)
            last = state_of(True)
            name, tree, kwargs = next(t for t in targets if t[0] != last)
            ok = faults.run_child(Path(tmp), report.stage, tree, kwargs, "none") == 0 and state_of(True) == name
            rows.append({**report.row(), "next_run_ok": ok,
                         "kills": [{"kill": t.kill, "exit": t.exitcode, "before": t.before, "raw": t.raw[:60],
                                    "after": t.state[:60]} for t in report.tries]})
    return rows


def table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tries", type=int, default=60, help="kills per stage (default 60)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args()
    load = os.getloadavg()
    t0 = time.perf_counter()
    p_rows = probes()
    k_rows = kill_loops(args.tries, args.seed)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    handled = sum(r["handled"] for r in p_rows)
    t1 = table(p_rows, ["probe", "file", "handled", "seconds"])
    t2 = table(k_rows, ["stage", "tries", "killed", "finished", "commit_steps", "random_delays", "old_kept",
                        "new_complete", "mid_rename_replayed", "mixed", "next_run_ok"])
    head = (f"`python benchmarks/reliability.py --tries {args.tries} --seed {args.seed}` at {commit}, "
            f"{platform.node()}, {os.cpu_count()} CPUs, load {load[0]:.1f} at start, "
            f"{time.perf_counter() - t0:.0f} s. Probes: {handled}/{len(p_rows)} handled cleanly.")
    print(head, t1, "", t2, sep="\n")
    out = ROOT / "benchmarks" / "results" / "reliability.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": sys.argv, "commit": commit, "load": load, "probes": p_rows,
                               "kill_loops": k_rows}, indent=2) + "\n")
    if args.record:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(f"\n### Reliability run\n\n{head}\n\n{t1}\n\n{t2}\n")
    return 0 if handled == len(p_rows) and all(r["mixed"] == 0 and r["next_run_ok"] for r in k_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
