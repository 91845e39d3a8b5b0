"""Kill -9 evaluate and train at random instants and at every step of their outputs' commit: the
folder always holds the previous run's outputs or the new run's, complete, never a mix, and the
next run succeeds (tests/faults.py does the killing; benchmarks/reliability.py runs longer loops)."""
from __future__ import annotations

import json

from pseudovad import files
from pseudovad.models.model_file import read_model_file
from tests import faults


def _next_run_succeeds(tmp_path, stage, state_of, targets):
    last = state_of(True)
    name, tree, kwargs = next(t for t in targets if t[0] != last)
    assert faults.run_child(tmp_path, stage, tree, kwargs, "none") == 0
    assert state_of(True) == name
    return name


def test_evaluate_killed_anywhere_leaves_old_or_new_outputs_and_the_next_run_succeeds(tmp_path):
    report, state_of, targets, out = faults.evaluate_loop(tmp_path, tries=20, seed=15)
    print(report.row())
    assert not [t for t in report.tries if t.state.startswith("MIX")], report.tries
    assert report.killed >= faults.EVALUATE_COMMIT_STEPS
    assert all(t.exitcode == -9 for t in report.tries if t.kill.startswith("commit:")), report.tries  # every step hit
    assert report.replayed >= 1          # kills mid-rename happened, and a reader saw them completed
    assert any(t.state != t.before for t in report.tries if t.exitcode == -9)   # killed after the commit point
    _next_run_succeeds(tmp_path, "evaluate", state_of, targets)
    assert sorted(p.name for p in out.iterdir()) == sorted([files.LOCK, *faults.EVALUATE_OUTPUTS])  # nothing stale


def test_train_killed_anywhere_leaves_a_model_and_its_metrics_of_one_run(tmp_path):
    report, state_of, targets, out = faults.train_loop(tmp_path, tries=20, seed=15)
    print(report.row())
    assert not [t for t in report.tries if t.state.startswith("MIX")], report.tries
    assert report.killed >= faults.TRAIN_COMMIT_STEPS and report.replayed >= 1
    assert all(t.exitcode == -9 for t in report.tries if t.kill.startswith("commit:")), report.tries
    name = _next_run_succeeds(tmp_path, "train", state_of, targets)
    meta = read_model_file(out / "model.pt")["meta"]
    assert meta["steps"] == json.loads((out / "metrics.json").read_text())["steps"] == int(name[0])
