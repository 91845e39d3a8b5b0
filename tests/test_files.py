"""files.staged_outputs: a stage's outputs change together or not at all, whatever instant it is killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pseudovad import files
from pseudovad.errors import DataError

# a writer in its own process (so it can be SIGKILLed), replacing three outputs with `tag`
WRITER = """
import sys, time
from pathlib import Path
from pseudovad.files import staged_outputs, write_text
folder, tag, hold = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
with staged_outputs(folder, "test writer") as stage:
    write_text(stage / "a.txt", tag)
    (stage / "plots").mkdir()
    write_text(stage / "plots" / f"{tag}.txt", tag)
    write_text(stage / "z.txt", tag)
    print("staged", flush=True)
    time.sleep(hold)
"""
STEPS = 6   # 0 staged, 1 journal written, 2 a.txt, 3 old plots/ aside, 4 plots/, 5 z.txt


def outputs(folder: Path) -> tuple[str, str, str]:
    plots = sorted(p.name for p in (folder / "plots").iterdir())
    return (folder / "a.txt").read_text(), ",".join(plots), (folder / "z.txt").read_text()


def write_old(folder: Path) -> None:
    with files.staged_outputs(folder) as stage:
        for name in ("a.txt", "z.txt"):
            (stage / name).write_text("old")
        (stage / "plots").mkdir()
        (stage / "plots" / "old.txt").write_text("old")
    (folder / "checkpoints").mkdir(exist_ok=True)
    (folder / "checkpoints" / "last.pt").write_text("kept")


def run_writer(folder: Path, tag: str, crash_at: int | None = None, hold: float = 0.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PSEUDOVAD_CRASH_AT": f"commit:{crash_at}" if crash_at is not None else ""}
    return subprocess.run([sys.executable, "-c", WRITER, str(folder), tag, str(hold)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_outputs_replace_together_and_keep_what_the_stage_does_not_write(tmp_path):
    write_old(tmp_path)
    with files.staged_outputs(tmp_path) as stage:
        (stage / "a.txt").write_text("new")
        (stage / "z.txt").write_text("new")
        (stage / "plots").mkdir()
        (stage / "plots" / "new.txt").write_text("new")
        assert outputs(tmp_path) == ("old", "old.txt", "old")      # nothing changes before the commit
    assert outputs(tmp_path) == ("new", "new.txt", "new")          # the old folder is replaced, not merged
    assert (tmp_path / "checkpoints" / "last.pt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.LOCK, "a.txt", "checkpoints", "plots", "z.txt"]


def test_a_failing_stage_leaves_the_old_outputs(tmp_path):
    write_old(tmp_path)
    with pytest.raises(RuntimeError):
        with files.staged_outputs(tmp_path) as stage:
            (stage / "a.txt").write_text("new")
            raise RuntimeError("scoring failed")
    assert outputs(tmp_path) == ("old", "old.txt", "old")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(files.STAGING)]


@pytest.mark.parametrize("step", range(STEPS + 1))
def test_killed_at_any_step_of_the_commit_old_or_new_never_a_mix(tmp_path, step):
    """SIGKILL at each file-system step: a reader (settle) sees all old or all new; the next
    writer finishes or discards what was left and succeeds."""
    write_old(tmp_path)
    r = run_writer(tmp_path, "new", crash_at=step)
    assert r.returncode == (0 if step == STEPS else -signal.SIGKILL), r.stderr
    files.settle(tmp_path)
    assert outputs(tmp_path) == (("old", "old.txt", "old") if step == 0 else ("new", "new.txt", "new"))
    assert (tmp_path / "checkpoints" / "last.pt").read_text() == "kept"
    r = run_writer(tmp_path, "next")
    assert r.returncode == 0, r.stderr
    assert outputs(tmp_path) == ("next", "next.txt", "next")
    assert sorted(p.name for p in tmp_path.iterdir()) == [files.LOCK, "a.txt", "checkpoints", "plots", "z.txt"]


def test_the_next_writer_replays_a_half_done_commit_before_its_own(tmp_path):
    write_old(tmp_path)
    assert run_writer(tmp_path, "new", crash_at=3).returncode == -signal.SIGKILL   # a.txt new, plots/ moved aside
    assert (tmp_path / "a.txt").read_text() == "new" and not (tmp_path / "plots").exists()   # mixed, unsettled
    with files.staged_outputs(tmp_path) as stage:            # touches only a.txt
        (stage / "a.txt").write_text("next")
        assert outputs(tmp_path) == ("new", "new.txt", "new")   # the killed commit was completed first
    assert outputs(tmp_path) == ("next", "new.txt", "new")


def test_stale_staging_and_temp_files_of_a_killed_run_are_removed_at_start(tmp_path):
    write_old(tmp_path)
    (tmp_path / ".staging-dead1234").mkdir()                  # killed while still computing
    (tmp_path / ".staging-dead1234" / "a.txt").write_text("half")
    (tmp_path / ".plots.ab12cd34.tmp").mkdir()                # atomic_dir of an older version
    (tmp_path / ".scores.csv.k2j3h4g5.tmp").write_text("half")
    (tmp_path / ".notes.tmp").write_text("the user's")        # not a name pseudovad makes
    files.settle(tmp_path)                                    # readers ignore unfinished staging
    assert outputs(tmp_path) == ("old", "old.txt", "old")
    with files.claim(tmp_path, "test"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", files.LOCK, "a.txt", "checkpoints",
                                                          "plots", "z.txt"]


def test_a_second_writer_of_one_folder_is_refused_while_the_first_runs(tmp_path):
    env = {**os.environ, "PSEUDOVAD_CRASH_AT": ""}
    first = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "first", "30"], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "staged"
        with pytest.raises(DataError, match="another run is writing its outputs here"):
            with files.staged_outputs(tmp_path, "evaluate"):
                pass
        files.settle(tmp_path)    # a reader does not wait for a writer that has not committed
        assert not (tmp_path / "a.txt").exists()
    finally:
        first.kill()
        first.wait()
    with files.staged_outputs(tmp_path, "evaluate") as stage:     # its lock died with it
        (stage / "a.txt").write_text("second")
    assert (tmp_path / "a.txt").read_text() == "second"


def test_settle_waits_for_a_live_writer_that_is_renaming(tmp_path, monkeypatch):
    """A journal whose writer still holds the lock is left to it; settle returns once it is done."""
    import fcntl
    import threading

    write_old(tmp_path)
    stage = tmp_path / ".staging-live0001"
    stage.mkdir()
    (stage / "a.txt").write_text("new")
    (stage / files.JOURNAL).write_text('{"members": ["a.txt"]}')
    lock = open(tmp_path / files.LOCK, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)           # the "writer"

    def finish():
        time.sleep(0.2)
        files._roll_forward(tmp_path, stage)
        fcntl.flock(lock, fcntl.LOCK_UN)

    t = threading.Thread(target=finish)
    t.start()
    files.settle(tmp_path)
    t.join()
    lock.close()
    assert (tmp_path / "a.txt").read_text() == "new" and not stage.exists()
