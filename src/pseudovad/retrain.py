"""One retraining round, planned the same way by `pseudovad retrain` (cron, a DVC host) and by the
Kubeflow retraining pipeline's ingest step.

`plan_round` checks the frame store, ingests what is new, and decides:
- the store must exist and give the gate evidence: a labelled test split (the fixed evaluation
  set the gate compares on) or, without one, held-out normal footage (`train.holdout_fraction` >
  0: the label-free check on the held-out end of every training video); otherwise the round is
  refused before anything is downloaded or trained (DataError: one line, exit 2 on the CLI, a
  failed step on Kubeflow);
- downloads that still fail after their retries do not stop the round: it learns from what
  arrived, and the failures are reported (the CLI exits 1 at the end, the Kubeflow step lists
  them in its report and metadata); the next round fetches the rest, resuming partial files;
- the training split's fingerprint after ingest names the round; if a finished round folder or a
  registered version (champion or not: `registry.trained_on`) says this split was learned
  already, there is nothing to learn;
- a round that learns starts from the champion pinned by version (`models:/NAME/<v>`) when
  `ingest.warm_start` is true and there is a champion, else from `train.init` (default: scratch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pseudovad import config as config_mod
from pseudovad import registry
from pseudovad.config import Config
from pseudovad.data.ingest import counts, describe, ingest_footage
from pseudovad.data.store import FrameStore
from pseudovad.errors import DataError

ROUND_SUMMARY = "retrain.json"       # written into a round's folder when the round finished


@dataclass(frozen=True)
class Round:
    """What one retraining round found and will do."""

    fingerprint: str                       # the training split after ingest; names the round
    learn: bool                            # False: this split was learned already
    reason: str                            # why (one line)
    init: Optional[str]                    # warm start: a pinned champion URI, train.init, or None (scratch)
    champion: Optional[str] = None         # the champion's version before the round
    ingest: dict[str, Any] = field(default_factory=dict)   # ingest's summary (`data.ingest.ingest_footage`)

    @property
    def name(self) -> str:
        return self.fingerprint[:12]

    @property
    def failed(self) -> list[dict[str, str]]:
        """Downloads that failed after retries: {source, error} each."""
        return list(self.ingest.get("failed", []))

    def report(self) -> list[str]:
        """Ingest's report lines, then whether there is anything to learn."""
        return describe(self.ingest) + ([] if self.learn else [f"nothing to learn: {self.reason}"])

    def counts(self) -> dict[str, int]:
        return counts(self.ingest)

    def metadata(self) -> dict[str, Any]:
        """The plan as plain values (a Kubeflow artifact's metadata)."""
        return {"round": self.name, "train_fingerprint": self.fingerprint, "learn": self.learn,
                "reason": self.reason, "init": self.init or "", "champion_before": self.champion or "",
                "failed": self.failed}


def check_store(store: str | Path, cfg: Config) -> FrameStore:
    """The frame store a round trains and evaluates on; refused when a round could not be
    evaluated: test videos of which only some have labels, or no labels and nothing held out."""
    fs = FrameStore(store)              # names the store if it was never pulled or extracted
    tests = fs.videos("testing")
    unlabelled = [e.id for e in tests if not e.labels]
    if unlabelled and len(unlabelled) < len(tests):
        raise DataError(f"{store}: test video(s) {', '.join(unlabelled)} have no frame labels; a round cannot "
                        "be evaluated (extract with data.labels)")
    if (not tests or unlabelled) and cfg.train.holdout_fraction <= 0:
        raise DataError(f"{store}: no labelled test videos to evaluate on, and train.holdout_fraction is 0, so no "
                        "held-out normal footage either (set it, e.g. 0.2, for the label-free check; or run "
                        "`dvc pull` / `pseudovad extract` with labelled test videos)")
    return fs


def already_learned(cfg: Config, fingerprint: str, round_dir: str | Path | None = None) -> tuple[bool, str]:
    """(True, why) when a model was already trained on exactly the training split `fingerprint`.

    A finished round folder (`round_dir`, the CLI's) answers first, without asking the registry;
    then the registry: register tags every version with its model's train fingerprint, so a
    version with this one means the footage brought nothing new (whether the gate promoted it or
    not), while a round after a failed one (nothing registered) still trains.
    """
    if round_dir is not None and (Path(round_dir) / ROUND_SUMMARY).is_file():
        return True, f"round {Path(round_dir).name} already done"
    name = cfg.registered_model_name
    version = registry.trained_on(cfg, fingerprint)
    if version is not None:
        return True, f"{name} v{version} was trained on exactly this training split"
    return False, f"no version of {name} was trained on this training split"


def warm_start_weights(cfg: Config, champion: Any = ...) -> Optional[str]:
    """What a round trains from: with `ingest.warm_start` the champion pinned by version (looked up
    unless given, None: there is none), else `train.init` (None: from scratch)."""
    if cfg.ingest.warm_start:
        if champion is ...:
            champion = registry.champion(cfg)
        if champion is not None:
            return champion.uri
    return cfg.train.init


def plan_round(cfg: Config, store: str | Path | None = None, source: Optional[str] = None,
               rounds: str | Path | None = None, progress: bool = False,
               quarantine: str | Path | None = None) -> Round:
    """Check the store, ingest what is new under `source`, and plan the round (module doc).
    `rounds`: the folder of finished rounds (the CLI's `--out`), consulted before the registry;
    `quarantine`: where rejected footage goes (default: `ingest.quarantine`)."""
    store = Path(store or cfg.data.store)
    check_store(store, cfg)
    got = ingest_footage(cfg, source=source, store=store, progress=progress, quarantine=quarantine)
    fingerprint = FrameStore(store).fingerprint("training")
    champ = registry.champion(cfg)
    done, reason = already_learned(cfg, fingerprint, Path(rounds) / fingerprint[:12] if rounds else None)
    return Round(fingerprint, not done, reason, None if done else warm_start_weights(cfg, champ),
                 champ.version if champ else None, got)


def round_config(cfg: Config, round_dir: Path, init: Optional[str]) -> Config:
    """The same params with the round's output folders and its warm start."""
    return config_mod.with_values(cfg, {"train.out": str(round_dir / "train"), "train.init": init,
                                        "evaluate.out": str(round_dir / "evaluate"),
                                        "registry.out": str(round_dir / "register")})
