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

Without labels (`decide_label_free`) there is no floor (it needs labels too); the evidence is
evaluate's label-free check: the candidate and the champion scored on the same held-out normal
footage with the same injected anomalies (`pseudovad.evaluation.labelfree`). The first version
becomes champion; after it, the champion moves unless the candidate

    flags more of the held-out normal frames:  share(candidate) − share(champion) > max_false_alarm_rise
    or finds injected anomalies worse:          auc(champion) − auc(candidate) > max_synthetic_auc_drop

(a None drop tolerance leaves the second check out). A newer model that is as good is promoted:
retraining on recent footage is the point. Numbers of a champion other than the one now in place
are never used.
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


@dataclass(frozen=True)
class LabelFree:
    """A model's label-free evidence on one held-out footage (evaluate's `holdout_flagged_share`,
    `synthetic_auc`, `holdout_false_alarms_per_hour`)."""

    flagged_share: float | None
    synthetic_auc: float | None
    false_alarms_per_hour: float | None = None

    def text(self) -> str:
        pct = "–" if self.flagged_share is None else f"{100 * self.flagged_share:.2f}%"
        per_hour = "" if self.false_alarms_per_hour is None else f", {self.false_alarms_per_hour:.1f} false alarms/h"
        auc = "–" if self.synthetic_auc is None else f"{self.synthetic_auc:.4f}"
        return f"{pct} of held-out normal frames flagged{per_hour}, injected-anomaly AUC {auc}"


def decide_label_free(version: str, candidate: LabelFree, champion_version: str | None,
                      baseline: LabelFree | None, baseline_version: str | None, max_false_alarm_rise: float,
                      max_synthetic_auc_drop: float | None, force: bool = False, user: str | None = None) -> Decision:
    """Whether `champion` moves to `candidate` on label-free evidence (module doc). `baseline`: the
    champion's numbers on the candidate's held-out footage, measured by the same evaluate, and the
    version they belong to (`baseline_version`), which must be the champion now in place."""
    c = candidate
    if champion_version is None:
        return Decision(True, f"no champion yet: v{version} becomes the first champion (label-free: {c.text()})")
    if champion_version == version:
        return Decision(False, f"v{version} is already the champion")
    ok = False
    if baseline is None or baseline_version != champion_version:
        got = f"v{baseline_version}" if baseline_version else "no champion"
        why = (f"champion v{champion_version} was not scored on the same held-out footage (evaluate scored {got} "
               "beside this model): re-run `pseudovad evaluate` so it scores the current champion too")
    elif c.flagged_share is None or baseline.flagged_share is None:
        why = "no share of flagged held-out frames to compare"
    elif c.synthetic_auc is None and max_synthetic_auc_drop is not None:
        why = f"v{version} has no injected-anomaly AUC"
    else:
        rise = c.flagged_share - baseline.flagged_share
        drop = (baseline.synthetic_auc - c.synthetic_auc
                if max_synthetic_auc_drop is not None and baseline.synthetic_auc is not None else None)
        numbers = f"{c.text()}; champion v{champion_version} on the same footage: {baseline.text()}"
        if rise > max_false_alarm_rise + EPS:
            why = (f"raises false alarms: {100 * rise:+.2f} points of held-out normal frames flagged > "
                   f"max_false_alarm_rise {100 * max_false_alarm_rise:g} ({numbers})")
        elif drop is not None and drop > max_synthetic_auc_drop + EPS:
            why = (f"finds injected anomalies worse: AUC {-drop:+.4f} < −max_synthetic_auc_drop "
                   f"{max_synthetic_auc_drop:g} ({numbers})")
        else:
            ok = True
            why = (f"label-free: false alarms {100 * rise:+.2f} points (≤ {100 * max_false_alarm_rise:g})"
                   + (f", injected-anomaly AUC {-drop:+.4f} (≥ −{max_synthetic_auc_drop:g})" if drop is not None else "")
                   + f" against champion v{champion_version} ({numbers})")
    if force:
        return Decision(True, f"forced by {user or 'unknown'} (gate: {why})", forced=True)
    if ok:
        return Decision(True, f"promoted: {why}")
    return Decision(False, f"champion v{champion_version} kept: {why}")
