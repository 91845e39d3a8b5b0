"""`tune`: search λ, p, σ, mask ratio, lr … with Ray Tune, on validation videos, never on the test set.

The labelled test videos are split by `tune.val_videos` into the videos every trial is scored
on (the only number the search sees) and held-out videos the best trial is scored on once
(`test_auc`). Writes best_params.yaml, best_model.pt, results.csv and metrics.json into
`tune.out`, with Ray's experiment (search/) and the trials (trials/) beside them, so an
interrupted search is restored by the same command (`pseudovad.tune.search`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudovad import config as config_mod
from pseudovad.config import Config
from pseudovad.tune.search import run_search


def run(cfg: Config, store: str | Path | None = None, out: str | Path | None = None) -> dict[str, Any]:
    return run_search(cfg, store, out)


def add_arguments(p) -> None:
    p.add_argument("--store", help="frame store (default: data.store)")
    p.add_argument("--out", help="output folder (default: tune.out)")
    p.add_argument("--address", help="Ray cluster address, e.g. ray://head:10001 (default: tune.address; none: local)")


def main(cfg: Config, args) -> int:
    if args.address:
        cfg = config_mod.with_values(cfg, {"tune.address": args.address})
    s = run(cfg, args.store, args.out)
    for e in s["errors"]:
        print(f"tune: trial {e['trial_id']} failed: {e['error']}")
    values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["best_config"].items())
    print(f"tune: {s['trials']} trials ({s['completed']} completed, {s['stopped_early']} stopped early, "
          f"{s['errored']} failed); best {s['best_trial']}: {values}")
    print(f"tune: validation AUC {s['best_val_auc']:.4f} on {', '.join(s['val_videos'])}; held-out test AUC "
          f"{s['test_auc']:.4f} on {', '.join(s['test_videos'])} → {s['best_params']}")
    return 0
