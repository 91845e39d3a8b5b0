"""The promotion gate: whether the registry's `champion` alias moves to a new candidate, and why.

A pure function of the candidate's and the champion's evaluations, so it is tested without a
registry (`pseudovad.registry` makes the MLflow calls around it). The champion moves only if

    fingerprint(candidate) == fingerprint(champion)           (same test frames and labels: the
                                                               DVC version of the labelled test split)
    and  Δ = auc_micro(candidate) − auc_micro(champion) > 0    (a tie never promotes)
    and  Δ ≥ registry.min_delta                                (compared with 1e-9 tolerance)

The first version becomes champion. `force` moves it anyway, and the reason says who forced it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

EPS = 1e-9


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
        if str(c.fingerprint).endswith(".dir") != str(champion.fingerprint).endswith(".dir"):
            why += (" (one fingerprint predates DVC evaluation versions: re-evaluate and register the champion's "
                    "model again, or promote with --force)")
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
