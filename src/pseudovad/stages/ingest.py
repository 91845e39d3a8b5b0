"""`ingest`: add new normal footage from an S3 prefix or a local folder to the training frame store.

Lists the source, skips everything seen before, downloads (resumably) and validates the rest;
accepted files join the training split, rejected ones go to `ingest.quarantine` with a reason
(`pseudovad.data.ingest`). A run that finds nothing new says so and exits 0; downloads that still
fail after retries are listed and the command exits 1 (the rest is ingested).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pseudovad.config import Config
from pseudovad.data.ingest import describe, ingest_footage
from pseudovad.storage import configure_dvc_remote


def run(cfg: Config, source: Optional[str] = None, store: str | Path | None = None, root: str | Path | None = None,
        extract_frames: bool = True, progress: bool = True) -> dict:
    return ingest_footage(cfg, source, store, root, extract_frames, progress)


def add_arguments(p) -> None:
    p.add_argument("--source", help="s3://bucket/prefix or a local folder (default: ingest.source, "
                                    "else s3://storage.bucket/storage.prefix)")
    p.add_argument("--store", help="frame store to add to (default: data.store)")
    p.add_argument("--root", help="where accepted raw footage and its log are kept "
                                  "(default: ingest.root, else <data.store>-ingested)")
    p.add_argument("--no-store", action="store_true",
                   help="only fetch and validate into the footage folder; leave the frame store to "
                        "`extract` (what the dvc.yaml ingest stage does)")
    p.add_argument("--dvc-remote", action="store_true",
                   help="configure the DVC remote from storage.dvc_remote (endpoint from AWS_ENDPOINT_URL / "
                        "storage.endpoint_url, kept in .dvc/config.local) and exit")


def main(cfg: Config, args) -> int:
    if getattr(args, "dvc_remote", False):
        r = configure_dvc_remote(cfg)
        print(f"ingest: DVC remote {r['name']!r} → {r['url']}" + (f" (endpoint {r['endpoint']}, local config)"
                                                                  if r["endpoint"] else ""))
        return 0
    s = run(cfg, args.source, args.store, args.root, extract_frames=not args.no_store,
            progress=not os.environ.get("PSEUDOVAD_NO_PROGRESS"))
    for line in describe(s):
        print(line)
    return 1 if s["failed"] else 0
