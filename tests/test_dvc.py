"""DVC the DVC way, on a copy of this repository: `dvc exp run -S` experiments that `dvc exp show`
compares (every experiment has its metrics), params.yaml that `-S` rewrites only where it sets a
value, `dvc metrics show` without warnings, and training curves `dvc plots` renders."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# the smallest pipeline that still trains and evaluates (the tests' TINY data, a few steps);
# tracking off: `dvc exp run evaluate` stops before `register`, which needs the registry
TINY = ["synthetic.train_videos=2", "synthetic.test_videos=2", "synthetic.frames=40", "synthetic.height=48",
        "synthetic.width=64", "synthetic.walkers=2", "data.size=[32,32]", "data.clip_len=8", "data.scored_index=4",
        "model.ltgpa.width=[4,6,8,8]", "model.ltgpa.g_width=[4,6,8]", "train.epochs=2",
        "train.max_clips_per_epoch=4", "train.batch_size=2", "evaluate.top_k=0", "evaluate.bootstrap=0",
        "tracking.enabled=false"]


def test_params_yaml_survives_dvc_exp_run_set(tmp_path):
    """`dvc exp run -S` re-serialises params.yaml (ruamel, block style): the file is written that
    way, so an experiment's params.yaml differs from the baseline only in the keys it sets."""
    from dvc.utils.hydra import apply_overrides

    p = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", p)
    before = p.read_text().splitlines()
    apply_overrides(str(p), ["train.max_steps=3", "pseudo.lam=0.25"])
    after = p.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    hint = ("params.yaml is not in the form `dvc exp run -S` writes; rewrite it with: .venv/bin/python -c "
            "\"from dvc.utils.hydra import apply_overrides; apply_overrides('params.yaml', ['seed=0'])\" "
            "(with the file's own seed)")
    assert len(after) == len(before), hint
    assert [b.strip() for _, b in changed] == ["lam: 0.25", "max_steps: 3"], (hint, changed)


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} → {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _clone(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The working tree's files (tracked and new, not ignored) committed in a fresh git repository."""
    repo = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "GIT_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", DVC_NO_ANALYTICS="1", MPLBACKEND="Agg",
               PSEUDOVAD_NO_PROGRESS="1", DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", HOME=str(tmp_path))
    _sh(["git", "init", "-q"], repo, env)
    _sh(["git", "add", "-A"], repo, env)
    _sh(["git", "commit", "-qm", "baseline"], repo, env)
    return repo, env


def test_dvc_experiments_are_compared_by_their_metrics(tmp_path):
    """Two `dvc exp run -S` experiments in a fresh clone: `dvc exp show --json` has each one's
    auc_micro (no `!`: the metrics are cached outputs its dvc.lock names), `dvc metrics show`
    warns about nothing (no tune metrics declared before a search), and the training curves
    (history.json) render in `dvc plots show`."""
    repo, env = _clone(tmp_path)
    dvc = str(BIN / "dvc")
    for name, lam in (("lam-a", "0.1"), ("lam-b", "0.3")):
        _sh([dvc, "exp", "run", "evaluate", "-n", name, *[a for s in TINY for a in ("-S", s)],
             "-S", f"pseudo.lam={lam}"], repo, env)

    shown = json.loads(_sh([dvc, "exp", "show", "--json"], repo, env).stdout)
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                metrics = data["metrics"]["runs/evaluate/metrics.json"]["data"]
                lam = data["params"]["params.yaml"]["data"]["pseudo"]["lam"]
                found[rev["name"]] = (lam, metrics["auc_micro"], metrics["video_auc"])
    assert set(found) == {"lam-a", "lam-b"}, shown
    assert (found["lam-a"][0], found["lam-b"][0]) == (0.1, 0.3)
    for lam, auc, per_video in found.values():
        assert 0.0 <= auc <= 1.0 and set(per_video) == {"01", "02"}

    # numbers only in metrics.json; the texts beside it; nothing for DVC to warn about
    metrics = _sh([dvc, "metrics", "show", "--json"], repo, env)
    assert "failed" not in metrics.stderr.lower() and "warning" not in metrics.stderr.lower(), metrics.stderr
    assert "provenance.json" not in metrics.stdout and "model_sha256" not in metrics.stdout
    assert json.loads((repo / "runs/evaluate/provenance.json").read_text())["video_ids"] == ["01", "02"]

    plots = json.loads(_sh([dvc, "plots", "show", "--json"], repo, env).stdout)
    assert not [e for e in plots.get("errors") or [] if e.get("name") == "loss"], plots.get("errors")
    loss = plots["data"]["loss"][0]["content"]["data"]["values"]
    assert {v["epoch"] for v in loss} == {0, 1} and all("loss_f_normal" in v or "loss_f_pseudo" in v for v in loss)


def test_dvc_repro_on_unlabelled_footage_promotes_on_label_free_evidence(tmp_path):
    """`dvc repro` on footage without a labelled test split (synthetic.test_videos 0: what a camera
    owner has) runs through register; a second run with another seed is evaluated beside the
    champion on the same held-out footage, and the gate decides on that label-free evidence."""
    import yaml

    repo, env = _clone(tmp_path)
    dvc = str(BIN / "dvc")
    params = repo / "params.yaml"

    def set_params(values: list[str]) -> None:
        from dvc.utils.hydra import apply_overrides

        apply_overrides(str(params), values)
        _sh(["git", "commit", "-qam", "params"], repo, env)

    unlabelled = [s for s in TINY if not s.startswith(("synthetic.test_videos", "tracking.enabled"))]
    set_params([*unlabelled, "synthetic.test_videos=0", "synthetic.frames=48", "train.val_fraction=0.2",
                "train.holdout_fraction=0.2", "tracking.enabled=true"])
    _sh([dvc, "repro"], repo, env)
    first = json.loads((repo / "runs/register/decision.json").read_text())
    assert first["promoted"] and first["evidence"] == "label-free" and first["version"] == "1"
    metrics = json.loads((repo / "runs/evaluate/metrics.json").read_text())
    assert "auc_micro" not in metrics and 0.0 <= metrics["synthetic_auc"] <= 1.0
    assert yaml.safe_load((repo / "runs/evaluate/provenance.json").read_text())["evidence"] == "label-free"

    set_params(["seed=1"])
    r = _sh([dvc, "repro"], repo, env)
    second = json.loads((repo / "runs/register/decision.json").read_text())
    assert second["version"] == "2" and second["evidence"] == "label-free" and second["champion_before"] == "1"
    assert "against champion v1" in second["reason"] or "raises false alarms" in second["reason"] \
        or "finds injected anomalies worse" in second["reason"], second["reason"]
    assert "evaluate: beside it, v1 on the same footage" in r.stdout
    assert json.loads((repo / "runs/evaluate/provenance.json").read_text())["baseline_version"] == "1"
