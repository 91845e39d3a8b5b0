"""Data versions as DVC writes them: the md5 of a folder's `.dir` listing (what `dvc.lock` records
for a directory output), and the evaluation set's version from DVC's per-file hashes.

A laptop `dvc repro`, the cluster's Kubeflow steps and MLflow must all name the same data the
same way, so the version is DVC's own hash, computed with DVC's own code (`dvc_data`'s `build`,
the function `dvc commit` calls), never a format of ours. It works on any folder: inside a DVC
repository it honours `.dvcignore` and shares the repository's hash cache (DVC's "state": files
whose inode, mtime and size are unchanged are not read again, so a call after `dvc repro`,
`dvc pull` or a first call only stats the files); outside one it keeps such a cache in DVC's
site cache folder (`$DVC_SITE_CACHE_DIR`, default /var/tmp/dvc).

Why two versions: the store's hash changes whenever footage is added to the training split
(every retraining round), but the promotion gate must ask "same test frames and labels?", so
`evaluation_version` hashes only the labelled test split's arrays and labels (their per-file DVC
md5s; size and channels are in the arrays' bytes).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from pseudovad.errors import DataError

HASH = "md5"            # DVC 3's hash name (dvc.lock: `hash: md5`)


@dataclass(frozen=True)
class DirVersion:
    """A directory as dvc.lock records it: `md5` ("<md5>.dir"), `size` (bytes), `nfiles`, and
    each file's md5 by its path relative to the folder (posix)."""

    md5: str
    size: int
    nfiles: int
    files: dict[str, str]

    def lock_entry(self) -> dict:
        """The fields of a dvc.lock `outs` entry for this folder (besides `path`)."""
        return {"md5": self.md5, "size": self.size, "nfiles": self.nfiles, "hash": HASH}


@contextlib.contextmanager
def _state(path: Path) -> Iterator[tuple[object, object]]:
    """(DVC state, dvcignore) for hashing `path`: its repository's, else one kept per folder in
    DVC's site cache dir."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.state import State

    try:
        root = Repo.find_root(str(path))
    except NotDvcRepoError:
        root = None
    if root is not None:
        repo = Repo(root)
        try:
            yield repo.state, repo.dvcignore
        finally:
            repo.close()
        return
    from dvc.dirs import site_cache_dir

    key = hashlib.md5(str(path).encode(), usedforsecurity=False).hexdigest()
    state = State(str(path), os.path.join(site_cache_dir(), "pseudovad", "state", key))
    try:
        yield state, None
    finally:
        state.close()


def dir_version(path: str | Path) -> DirVersion:
    """The DVC version of the folder `path`, exactly as `dvc commit` / `dvc repro` record it in
    dvc.lock for that directory output (module doc)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(os.path.abspath(path))     # DVC's state keys are absolute paths
    if not path.is_dir():
        raise DataError(f"{path}: not a folder (nothing to version)")
    fs = LocalFileSystem()
    with _state(path) as (state, ignore):
        # dry_run: hash only; nothing is added to any cache
        odb = HashFileDB(fs, str(path), state=state, hash_name=HASH)
        _, meta, tree = build(odb, str(path), fs, HASH, dry_run=True, ignore=ignore)
    files = {"/".join(key): hi.value for key, (_, hi) in tree.iteritems()}
    return DirVersion(tree.hash_info.value, int(meta.size or 0), int(meta.nfiles or 0), files)


def dvc_hash(path: str | Path) -> str:
    """The md5 DVC records in dvc.lock for the folder `path` ("<md5>.dir")."""
    return dir_version(path).md5


def listing_hash(files: dict[str, str]) -> str:
    """The ".dir" md5 DVC would record for a folder holding exactly `files` (relative path → md5)."""
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    for rel, md5 in sorted(files.items()):
        tree.add(tuple(rel.split("/")), Meta(), HashInfo(HASH, md5))
    tree.digest()
    return tree.hash_info.value


def evaluation_files(version: DirVersion, videos: Optional[Iterable[str]] = None) -> dict[str, str]:
    """The labelled test split within a store's version: `testing/<id>.npy` and
    `testing/<id>.labels.npy` (of `videos` only, when given), relative to testing/."""
    wanted = None if videos is None else set(videos)
    out: dict[str, str] = {}
    for rel, md5 in version.files.items():
        split, _, name = rel.partition("/")
        if split != "testing" or "/" in name or not name.endswith(".npy"):
            continue
        video = name[: -len(".labels.npy")] if name.endswith(".labels.npy") else name[: -len(".npy")]
        if wanted is None or video in wanted:
            out[name] = md5
    return out


def evaluation_version(store: str | Path, videos: Optional[Iterable[str]] = None,
                       version: Optional[DirVersion] = None) -> str:
    """The version of the evaluation set in the frame store `store`: the DVC ".dir" md5 of its
    labelled test split alone (every test video's array and labels, or those of `videos`), i.e.
    what dvc.lock would record for a folder holding just those files. Adding training footage
    leaves it unchanged; a changed test frame, label, size or channel count changes it.
    `version`: the store's `dir_version`, when the caller has it already."""
    version = version or dir_version(store)
    return listing_hash(evaluation_files(version, videos))
