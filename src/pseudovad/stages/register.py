"""`register`: add the evaluated model to the MLflow registry and run the promotion gate.

The model (`<train.out>/model.pt`) becomes a new version of `registry.model_name` (default
`pseudovad-<method>`), tagged with its evaluation metrics (auc_micro, auc_macro, auc_raw, eer, the
label-free numbers) and the evaluation-set fingerprint, and gets the alias `challenger`. Alias
`champion` — what `score --model models:/NAME@champion` and retraining warm starts use — moves to
it only if the promotion gate (`pseudovad.gate`) says so: with a labelled test split, same test
set and a higher micro AUC by at least `registry.min_delta`; without one (label-free evidence),
no more false alarms on held-out normal footage than the champion scored beside it, beyond
`registry.max_false_alarm_rise`, and injected anomalies found no worse, beyond
`registry.max_synthetic_auc_drop`. The reason and the evidence are printed and written to the
version's `gate.*` tags and description.
`--force` moves the champion anyway and records who forced it. Versions are never deleted;
registering the same model file with the same evaluation set again reuses its version
(`pseudovad.registry.register`). The version's description is the page a reviewer decides on:
the decision, Δ AUC against the champion, the test set, the method and links to the evaluate
run. Metrics of another model file (their `model_sha256` differs) are refused before anything
is registered. Writes `<registry.out>/decision.json`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudovad import registry, tracking
from pseudovad.config import Config
from pseudovad.errors import ConfigError
from pseudovad.files import write_json


def run(cfg: Config, model: str | Path | None = None, metrics: str | Path | None = None,
        out: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Register model + metrics, apply the gate, write decision.json; returns the decision."""
    model_path = Path(model) if model else Path(cfg.train.out) / "model.pt"
    metrics_path = Path(metrics) if metrics else Path(cfg.evaluate.out) / "metrics.json"
    out = Path(out or cfg.registry.out)
    if not cfg.tracking.enabled:
        raise ConfigError("tracking.enabled: false, but `register` needs the MLflow registry (set it to true)")
    candidate = registry.Candidate.read(model_path, metrics_path)
    with tracking.run(cfg, "register", fingerprint=candidate.fingerprint, model_sha256=candidate.sha256,
                      tags={"registered_model": cfg.registered_model_name, "model_sha256": candidate.sha256}):
        decision = registry.register(cfg, candidate, force)
    write_json(out / "decision.json", decision)
    return decision


def add_arguments(p) -> None:
    p.add_argument("--model", help="model.pt to register (default: <train.out>/model.pt)")
    p.add_argument("--metrics", help="its evaluation metrics.json (default: <evaluate.out>/metrics.json)")
    p.add_argument("--out", help="folder for decision.json (default: registry.out)")
    p.add_argument("--force", action="store_true",
                   help="move the champion alias to this version even if the gate says no (recorded with your user name)")


def evidence(d: dict[str, Any]) -> str:
    """The number the gate decided on, for a one-line summary."""
    if d.get("evidence") == "label-free":
        share, auc = d.get("holdout_flagged_share"), d.get("synthetic_auc")
        return (f"label-free: {100 * share:.2f}% held-out frames flagged, injected-anomaly AUC "
                + ("n/a" if auc is None else f"{auc:.4f}"))
    return f"auc_micro {d['auc_micro']:.4f}"


def main(cfg: Config, args) -> int:
    d = run(cfg, args.model, args.metrics, args.out, args.force)
    print(f"register: {d['model_name']} v{d['version']} ({evidence(d)}) → champion v{d['champion_after']}; {d['reason']}")
    return 0
