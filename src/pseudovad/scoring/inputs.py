"""What `score` reads: a video file or frame folder opened, and its sha256 computed beside scoring."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pseudovad.data.sources import IMAGE_EXTS, Source, frame_files, video_info
from pseudovad.errors import DataError


def open_input(path: str | Path) -> tuple[Source, float | None, int | None]:
    """(source, fps or None, frame count or None) for a video file or a frame folder."""
    p = Path(path)
    if p.is_dir():
        files = frame_files(p)
        if not files:
            raise DataError(f"{p}: no frames (expected {', '.join(sorted(IMAGE_EXTS))} files)")
        return Source(p.name, "score", p, "frames"), None, len(files)
    if p.is_file():
        info = video_info(p)
        fps = info["fps"] if 0 < info["fps"] < 1000 else None
        return Source(p.stem, "score", p, "video"), fps, (info["frames"] or None)
    raise DataError(f"{p}: no such video file or frame folder")



class InputHash:
    """sha256 of the input, computed in a thread while scoring runs (start-up does not wait)."""

    def __init__(self, src: Source):
        self.value: str | None = None
        self.error: str | None = None
        self._t = threading.Thread(target=self._run, args=(src,), daemon=True, name="pseudovad-hash")
        self._t.start()

    def _run(self, src: Source) -> None:
        try:
            self.value = src.checksum()
        except OSError as e:
            self.error = str(e)

    def result(self) -> dict[str, Any]:
        self._t.join()
        what = "the video file" if not self.error else None
        return {"sha256": self.value, "hashed": what, "error": self.error}

