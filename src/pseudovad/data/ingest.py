"""Ingest: new normal footage from an S3 prefix or a local folder into the training frame store.

Cameras keep recording normal days and operators drop the files in a bucket; this stage makes
them training data. Each run lists the source, skips every object it has seen before (same URI,
ETag and size, or the same sha256 content under another name), downloads the rest (streamed,
resumable), and validates each file: OpenCV decodes it, frame size and fps are sane, it is long
enough and not truncated. Accepted files are extracted into the store's training split and kept
as raw footage (see `pseudovad.data.ingested`); rejected ones go to `ingest.quarantine` with a
`<name>.reason.txt`. Nothing is half-added: arrays, raw files, manifest and log are committed
together at the end, the log last. `pseudovad ingest` and every retraining round (CLI and
Kubeflow, `pseudovad.retrain`) run `ingest_footage`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from pseudovad.config import Config
from pseudovad.data import ingested
from pseudovad.data.sources import VIDEO_EXTS, Source, TruncatedVideo, natural_key, read_video, video_info
from pseudovad.data.store import MANIFEST, FrameStore, VideoEntry, complete_store
from pseudovad.errors import DataError, StorageError
from pseudovad.data.extraction import extract_source, extraction_params
from pseudovad.files import exclusive_lock, sha256_file, staged_outputs, write_text
from pseudovad.storage import S3, S3Object, parse_s3_uri, redact

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    source: str                       # s3://bucket/key or the local file's path: the log's identity
    name: str                         # path below the prefix/folder: becomes the video id
    size: int
    etag: str                         # S3 ETag; for local files size-mtime, which changes on rewrite
    obj: Optional[S3Object] = None
    local: Optional[Path] = None


class Rejected(Exception):
    """A file that is not usable footage; the message is the quarantine reason."""


def resolve_source(cfg: Config, source: Optional[str] = None) -> Optional[str]:
    """--source, then ingest.source, then s3://storage.bucket/storage.prefix."""
    if source or cfg.ingest.source:
        return source or cfg.ingest.source
    if cfg.storage.bucket:
        return f"s3://{cfg.storage.bucket}/{cfg.storage.prefix or ''}"
    return None


def _is_video(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_EXTS and not Path(name).name.startswith(".")


def list_candidates(cfg: Config, source: str) -> tuple[list[Candidate], int, Optional[S3]]:
    """Video files under the source, and how many other files were ignored."""
    if source.startswith("s3://"):
        bucket, prefix = parse_s3_uri(source)
        s3 = S3.from_config(cfg.storage, bucket=bucket)
        objects = s3.list(prefix)
        videos = [o for o in objects if _is_video(o.key)]
        cands = [Candidate(s3.uri(o.key), o.key[len(prefix):].lstrip("/") or Path(o.key).name, o.size, o.etag, obj=o)
                 for o in videos]
        return cands, len(objects) - len(videos), s3
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"{folder}: ingest source folder not found")
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: natural_key(p.as_posix()))
    videos = [p for p in files if _is_video(p.name)]
    cands = []
    for p in videos:
        st = p.stat()
        cands.append(Candidate(str(p.resolve()), p.relative_to(folder).as_posix(), st.st_size,
                               f"{st.st_size}-{st.st_mtime_ns}", local=p))
    return cands, len(files) - len(videos), None


def video_id(name: str, taken: set[str], today: str) -> str:
    """`ingest-<date>-<path below the prefix>`: readable, never equal to an existing id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).with_suffix("")).replace("/", "_")).strip("._-")
    base = f"ingest-{today}-{stem[:80] or 'video'}"
    vid, n = base, 2
    while vid in taken:
        vid, n = f"{base}-{n}", n + 1
    taken.add(vid)
    return vid


def check_header(path: Path, cfg: Config) -> dict[str, Any]:
    """Container-level checks, before paying for a full decode."""
    ig = cfg.ingest
    try:
        info = video_info(path)
    except DataError as e:
        raise Rejected(_reason(e, path)) from None
    side = min(info["width"], info["height"])
    if side < ig.min_size or max(info["width"], info["height"]) > ig.max_size:
        raise Rejected(f"frame size {info['width']}x{info['height']} outside ingest.min_size..max_size "
                       f"({ig.min_size}..{ig.max_size})")
    if not ig.min_fps <= info["fps"] <= ig.max_fps:
        raise Rejected(f"{info['fps']:g} fps outside ingest.min_fps..max_fps ({ig.min_fps:g}..{ig.max_fps:g})")
    return info


def check_decoded(frames: int, info: dict[str, Any], cfg: Config) -> None:
    """Long enough to learn from (a cut-off upload was refused while decoding: `read_video`)."""
    if frames < cfg.ingest.min_frames:
        raise Rejected(f"too short: {frames} decodable frames < ingest.min_frames ({cfg.ingest.min_frames})")


def _reason(e: Exception, path: Path) -> str:
    msg = str(e)
    return msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "_")).strip("._") or "video"


def _lock(root: Path):
    """One ingest per store at a time."""
    return exclusive_lock(root.with_name(f".{root.name}.lock"), f"ingest on {root}")


def _quarantine(qdir: Path, cand: Candidate, path: Path, checksum: str, reason: str, move: bool) -> Path:
    """Keep the rejected file and why, so an operator can fix or delete it; never in the store."""
    qdir.mkdir(parents=True, exist_ok=True)
    name = Path(_safe(cand.name))
    dest = qdir / f"{name.stem}-{checksum[:8]}{name.suffix}"
    if move:
        shutil.move(path, dest)
    else:
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copy2(path, tmp)
        os.replace(tmp, dest)
    write_text(dest.with_name(dest.name + ".reason.txt"),
               f"{reason}\nsource: {redact(cand.source)}\nsha256: {checksum}\nsize: {cand.size}\ntime: {_now()}\n")
    return dest


def _store_state(store: Path, cfg: Config, root: Path, accepted_ids: set[str]
                 ) -> tuple[list[VideoEntry], dict[str, Any]]:
    """Existing entries (minus ingested ones the log does not own) and manifest extras to keep."""
    if not (store / MANIFEST).is_file():
        return [], {}
    fs = FrameStore(store)
    params = extraction_params(cfg)
    if fs.params != params:
        raise DataError(f"{store / MANIFEST}: store was extracted with {fs.params}, params say {params}; "
                        "run `pseudovad extract` (or `dvc repro extract`) first")
    videos_dir = (root / ingested.VIDEOS).resolve()
    keep = [e for e in fs.entries
            if e.id in accepted_ids or Path(e.source).resolve().parent != videos_dir]
    extra = {k: v for k, v in fs.manifest.items() if k not in ("version", "params", "videos", "ingested")}
    return keep, extra


def _read_only_entries(store: Path) -> list[VideoEntry]:
    """--no-store still refuses footage the store already has (e.g. one of data.root's videos)."""
    try:
        return FrameStore(store).entries if (store / MANIFEST).is_file() else []
    except DataError:
        return []


def ingest_footage(cfg: Config, source: Optional[str] = None, store: str | Path | None = None,
                   root: str | Path | None = None, extract_frames: bool = True, progress: bool = True,
                   quarantine: str | Path | None = None) -> dict:
    """Ingest what is new under `source` (default: `resolve_source`) into `store` (and its raw
    footage folder `root`), rejected files into `quarantine` (default: `ingest.quarantine`);
    without `extract_frames`, fetch and validate only. Returns the summary: what was listed,
    known, ingested, quarantined, and which downloads failed (the rest is kept)."""
    store = Path(store or cfg.data.store)
    qdir = Path(quarantine or cfg.ingest.quarantine)
    root = Path(root) if root else ingested.root_for(cfg, store)
    source = resolve_source(cfg, source)
    summary: dict[str, Any] = {"source": redact(source) if source else None, "store": str(store), "root": str(root),
                               "listed": 0, "ignored": 0, "known": 0, "duplicates": 0,
                               "ingested": [], "quarantined": [], "failed": [], "frames": 0}
    with _lock(root):
        data = ingested.load_log(root)
        if not (root / ingested.LOG).is_file():
            ingested.save_log(root, data)    # an empty, valid footage folder: what extract and DVC expect
        orphans = ingested.remove_orphans(root, data)
        if orphans:
            log.info("removed %d raw file(s) left by an interrupted ingest: %s", len(orphans), ", ".join(orphans))
        if source is None:
            return summary
        cands, summary["ignored"], s3 = list_candidates(cfg, source)
        summary["listed"] = len(cands)
        # the store changes in one commit at the end of this block (files.staged_outputs): new
        # arrays are decoded into its scratch folder, which becomes the whole new store
        with contextlib.ExitStack() as outputs:
            stage = outputs.enter_context(staged_outputs(store.parent, f"ingest into {store}")) if extract_frames else None
            staged = stage / ".work" if stage is not None else None
            accepted_ids = {r["video"] for r in ingested.accepted(data)}
            entries, extra = _store_state(store, cfg, root, accepted_ids) if extract_frames else ([], {})
            existing = entries if extract_frames else _read_only_entries(store)
            known = {e.checksum: e.id for e in existing}
            known.update({r["checksum"]: r.get("video") or r.get("file") for r in data["objects"]
                          if r.get("status") in ("ingested", "quarantined") and r.get("checksum")})
            taken = {e.id for e in existing if e.split == "training"} | accepted_ids
            today = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
            incoming = root.with_name(f".{root.name}.incoming")
            new_entries: list[VideoEntry] = []
            new_records: list[dict[str, Any]] = []
            accepted_files: list[tuple[Path, Path]] = []   # (staged raw file, final place in root)
            try:
                for cand in tqdm(cands, desc="ingest", unit="file", disable=None if progress else True):
                    if ingested.find(data, cand.source, cand.etag, cand.size):
                        summary["known"] += 1
                        continue
                    rec = {"source": cand.source, "etag": cand.etag, "size": cand.size, "time": _now()}
                    if s3 is not None:
                        try:
                            got = s3.download(cand.obj, incoming / _safe(cand.name))
                        except StorageError as e:
                            summary["failed"].append({"source": redact(cand.source), "error": str(e)})
                            log.warning("%s", e)
                            continue
                        path, checksum, owned = got.path, got.sha256, True
                    else:
                        path, checksum, owned = cand.local, sha256_file(cand.local), False
                    rec["checksum"] = checksum
                    if checksum in known:
                        rec.update(status="duplicate", of=known[checksum])
                        new_records.append(rec)
                        summary["duplicates"] += 1
                        if owned:
                            path.unlink(missing_ok=True)
                        continue
                    vid = None
                    try:
                        info = check_header(path, cfg)
                        vid = video_id(cand.name, taken, today)
                        if extract_frames:
                            try:
                                entry = extract_source(Source(vid, "training", path, "video"), staged, cfg,
                                                       checksum, progress=False)
                            except TruncatedVideo as e:   # never kept here: ingest runs unattended
                                raise Rejected(e.reason) from None
                            except DataError as e:
                                raise Rejected(_reason(e, path)) from None
                            frames = entry.frames
                        else:
                            try:
                                frames = sum(1 for _ in read_video(path, tuple(cfg.data.size), cfg.data.channels))
                            except TruncatedVideo as e:
                                raise Rejected(e.reason) from None
                            except DataError as e:
                                raise Rejected(_reason(e, path)) from None
                        check_decoded(frames, info, cfg)
                    except Rejected as why:
                        if vid:
                            taken.discard(vid)
                            if staged is not None:
                                (staged / "training" / f"{vid}.npy").unlink(missing_ok=True)
                        qpath = _quarantine(qdir, cand, path, checksum, str(why), move=owned)
                        rec.update(status="quarantined", reason=str(why), file=str(qpath))
                        new_records.append(rec)
                        known[checksum] = str(qpath)
                        summary["quarantined"].append({"source": redact(cand.source), "reason": str(why),
                                                       "file": str(qpath)})
                        log.warning("quarantined %s: %s", redact(cand.source), why)
                        continue
                    rel = (ingested.VIDEOS / f"{vid}{Path(cand.name).suffix.lower()}").as_posix()
                    held = incoming / "accepted" / Path(rel).name
                    held.parent.mkdir(parents=True, exist_ok=True)
                    if owned:
                        os.replace(path, held)
                    else:
                        shutil.copy2(path, held)
                    accepted_files.append((held, root / rel))
                    rec.update(status="ingested", video=vid, file=rel, frames=frames, fps=info["fps"],
                               width=info["width"], height=info["height"])
                    new_records.append(rec)
                    known[checksum] = vid
                    if extract_frames:
                        entry.source = str(root / rel)
                        new_entries.append(entry)
                    summary["ingested"].append({"video": vid, "source": redact(cand.source), "frames": frames})
                    summary["frames"] += frames

                if new_records:
                    # commit: raw files, then the store (when the block ends), then the log (the commit point)
                    for held, final in accepted_files:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(held, final)
                    data["objects"].extend(new_records)
                    if extract_frames and new_entries:   # the scratch folder becomes the new store
                        extra["ingested"] = ingested.manifest_records(data)
                        complete_store(staged, store, entries + new_entries, extraction_params(cfg), extra)
                        os.replace(staged, stage / store.name)
            finally:
                shutil.rmtree(incoming / "accepted", ignore_errors=True)
                if incoming.is_dir() and not any(incoming.iterdir()):
                    incoming.rmdir()   # partial downloads, if any, stay for the next run to resume
        if new_records:
            ingested.save_log(root, data)
    return summary


def describe(s: dict) -> list[str]:
    lines = []
    if s["source"] is None:
        return ["ingest: no source configured (set ingest.source, or storage.bucket and storage.prefix); "
                "nothing to ingest"]
    seen = f"{s['listed']} video file(s) under {s['source']}"
    if s["ignored"]:
        seen += f", {s['ignored']} other file(s) ignored"
    if not s["ingested"] and not s["quarantined"] and not s["failed"]:
        lines.append(f"ingest: nothing new ({seen}; {s['known']} seen before, {s['duplicates']} duplicate content)")
        return lines
    lines.append(f"ingest: {len(s['ingested'])} new video(s), {s['frames']} frames → {s['store']} (training); "
                 f"{len(s['quarantined'])} quarantined, {len(s['failed'])} failed, "
                 f"{s['known'] + s['duplicates']} already known ({seen})")
    for q in s["quarantined"]:
        lines.append(f"  quarantined {q['source']}: {q['reason']} → {q['file']}")
    for f in s["failed"]:
        lines.append(f"  not downloaded (rerun resumes): {f['error']}")
    return lines


def counts(s: dict) -> dict[str, int]:
    """The summary's numbers: files listed, seen before, duplicates, frames added, and how many
    were ingested, quarantined and failed."""
    out = {k: s[k] for k in ("listed", "known", "duplicates", "frames")}
    out.update({k: len(s[k]) for k in ("ingested", "quarantined", "failed")})
    return out
