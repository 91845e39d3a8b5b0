"""Start-up is part of the CLI's interface: `pseudovad --help` and a command's params validation
happen before torch, MLflow, Ray (or matplotlib, scikit-learn) are imported, so a refusal costs a
fraction of a second; what a bad key prints is unchanged (one line, exit 2). Each check runs the
CLI in a fresh interpreter and reads its `sys.modules` at exit."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "mlflow", "ray", "kfp", "matplotlib", "sklearn", "cv2", "boto3")

# runs cli.main, then prints the heavy top-level packages that were imported as the last stdout line
_PROBE = """
import json, sys
from pseudovad.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as e:
    rc = e.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("\\n" + json.dumps({"rc": rc, "heavy": heavy}))
""" % (HEAVY,)


def _cli(args: list[str], cwd: Path) -> tuple[dict, str, str]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stdout, p.stderr


def test_help_imports_no_heavy_library(tmp_path):
    res, out, _ = _cli(["--help"], tmp_path)
    assert res == {"rc": 0, "heavy": []}
    assert "score" in out and "evaluate" in out and "train" in out      # every stage is listed


@pytest.mark.parametrize("args, says", [
    (["evaluate", "-p", "train.bogus=1"], "train.bogus: unknown key"),
    (["score", "video.mp4", "-p", "inference.amp=fp16"], "inference.amp"),
    (["train", "-P", "missing.yaml"], "missing.yaml"),
    (["tune", "--threads", "0"], "--threads: must be ≥ 1, got 0"),
])
def test_bad_params_are_refused_before_heavy_imports(tmp_path, args, says):
    res, _, err = _cli(args, tmp_path)
    assert res == {"rc": 2, "heavy": []}
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pseudovad {args[0]}: error: ") and says in lines[0]


def test_a_stage_help_still_lists_its_own_arguments(tmp_path):
    res, out, _ = _cli(["score", "--help"], tmp_path)
    assert res["rc"] == 0
    assert "--threshold" in out and "--model" in out and "--params" in out


def test_valid_params_then_only_the_chosen_stage_loads(tmp_path):
    """`report` (a results table) needs neither torch nor MLflow: a good command is lean too."""
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    res, _, err = _cli(["report", str(tmp_path / "nothing-*.json")], tmp_path)
    assert "torch" not in res["heavy"] and "mlflow" not in res["heavy"] and "ray" not in res["heavy"], err
