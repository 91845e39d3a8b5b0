"""Writing the annotated video: H.264 through an ffmpeg process, or what OpenCV itself encodes.

The OpenCV wheel the project pins (opencv-python-headless 5.0.0.93) has no H.264 encoder (its
FFmpeg knows only the hardware `h264_v4l2m2m`, which needs a device), and its `mp4v` (MPEG-4
Part 2) does not play in browsers. So the default for .mp4 is H.264 (libx264, yuv420p,
`+faststart`: browsers start playing before the whole file is there), encoded by the ffmpeg
binary the `imageio-ffmpeg` package ships, in its own process: encoding runs beside scoring
instead of inside it. VP9 in WebM (browsers play it too), MPEG-4 and Motion JPEG are encoded by
OpenCV and need no ffmpeg.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pseudovad.errors import ConfigError, DataError

# codec → (container suffixes it may go in, encoder)
CODECS: dict[str, tuple[tuple[str, ...], str]] = {
    "h264": ((".mp4", ".mkv", ".mov"), "ffmpeg"),
    "vp9": ((".webm",), "VP90"),
    "mp4v": ((".mp4", ".mov"), "mp4v"),
    "mjpg": ((".avi",), "MJPG"),
}
DEFAULT_CODEC = {".mp4": "h264", ".mkv": "h264", ".mov": "h264", ".webm": "vp9", ".avi": "mjpg"}
_FFMPEG_FORMAT = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}


def choose_codec(path: str | Path, codec: str | None = None) -> str:
    """The codec for `path` (`codec`, else the suffix's default), or a ConfigError naming both."""
    suffix = Path(path).suffix.lower()
    if codec is None:
        if suffix not in DEFAULT_CODEC:
            raise ConfigError(f"--video {path}: unknown video suffix {suffix!r} "
                              f"(use {', '.join(sorted(DEFAULT_CODEC))})")
        return DEFAULT_CODEC[suffix]
    if codec not in CODECS:
        raise ConfigError(f"--video-codec: {codec!r} is not one of {', '.join(CODECS)}")
    if suffix not in CODECS[codec][0]:
        raise ConfigError(f"--video {path}: codec {codec} goes in {', '.join(CODECS[codec][0])} files, not {suffix!r}")
    return codec


def even_size(w: int, h: int) -> tuple[int, int]:
    """H.264 in yuv420p needs even sides: the encoded size of a w×h picture (odd sides padded by 1)."""
    return w + (w & 1), h + (h & 1)


class VideoWriter:
    """BGR uint8 frames of one size → a video file, with `codec` (a key of CODECS)."""

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, codec: str, container: str | None = None):
        self.path = Path(path)
        self.width, self.height = size
        self.codec = codec
        self.frames = 0
        self._proc = self._cv = None
        if CODECS[codec][1] == "ffmpeg":
            self._open_ffmpeg(fps, container or self.path.suffix.lower())
        else:
            import cv2

            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*CODECS[codec][1]), float(fps),
                                       (self.width, self.height))
            if not self._cv.isOpened():
                raise DataError(f"{self.path}: OpenCV cannot encode {codec} here (try --video-codec h264)")

    def _open_ffmpeg(self, fps: float, container: str) -> None:
        try:
            import imageio_ffmpeg
        except ImportError:  # pinned in pyproject.toml; only a hand-made environment lacks it
            raise DataError("--video-codec h264 needs the imageio-ffmpeg package (pip install imageio-ffmpeg), "
                            "or use --video-codec vp9 with a .webm file") from None
        w, h = self.width, self.height
        pad = [] if (w, h) == even_size(w, h) else ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
        self._log = tempfile.TemporaryFile()
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", f"{fps:.6g}", "-i", "pipe:0",
               "-an", *pad, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", _FFMPEG_FORMAT.get(container, "mp4"), str(self.path)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def _ffmpeg_error(self, rc: int) -> DataError:
        self._log.seek(0)
        msg = " ".join(self._log.read().decode(errors="replace").split())[-300:]
        return DataError(f"{self.path}: ffmpeg (H.264 encoder) failed: {msg or f'exit code {rc}'}")

    def write(self, bgr: np.ndarray) -> None:
        if bgr.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame {bgr.shape[1]}x{bgr.shape[0]} for a {self.width}x{self.height} video")
        if self._cv is not None:
            self._cv.write(bgr)
        else:
            try:
                self._proc.stdin.write(np.ascontiguousarray(bgr).data)
            except BrokenPipeError:
                raise self._ffmpeg_error(self._proc.wait()) from None
        self.frames += 1

    def close(self) -> None:
        """Finish the file (H.264: wait for ffmpeg to write its index); raise if encoding failed."""
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
            try:
                if rc != 0:
                    raise self._ffmpeg_error(rc)
            finally:
                self._log.close()

    def abort(self) -> None:
        """Stop without finishing the file (the caller deletes it)."""
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self._log.close()
