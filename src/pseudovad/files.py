"""Files every stage writes: atomic writes, outputs that commit together, content hashes, locks.

Outputs appear complete or not at all. A killed process (SIGKILL on a preempted node, Ctrl-C) must
never leave a truncated model, metrics file or frame array where the next stage would read it.
One file is written beside its destination under a temporary name and renamed into place (rename
is atomic on POSIX): `atomic_path`, `write_text`, `write_json`.

A stage's several outputs (evaluate's scores.csv, roc.csv, plots/ and metrics.json; train's
model.pt and metrics.json; the frame store) must also change together: `staged_outputs`. POSIX
has no rename of several files at once, and an output folder cannot be swapped whole because it
holds what must survive the run (train's checkpoints/, tune's search/) and may be any folder a
user names (`--out .`). So the commit is a redo journal:
  1. the stage writes every output into a staging folder inside the output folder
     (`.staging-*`, named like the outputs it replaces); the old outputs are untouched;
  2. once all are written, `.commit.json` (the member list) is written into it, atomically:
     this is the commit point;
  3. each member is renamed over its old version (a folder: the old one moved aside first), then
     the staging folder is removed.
A kill before 2 leaves the old outputs, complete; a kill during 3 leaves a journal that completes
the same renames. Whoever comes next replays it before touching the folder: the next writer
(`claim`, which also deletes unfinished staging and temp files of a killed run) and every reader
in the project (`settle`: registry, evaluate's model, the frame store). A writer holds
`.pseudovad.lock` in the folder for its whole run, so two runs never write one folder at once and
a staging folder found under the lock belongs to a dead process. Power loss is not covered (no
fsync of every output): a killed process's writes are kept by the kernel.
Named `files`, not `io`, so it never shadows the standard library's `io` in a reader's head.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, is_dir: bool) -> None:
    """mkstemp/mkdtemp create owner-only files; give outputs the permissions a plain open() would."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp file path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _publish_mode(tmp_path, False)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `dest`; swap it in for `dest` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _publish_mode(tmp, True)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old.{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_json(dest: str | Path, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Outputs that commit together (module doc)

LOCK = ".pseudovad.lock"
STAGING = ".staging-"
JOURNAL = ".commit.json"
_ASIDE = ".replaced"           # inside a staging folder: old folders moved out of the way
# temp names of atomic_path / atomic_dir / the old store staging, left by a killed process
_STALE = re.compile(r"^\..+\.([a-z0-9_]{8}\.(tmp(\.[A-Za-z0-9]+)?|staging)|old\.\d+)$")
_claimed: dict[Path, int] = {}  # folders this process holds; a claim inside a claim of the same folder nests


def _crash_point(step: int) -> None:
    """Fault injection for tests only: PSEUDOVAD_CRASH_AT=commit:<step> SIGKILLs this process at
    that step of a commit (0: all staged, 1: journal written, 2…: after each rename)."""
    if os.environ.get("PSEUDOVAD_CRASH_AT") == f"commit:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _open_lock(folder: Path):
    try:
        return open(folder / LOCK, "a")
    except OSError as e:
        from pseudovad.errors import DataError

        raise DataError(f"{folder}: cannot lock the output folder ({e.strerror})") from None


@contextlib.contextmanager
def claim(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold `folder` for one run of `what` (a stage): another process claiming it fails at once
    with a one-line error; what a killed run left there (a journal: replayed; unfinished staging
    and temp files: deleted) is dealt with first. Nested claims of one folder in this process share it."""
    import fcntl

    from pseudovad.errors import DataError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _claimed:
        _claimed[key] += 1
        try:
            yield folder
        finally:
            _claimed[key] -= 1
        return
    with _open_lock(folder) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{folder}: another run is writing its outputs here ({what}); wait for it "
                            "or pass another output folder") from None
        _claimed[key] = 1
        try:
            _recover(folder)
            yield folder
        finally:
            del _claimed[key]
            fcntl.flock(f, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _recover(folder: Path) -> None:
    """Under the folder's lock: finish killed commits, delete unfinished staging and temp files."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(STAGING) and entry.is_dir():
            if (entry / JOURNAL).is_file():
                log.info("%s: completing the commit of outputs a killed run left in %s", folder, entry.name)
                _roll_forward(folder, entry)
            else:
                log.info("%s: removing %s, unfinished outputs of a killed run", folder, entry.name)
                _remove(entry)
        elif _STALE.match(entry.name):
            log.info("%s: removing %s, a temp file of a killed run", folder, entry.name)
            _remove(entry)


def _roll_forward(folder: Path, stage: Path) -> None:
    """Rename each member of a committed staging folder over its old version (idempotent: a
    member already moved is skipped, so a replay after a kill finishes the same commit)."""
    members = json.loads((stage / JOURNAL).read_text())["members"]
    step = 1
    for name in members:
        src, dst = stage / name, folder / name
        if not os.path.lexists(src):
            continue
        if os.path.lexists(dst) and (dst.is_dir() or src.is_dir()):
            # rename cannot replace a non-empty folder (or a file by a folder): move the old aside
            aside = stage / _ASIDE / name
            aside.parent.mkdir(exist_ok=True)
            _remove(aside)
            os.replace(dst, aside)
            step += 1
            _crash_point(step)
        os.replace(src, dst)
        step += 1
        _crash_point(step)
    shutil.rmtree(stage, ignore_errors=True)


def _commit(folder: Path, stage: Path) -> None:
    members = sorted(p.name for p in stage.iterdir() if not p.name.startswith("."))
    _crash_point(0)
    with atomic_path(stage / JOURNAL) as tmp:
        tmp.write_text(json.dumps({"members": members}) + "\n")
        with open(tmp, "rb") as f:   # the commit point must be on disk before anything moves
            os.fsync(f.fileno())
    _crash_point(1)
    _roll_forward(folder, stage)


@contextlib.contextmanager
def staged_outputs(folder: str | Path, what: str = "outputs") -> Iterator[Path]:
    """Yield a staging folder inside `folder`: every file or folder the block writes at its top
    level replaces the entry of the same name in `folder`, all of them together, when the block
    succeeds; if it fails (or the process dies) the old outputs stay as they were. Entries of
    `folder` the block does not write (checkpoints/, history.json) are kept; hidden entries of
    the staging folder (".work") are scratch, never committed. The folder is claimed (`claim`)
    for the block."""
    folder = Path(folder)
    with claim(folder, what):
        stage = Path(tempfile.mkdtemp(prefix=STAGING, dir=folder))
        try:
            yield stage
            _commit(folder, stage)
        finally:
            if os.path.lexists(stage) and not (stage / JOURNAL).is_file():
                shutil.rmtree(stage, ignore_errors=True)


def settle(folder: str | Path) -> None:
    """Before reading outputs in `folder`: if a commit there is half done (its writer was killed
    mid-rename, or is renaming now), complete it, so a reader never sees old and new outputs
    mixed. Cheap when there is nothing to do (one directory listing)."""
    import fcntl

    folder = Path(folder)
    try:
        pending = [e for e in folder.iterdir() if e.name.startswith(STAGING) and (e / JOURNAL).is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return
    if not pending or folder.resolve() in _claimed:   # nothing half done, or this process is the writer
        return
    import time

    with _open_lock(folder) as f:
        while any((stage / JOURNAL).is_file() for stage in pending):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:   # its writer is alive and renaming: done in moments
                time.sleep(0.02)
                continue
            try:                      # its writer is gone: replay the journal
                for stage in pending:
                    if (stage / JOURNAL).is_file():
                        _roll_forward(folder, stage)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an advisory lock on `path` for the block; if another process holds it, fail at once
    (or, with `wait`, wait for it: a short critical section such as a registration).

    Cron can fire while the previous ingest or retrain still runs: the second must refuse, not
    interleave its writes with the first's.
    """
    import fcntl

    from pseudovad.errors import DataError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise DataError(f"{path}: another {what} is running") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

