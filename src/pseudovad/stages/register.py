"""`register`: add the evaluated model to the MLflow registry and run the promotion gate.

The model (`<train.out>/model.pt`) becomes a new version of `registry.model_name` (default
`pseudovad-<method>`), tagged with its evaluation metrics (auc_micro, auc_macro, auc_raw, eer) and
the evaluation-set fingerprint, and gets the alias `challenger`. Alias `champion` — what
`score --model models:/NAME@champion` and retraining warm starts use — moves to it only if

    fingerprint(candidate) == fingerprint(champion)           (same test frames and labels)
    and  Δ = auc_micro(candidate) − auc_micro(champion) > 0    (a tie never promotes)
    and  Δ ≥ registry.min_delta                                (compared with 1e-9 tolerance)

The first version becomes champion. Otherwise the champion stays; the reason is printed and
written to the new version's `gate.*` tags. `--force` moves the champion anyway and records who
forced it (tags and decision.json). Versions are never deleted. Registering the same model file
with the same evaluation set again reuses its version instead of adding a duplicate (its gate tags
keep their first decision unless the champion moves to it). Writes `<registry.out>/decision.json`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pseudovad import tracking
from pseudovad.config import Config
from pseudovad.errors import ConfigError, DataError
from pseudovad.files import sha256_file, write_json
from pseudovad.models.model_file import read_model_file

EPS = 1e-9
METRIC_KEYS = ("auc_micro", "auc_macro", "auc_raw", "eer")
CHAMPION, CHALLENGER = "champion", "challenger"


# ----------------------------------------------------------------------------------------------
# The gate: a pure function

@dataclass(frozen=True)
class Entry:
    """A registry version as the gate sees it."""

    version: str
    auc: float | None
    fingerprint: str | None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    forced: bool = False


def beats(candidate_auc: float, champion_auc: float, min_delta: float) -> bool:
    """Δ > 0 and Δ ≥ min_delta, with EPS absorbing float rounding (0.85 − 0.80 = 0.04999…)."""
    delta = candidate_auc - champion_auc
    return delta > EPS and delta >= min_delta - EPS


def decide(candidate: Entry, champion: Entry | None, min_delta: float, force: bool = False,
           user: str | None = None) -> Decision:
    """Whether `champion` moves to `candidate`, and why (one line)."""
    c = candidate
    if champion is None:
        return Decision(True, f"no champion yet: v{c.version} becomes the first champion")
    if champion.version == c.version:
        return Decision(False, f"v{c.version} is already the champion")
    if champion.fingerprint != c.fingerprint:
        ok = False
        why = (f"evaluated on a different test set than champion v{champion.version} "
               f"(fingerprint {str(c.fingerprint)[:12]} vs {str(champion.fingerprint)[:12]}): AUCs are not comparable")
    elif champion.auc is None or not math.isfinite(champion.auc):
        ok = False
        why = f"champion v{champion.version} has no auc_micro tag to compare with"
    elif c.auc is None or not math.isfinite(c.auc):
        ok = False
        why = f"v{c.version} has no auc_micro"
    else:
        ok = beats(c.auc, champion.auc, min_delta)
        delta = c.auc - champion.auc
        if ok:
            why = (f"auc_micro {c.auc:.4f} beats champion v{champion.version} ({champion.auc:.4f}) by "
                   f"{delta:+.4f} ≥ min_delta {min_delta:g}")
        elif delta <= EPS:
            why = (f"auc_micro {c.auc:.4f} does not beat champion v{champion.version} ({champion.auc:.4f}): "
                   f"Δ {delta:+.4f}")
        else:
            why = (f"auc_micro {c.auc:.4f} beats champion v{champion.version} ({champion.auc:.4f}) by only "
                   f"{delta:+.4f} < min_delta {min_delta:g}")
    if force:
        return Decision(True, f"forced by {user or 'unknown'} (gate: {why})", forced=True)
    if ok:
        return Decision(True, f"promoted: {why}")
    return Decision(False, f"champion v{champion.version} kept: {why}")


# ----------------------------------------------------------------------------------------------
# Inputs

def read_metrics(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: metrics file not found (run `pseudovad evaluate` first or pass --metrics)")
    try:
        m = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise DataError(f"{path}: expected a JSON object")
    auc = m.get("auc_micro")
    if not isinstance(auc, (int, float)) or isinstance(auc, bool) or not math.isfinite(auc):
        raise DataError(f"{path}: auc_micro missing or not a number ({auc!r})")
    if not isinstance(m.get("fingerprint"), str) or not m["fingerprint"]:
        raise DataError(f"{path}: fingerprint of the evaluation set missing")
    return m


def _float_tag(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ----------------------------------------------------------------------------------------------
# The MLflow calls around the gate

def _version_entry(mv) -> Entry:
    return Entry(str(mv.version), _float_tag(mv.tags.get("auc_micro")), mv.tags.get("eval_fingerprint"))


def _ensure_registered_model(c, cfg: Config, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
        return
    except MlflowException as e:
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(e, "error_code", "")):
            raise
    try:
        c.create_registered_model(
            name, tags={"method": cfg.model.method},
            description=(f"pseudovad {cfg.model.method} detector. Alias `champion`: the version the promotion "
                         "gate (or a forced `pseudovad register --force`) chose; `challenger`: the latest "
                         "registered. Each version's tags hold its metrics and gate decision."))
    except MlflowException as e:  # registered concurrently
        if "RESOURCE_ALREADY_EXISTS" not in str(getattr(e, "error_code", "")):
            raise


def _find_version(c, name: str, sha: str, fingerprint: str):
    """An existing version of this exact model file evaluated on this exact test set."""
    found = c.search_model_versions(f"name = '{name}' and tags.model_sha256 = '{sha}'")
    same = [mv for mv in found if mv.tags.get("eval_fingerprint") == fingerprint]
    return max(same, key=lambda mv: int(mv.version)) if same else None


def run(cfg: Config, model: str | Path | None = None, metrics: str | Path | None = None,
        out: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Register model + metrics, apply the gate, write decision.json; returns the decision."""
    import mlflow

    model_path = Path(model) if model else Path(cfg.train.out) / "model.pt"
    metrics_path = Path(metrics) if metrics else Path(cfg.evaluate.out) / "metrics.json"
    out = Path(out or cfg.registry.out)
    if not cfg.tracking.enabled:
        raise ConfigError("tracking.enabled: false, but `register` needs the MLflow registry (set it to true)")
    ev = read_metrics(metrics_path)
    meta = read_model_file(model_path)["meta"]
    for key in ("method", "train_fingerprint"):
        if ev.get(key) and meta.get(key) and ev[key] != meta[key]:
            raise DataError(f"{metrics_path}: {key} {ev[key]!r} does not match {model_path} ({meta[key]!r}); "
                            "evaluate this model first")
    sha = sha256_file(model_path)
    name = cfg.registered_model_name
    user = tracking.current_user()
    fp = ev["fingerprint"]

    with tracking.run(cfg, "register", fingerprint=fp, tags={"registered_model": name}) as active:
        uri = tracking.tracking_uri(cfg)
        with tracking.errors(f"registry {name} at {tracking.redact(uri)}", uri):
            c = tracking.client()
            tracking.log_metrics({k: ev.get(k) for k in METRIC_KEYS})
            _ensure_registered_model(c, cfg, name)
            mv = _find_version(c, name, sha, fp)
            reused = mv is not None
            if mv is None:
                source = tracking.find_logged_model(cfg, sha) or tracking.log_model(model_path, meta)["model_uri"]
                tags = {k: repr(float(ev[k])) for k in METRIC_KEYS if _float_tag(ev.get(k)) is not None}
                tags.update({"eval_fingerprint": fp, "model_sha256": sha, "method": str(meta.get("method")),
                             "train_fingerprint": str(meta.get("train_fingerprint")), "dataset": cfg.data.name,
                             "registered_by": user, "register_run_id": active.info.run_id})
                mv = mlflow.register_model(source, name, tags=tags)
            version = str(mv.version)
            aliases = dict(c.get_registered_model(name).aliases or {})
            before = aliases.get(CHAMPION)
            champion = _version_entry(c.get_model_version(name, before)) if before is not None else None
            d = decide(Entry(version, float(ev["auc_micro"]), fp), champion, cfg.registry.min_delta, force, user)
            c.set_registered_model_alias(name, CHALLENGER, version)
            if d.promote:
                c.set_registered_model_alias(name, CHAMPION, version)
            after = version if d.promote else (str(before) if before is not None else None)
            gate = {"gate.decision": "forced" if d.forced else ("promoted" if d.promote else "kept"),
                    "gate.reason": d.reason, "gate.champion_before": str(before) if before is not None else "none",
                    "gate.min_delta": repr(cfg.registry.min_delta),
                    "gate.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            if d.forced:
                gate["gate.forced_by"] = user
            if d.promote or not reused:  # a re-run that changes nothing keeps the version's first decision
                for k, v in gate.items():
                    c.set_model_version_tag(name, version, k, v)
            tracking.set_tags({**gate, "registered_version": version})

    decision = {
        "model_name": name, "version": version, "model_uri": f"models:/{name}/{version}",
        "promoted": d.promote, "forced": d.forced, "forced_by": user if d.forced else None, "reason": d.reason,
        "champion_before": str(before) if before is not None else None, "champion_after": after,
        "auc_micro": float(ev["auc_micro"]), "champion_auc_micro": champion.auc if champion else None,
        "min_delta": cfg.registry.min_delta, "fingerprint": fp, "model_sha256": sha, "reused_version": reused,
        "run_id": active.info.run_id, "tracking_uri": tracking.redact(uri),
    }
    write_json(out / "decision.json", decision)
    return decision


def add_arguments(p) -> None:
    p.add_argument("--model", help="model.pt to register (default: <train.out>/model.pt)")
    p.add_argument("--metrics", help="its evaluation metrics.json (default: <evaluate.out>/metrics.json)")
    p.add_argument("--out", help="folder for decision.json (default: registry.out)")
    p.add_argument("--force", action="store_true",
                   help="move the champion alias to this version even if the gate says no (recorded with your user name)")


def main(cfg: Config, args) -> int:
    d = run(cfg, args.model, args.metrics, args.out, args.force)
    print(f"register: {d['model_name']} v{d['version']} (auc_micro {d['auc_micro']:.4f}) → "
          f"champion v{d['champion_after']}; {d['reason']}")
    return 0
