"""Ingested footage: the raw files `ingest` accepted, kept so the store can be rebuilt from them.

The frame store is a derived artefact (DVC deletes and rebuilds it whenever extraction params
change), so the footage that `ingest` pulled from a bucket has to live outside it. It lives in a
dataset root of its own, next to the store by default:

  <data.store>-ingested/ingest.json                       the log: every object ever looked at
  <data.store>-ingested/training/videos/<video id>.<ext>  accepted footage, named by video id

`extract` adds the logged videos to the training split after `data.root`'s, in log order, which
is the order `ingest` appends them, so an incremental ingest and a full rebuild give the same
store. The log, written last, is the commit point: a raw file it does not list is debris from an
interrupted run and is ignored (and removed by the next ingest).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pseudovad.data.sources import Source
from pseudovad.errors import DataError
from pseudovad.files import write_json

LOG = "ingest.json"
VERSION = 1
VIDEOS = Path("training") / "videos"


def root_for(cfg, store: str | Path | None = None) -> Path:
    """`ingest.root`, or `<store>-ingested` so each store keeps its own footage."""
    if cfg.ingest.root:
        return Path(cfg.ingest.root)
    s = Path(store or cfg.data.store)
    return s.with_name(s.name + "-ingested")


def load_log(root: Path) -> dict[str, Any]:
    path = Path(root) / LOG
    if not path.is_file():
        return {"version": VERSION, "objects": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: corrupt ingest log ({e.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise DataError(f"{path}: not an ingest log (expected an 'objects' list)")
    return data


def save_log(root: Path, data: dict[str, Any]) -> None:
    write_json(Path(root) / LOG, data)


def accepted(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in data["objects"] if o.get("status") == "ingested"]


def sources(root: Path, taken: set[str] | None = None) -> list[Source]:
    """Logged, accepted videos as training sources, in log order."""
    root = Path(root)
    if not (root / LOG).is_file():
        return []
    out = []
    for rec in accepted(load_log(root)):
        path = root / rec["file"]
        if not path.is_file():
            raise DataError(f"{path}: ingested video {rec['video']} is logged in {root / LOG} but missing "
                            "(run `dvc pull` or `dvc checkout`)")
        if taken and rec["video"] in taken:
            raise DataError(f"{root / LOG}: ingested video id {rec['video']} collides with a training video "
                            "of data.root")
        out.append(Source(rec["video"], "training", path, "video"))
    return out


def manifest_records(data: dict[str, Any]) -> list[dict[str, Any]]:
    """What the frame store manifest lists under `ingested`: enough to trace a video to its object."""
    keys = ("video", "source", "checksum", "size", "time")
    return [{k: rec.get(k) for k in keys} for rec in accepted(data)]


def remove_orphans(root: Path, data: dict[str, Any]) -> list[str]:
    """Delete raw files that no log entry owns (left by a run that died before its commit)."""
    owned = {rec["file"] for rec in accepted(data)}
    folder = Path(root) / VIDEOS
    gone = []
    if folder.is_dir():
        for f in folder.iterdir():
            rel = f.relative_to(root).as_posix()
            if f.is_file() and rel not in owned:
                f.unlink()
                gone.append(rel)
    return gone


def find(data: dict[str, Any], source: str, etag: str, size: int) -> Optional[dict[str, Any]]:
    """The record of an object seen before with the same identity (URI, ETag, size)."""
    for rec in data["objects"]:
        if rec.get("source") == source and rec.get("etag") == etag and rec.get("size") == size:
            return rec
    return None
