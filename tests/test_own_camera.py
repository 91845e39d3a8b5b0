"""The five-minute path of docs/guides/own-footage.md, command for command, on generated .mp4 footage
without any label: extract → train → evaluate (label-free) → score (annotated video) → register →
a nightly retrain that ingests new footage and lets the gate decide on label-free evidence."""
from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import cv2
import pytest

from pseudovad import results
from pseudovad.cli import main as cli_main
from pseudovad.config import from_dict
from pseudovad.data.synthetic import render_video

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "guides" / "own-footage.md"
# the profile's shape at test size: 32×32 frames, 8-frame clips, tiny widths, a few steps
TINY = ["data.size=[32,32]", "data.clip_len=8", "data.scored_index=4", "model.ltgpa.width=[4,6,8,8]",
        "model.ltgpa.g_width=[4,6,8]", "train.max_steps=3", "train.epochs=1", "train.batch_size=2",
        "train.checkpoint_every=10", "device=cpu"]


def documented_commands(text: str | None = None) -> list[list[str]]:
    """The `pseudovad …` lines of the first bash block of `text` (default: the page), as argument lists."""
    block = re.search(r"```bash\n(.*?)```", DOC.read_text() if text is None else text, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("pseudovad ")]


def _mp4(path: Path, index: int, frames: int = 80) -> None:
    """Recording `index` of one camera (the scene is the synthetic seed's; who walks by differs)."""
    syn = from_dict({"synthetic": {"frames": frames, "height": 48, "width": 64, "walkers": 2}}).synthetic
    video, _ = render_video(syn, "training", index)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 48), True)
    for f in video:
        w.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    w.release()


def test_the_page_lists_the_whole_path():
    stages = [c[0] for c in documented_commands()]
    assert stages == ["extract", "train", "evaluate", "score", "register", "retrain"]
    assert all("-P" in c and "configs/camera-cpu.yaml" in c for c in documented_commands())


def test_readme_shows_the_same_path():
    """README's "Your own camera" block is the page's path, so the run below tests it too."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Your own camera"):]
    section = section[:section.index("\n## ", 1)]
    assert documented_commands(section) == documented_commands()


@pytest.mark.integration
def test_own_camera_five_minute_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "camera-cpu.yaml", tmp_path / "configs")
    for i in range(2):                                   # a folder of one camera's recordings
        _mp4(tmp_path / "camera" / "footage" / f"2024-05-0{i + 1}.mp4", i)
    _mp4(tmp_path / "camera" / "new.mp4", 5, frames=40)
    tiny = [a for kv in TINY for a in ("-p", kv)]
    out = {}
    for args in documented_commands():
        stage = args[0]
        if stage == "retrain":                           # the night after: new footage arrived
            _mp4(tmp_path / "camera" / "incoming" / "2024-05-03.mp4", 2)
        assert cli_main([*args, *tiny]) == 0, stage
        out[stage] = capsys.readouterr().out

    assert "extract: 2 training / 0 test videos (160 / 0 frames" in out["extract"]
    m = results.read(tmp_path / "camera/runs/evaluate")
    assert m["evidence"] == "label-free" and m["holdout_video_ids"] == ["2024-05-01", "2024-05-02"]
    assert m["holdout_hours"] is not None                # the .mp4 files' frame rate is known
    assert "label-free (no labelled test videos)" in out["evaluate"] and "injected anomalies: AUC" in out["evaluate"]
    summary = json.loads((tmp_path / "camera/runs/score/summary.json").read_text())
    assert summary["frames"] == 40 and (tmp_path / "camera/runs/score/annotated.mp4").stat().st_size > 0
    decision = json.loads((tmp_path / "camera/runs/register/decision.json").read_text())
    assert decision["promoted"] and decision["evidence"] == "label-free" and decision["model_name"] == "camera"
    # the nightly round: one new recording learned, the champion scored beside the candidate on the same
    # held-out footage, the gate decided on that
    last = json.loads((tmp_path / "camera/runs/retrain/last.json").read_text())
    assert len(last["ingested"]) == 1 and last["evidence"] == "label-free" and last["version"] == "2"
    assert last["warm_start"] == "models:/camera/1"
    round_metrics = results.read(tmp_path / "camera/runs/retrain" / last["round"] / "evaluate")
    assert round_metrics["baseline_version"] == "1" and len(round_metrics["holdout_video_ids"]) == 3
    assert ("promoted: label-free" in last["reason"]) or ("kept: " in last["reason"]), last["reason"]
