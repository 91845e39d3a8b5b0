"""The promotion gate: whether the registry's `champion` alias moves to a new candidate, and why.

A pure function of the candidate's and the champion's evaluations, so it is tested without a
registry (`pseudovad.registry` makes the MLflow calls around it). The champion moves only if

    fingerprint(candidate) == fingerprint(champion)           (same test frames and labels: the
                                                               DVC version of the labelled test split)
    and  Δ = auc_micro(candidate) − auc_micro(champion) > 0    (a tie never promotes)
    and  Δ ≥ registry.min_delta                                (compared with 1e-9 tolerance)

and, whatever the champion (also for the first version), when the evaluation has labels and so
a training-free floor (`auc_floor`, `evaluation.floor`: frame difference / temporal residual on
the same frames):

    auc_micro(candidate) − auc_floor(candidate) > 0            (a model that does not beat a score
                                                               that learns nothing is refused)

The first version becomes champion if it beats its floor. `force` moves it anyway, and the
reason says who forced it.
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
    floor: float | None = None     # auc_floor of its evaluation; None: no labels, or evaluated before floors


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    forced: bool = False


def beats(candidate_auc: float, champion_auc: float, min_delta: float) -> bool:
    """Δ > 0 and Δ ≥ min_delta, with EPS absorbing float rounding (0.85 − 0.80 = 0.04999…)."""
    delta = candidate_auc - champion_auc
    return delta > EPS and delta >= min_delta - EPS


def below_floor(c: Entry) -> str | None:
    """Why `c` is refused whatever the champion (its AUC does not beat its training-free floor), or None."""
    if c.floor is None or not math.isfinite(c.floor) or c.auc is None or not math.isfinite(c.auc):
        return None
    delta = c.auc - c.floor
    if delta > EPS:
        return None
    return (f"auc_micro {c.auc:.4f} does not beat its training-free floor {c.floor:.4f} (Δ {delta:+.4f}; frame "
            "difference or temporal residual on the same frames, no model at all)")


def decide(candidate: Entry, champion: Entry | None, min_delta: float, force: bool = False,
           user: str | None = None) -> Decision:
    """Whether `champion` moves to `candidate`, and why (one line)."""
    c = candidate
    if champion is not None and champion.version == c.version:
        return Decision(False, f"v{c.version} is already the champion")
    floor_why = below_floor(c)
    if floor_why is not None:
        ok, why = False, floor_why
    elif champion is None:
        return Decision(True, f"no champion yet: v{c.version} becomes the first champion")
    elif champion.fingerprint != c.fingerprint:
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
    if champion is None:
        return Decision(False, f"v{c.version} not promoted (no champion yet): {why}")
    return Decision(False, f"champion v{champion.version} kept: {why}")
