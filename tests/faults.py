"""Fault injection: run a stage in a child process, SIGKILL it at a chosen or random instant, and
check what it left. Used by tests/test_faults.py (CI-sized) and benchmarks/reliability.py (longer).

Children are forked from a multiprocessing forkserver that imported pseudovad (and torch) once,
so a try costs the stage's work, not an interpreter start-up of several seconds. A kill is either
a random delay into the run or a named step of the outputs' commit (`PSEUDOVAD_CRASH_AT`, see
`pseudovad.files._crash_point`), so the few instants a random delay would almost never hit (the
renames) are tried every time.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PRELOAD = ["torch._dynamo", "matplotlib.pyplot", "pseudovad.stages.evaluate", "pseudovad.stages.train",
           "pseudovad.training.fit", "tests.faults"]   # torch._dynamo: imported by the first optimiser, ~2 s
_ctx = None


def context():
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


def _child(cwd: str, env: dict[str, str], stage: str, tree: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """In the forked child: the stage's `run` on a config tree, as the CLI would call it."""
    os.chdir(cwd)
    os.environ.update(env)
    import importlib

    import torch

    from pseudovad import config as config_mod

    torch.set_num_threads(1)
    mod = importlib.import_module(f"pseudovad.stages.{stage}")
    mod.run(config_mod.from_dict(tree), **kwargs)


@dataclass
class Try:
    kill: str            # "commit:<step>", "delay:<seconds>" or "none"
    exitcode: int        # -9: killed; 0: finished before the kill
    before: str          # what the folder held before this try (a target's name)
    raw: str             # what it held right after the kill, before any reader settled it
    state: str           # what a reader sees (after `files.settle`): a target's name, or "MIX …"


@dataclass
class Report:
    stage: str
    tries: list[Try] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(t.exitcode == -signal.SIGKILL for t in self.tries)

    @property
    def clean(self) -> int:
        return sum(not t.state.startswith("MIX") for t in self.tries)

    @property
    def replayed(self) -> int:
        """Tries killed mid-rename: mixed on disk until the journal was replayed."""
        return sum(t.raw.startswith("MIX") for t in self.tries)

    def row(self) -> dict[str, Any]:
        kinds = {"commit": 0, "delay": 0}
        for t in self.tries:
            kinds[t.kill.split(":")[0]] = kinds.get(t.kill.split(":")[0], 0) + 1
        return {"stage": self.stage, "tries": len(self.tries), "killed": self.killed,
                "finished": sum(t.exitcode == 0 for t in self.tries), "commit_steps": kinds["commit"],
                "random_delays": kinds["delay"], "old_kept": sum(t.state == t.before for t in self.tries),
                "new_complete": sum(t.state != t.before and not t.state.startswith("MIX") for t in self.tries),
                "mid_rename_replayed": self.replayed, "mixed": len(self.tries) - self.clean}


def run_child(cwd: Path, stage: str, tree: dict[str, Any], kwargs: dict[str, Any], kill: str,
              timeout: float = 300.0) -> int:
    """Run `stage` in a forked child; `kill` = "commit:<n>" (the commit step), "delay:<s>" or
    "none". Returns the exit code (-9 when killed)."""
    env = {"PSEUDOVAD_CRASH_AT": kill if kill.startswith("commit:") else "", "PSEUDOVAD_NO_PROGRESS": "1",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    p = context().Process(target=_child, args=(str(cwd), env, stage, tree, kwargs))
    p.start()
    if kill.startswith("delay:"):
        p.join(float(kill.split(":")[1]))
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
    p.join(timeout)
    if p.exitcode is None:
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        raise RuntimeError(f"{stage} child did not finish in {timeout}s")
    return p.exitcode


def digest(folder: Path, names: list[str], ignore: Callable[[str, bytes], bytes] | None = None) -> dict[str, str]:
    """sha256 of each output (a folder: of its files, by relative path); a missing one: "missing"."""
    out = {}
    for name in names:
        path = folder / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if not path.exists():
            out[name] = "missing"
            continue
        for f in files:
            data = f.read_bytes()
            rel = str(f.relative_to(folder))
            out[rel] = hashlib.sha256(ignore(rel, data) if ignore else data).hexdigest()
    return out


def kill_loop(cwd: Path, stage: str, targets: list[tuple[str, dict, dict]], state_of: Callable[[bool], str],
              commit_steps: int, tries: int, seed: int, full_run_s: float) -> Report:
    """Runs of `stage` towards the other target than the folder holds now, SIGKILLed once at
    each of the `commit_steps` steps of the commit and at random delays in [0, 1.3 × full_run_s]
    for the rest of `tries`; after each, `state_of(settle)` names what the folder holds (without
    and with a reader's `files.settle` first)."""
    rng = random.Random(seed)
    report = Report(stage)
    kills = [f"commit:{k}" for k in range(commit_steps)]
    kills += [f"delay:{rng.uniform(0.0, 1.3 * full_run_s):.3f}" for _ in range(max(0, tries - len(kills)))]
    rng.shuffle(kills)
    for kill in kills:
        now = state_of(True)
        name, tree, kwargs = next(t for t in targets if t[0] != now)
        code = run_child(cwd, stage, tree, kwargs, kill)
        raw = state_of(False)
        report.tries.append(Try(kill, code, now, raw, state_of(True)))
    return report


def timed_run(cwd: Path, stage: str, tree: dict, kwargs: dict) -> float:
    t0 = time.perf_counter()
    code = run_child(cwd, stage, tree, kwargs, "none")
    if code != 0:
        raise RuntimeError(f"{stage} failed without a kill (exit {code})")
    return time.perf_counter() - t0


def metrics_model(folder: Path) -> str | None:
    """The model the folder's results are about (provenance.json's `model`), or None."""
    from pseudovad import results
    from pseudovad.errors import DataError

    try:
        return results.read(folder).get("model")
    except (OSError, ValueError, DataError):
        return None


# ----------------------------------------------------------------------------------------------
# The two loops of tests/test_faults.py and benchmarks/reliability.py

SMALL_MODEL = {"ltgpa": {"width": [4, 4, 4, 4], "g_width": [4, 4, 4]}}
EVALUATE_OUTPUTS = ["metrics.json", "plots", "provenance.json", "roc.csv", "scores.csv"]
# staged, journal written, metrics.json, old plots/ aside, plots/, provenance.json, roc.csv, scores.csv
EVALUATE_COMMIT_STEPS = 8
TRAIN_OUTPUTS = ["metrics.json", "model.pt", "provenance.json"]
TRAIN_COMMIT_STEPS = 5      # staged, journal written, metrics.json, model.pt, provenance.json


def identify(out: Path, refs: dict[str, dict[str, str]], names: list[str], ignore=None) -> Callable[[bool], str]:
    """state_of(settle): the name of the reference whose outputs `out` holds, or "MIX …" naming
    which reference each file matches; `settle` first does what every reader does."""
    from pseudovad import files

    def state_of(settle: bool) -> str:
        if settle:
            files.settle(out)
        now = digest(out, names, ignore)
        for name, ref in refs.items():
            if now == ref:
                return name
        per_file = {f: [n for n, r in refs.items() if r.get(f) == h] for f, h in now.items()}
        return f"MIX {per_file}"
    return state_of


def tiny_store(tmp: Path, **sections):
    from pseudovad.stages import extract, synthesize
    from tests.conftest import tiny_cfg

    cfg = tiny_cfg(tmp, model=SMALL_MODEL, **sections)
    synthesize.run(cfg)
    extract.run(cfg, progress=False)
    return cfg


def evaluate_loop(tmp: Path, tries: int, seed: int) -> tuple[Report, Callable[[bool], str], list, Path]:
    """evaluate of two precomputed (untrained) models A and B into one folder, alternately, killed
    (`kill_loop`); returns the report, `state_of`, the targets and the folder."""
    import torch

    from pseudovad.models import build_model
    from pseudovad.models.model_file import model_meta, save_model

    out = tmp / "eval"
    # no bootstrap intervals (1000 resamples × each AUC), no top-k frames: the loop is about the
    # commit, whose steps (plots/ included) are the same without them
    cfg = tiny_store(tmp, evaluate={"out": str(out), "top_k": 0, "bootstrap": 0})
    targets = []
    for name, s in (("A", 0), ("B", 1)):
        torch.manual_seed(s)
        path = tmp / f"model-{name}.pt"
        save_model(path, build_model(cfg), model_meta(cfg))
        targets.append((name, cfg.to_dict(), {"model": str(path)}))
    refs = {}
    for name, tree, kwargs in targets:            # reference outputs, made by the same kind of child
        full_s = timed_run(tmp, "evaluate", tree, {**kwargs, "out": str(tmp / f"ref-{name}")})
        refs[name] = digest(tmp / f"ref-{name}", EVALUATE_OUTPUTS)
    assert refs["A"] != refs["B"]
    timed_run(tmp, "evaluate", targets[0][1], targets[0][2])          # the folder starts as A's
    state_of = identify(out, refs, EVALUATE_OUTPUTS)
    report = kill_loop(tmp, "evaluate", targets, state_of, EVALUATE_COMMIT_STEPS, tries, seed, full_s)
    return report, state_of, targets, out


def train_summary(rel: str, data: bytes) -> bytes:
    """train's metrics.json without its timings (they differ between runs of the same training)."""
    if rel != "metrics.json":
        return data
    m = json.loads(data)
    for k in ("seconds", "clips_per_s"):
        m.pop(k, None)
    return json.dumps(m, sort_keys=True).encode()


def train_loop(tmp: Path, tries: int, seed: int) -> tuple[Report, Callable[[bool], str], list, Path]:
    """train of 2 and of 3 steps into one folder (its checkpoints shared), alternately, killed."""
    out = tmp / "train"
    cfg = tiny_store(tmp, train={"out": str(out), "epochs": 1, "batch_size": 2, "max_clips_per_epoch": 8})
    tree = cfg.to_dict()
    targets = [(f"{n}-steps", {**tree, "train": {**tree["train"], "max_steps": n}}, {}) for n in (2, 3)]
    refs = {}
    for name, t, _ in reversed(targets):          # in `out` itself: model.pt's meta holds the config's paths
        full_s = timed_run(tmp, "train", t, {})
        refs[name] = digest(out, TRAIN_OUTPUTS, train_summary)
    state_of = identify(out, refs, TRAIN_OUTPUTS, train_summary)
    report = kill_loop(tmp, "train", targets, state_of, TRAIN_COMMIT_STEPS, tries, seed, full_s)
    return report, state_of, targets, out

