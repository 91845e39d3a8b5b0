"""What `score` writes and where: the output files, the annotated video's place (inside or beside
the output folder, never over an input), scores.csv's provenance lines, a segment's record.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pseudovad.errors import ConfigError

OUTPUT_FILES = ("scores.csv", "timeline.png", "summary.json")
CSV_COLUMNS = ["frame", "time_s", "psnr", "score", "flagged"]


def frame_time(frame: int, fps: float | None) -> float | None:
    return round(frame / fps, 3) if fps else None


def video_target(out_dir: Path, video: str | Path, inputs: tuple[Path, ...] = ()) -> tuple[Path, Path | None]:
    """(video path, its path relative to `out_dir` if inside it) — or a ConfigError when `video`
    is not inside or beside `out_dir`, or is a path the stage itself writes or reads."""
    out, v = Path(out_dir).resolve(), Path(video).resolve()
    if v == out or out.is_relative_to(v):
        raise ConfigError(f"--video {video}: is the output folder {out_dir} (or holds it); give a file name")
    if v.is_dir():
        raise ConfigError(f"--video {video}: is a folder; give a file name")
    for i in inputs:
        if v == Path(i).resolve():
            raise ConfigError(f"--video {video}: is the input; score would overwrite it")
    if v.is_relative_to(out):
        rel = v.relative_to(out)
        if str(rel) in OUTPUT_FILES:
            raise ConfigError(f"--video {video}: score writes its own {rel} there; choose another name")
        return Path(video), rel
    if v.parent != out.parent:
        raise ConfigError(f"--video {video}: must be inside or beside --out {out_dir} (it is committed "
                          "together with the other outputs)")
    return Path(video), None


def check_input_kept(out_dir: Path, inputs: tuple[Path, ...], target: tuple[Path, Path | None] | None) -> None:
    """An input that committing the outputs would replace is refused: one inside --out when the
    folder is replaced as a whole (a video beside it), or one named like an output."""
    out = Path(out_dir).resolve()
    members = set(OUTPUT_FILES) | ({target[1].parts[0]} if target and target[1] is not None else set())
    for i in inputs:
        p = Path(i).resolve()
        if p == out or out.is_relative_to(p):
            raise ConfigError(f"--out {out_dir}: is (or holds) the input {i}")
        if p.is_relative_to(out) and ((target is not None and target[1] is None) or p.relative_to(out).parts[0] in members):
            raise ConfigError(f"--out {out_dir}: holds the input {i}, which writing the outputs would replace")


def csv_preamble(provenance: dict[str, Any], threshold: float | None, thr_source: str | None) -> list[str]:
    """The `# key: value` lines scores.csv starts with (pandas: read_csv(path, comment="#"))."""
    m, i, c = provenance["model"], provenance["input"], provenance.get("calibration") or {}
    lines = [f"pseudovad_version: {provenance['pseudovad_version']}",
             f"model: {m.get('ref')}", f"model_name: {m.get('name') or ''}", f"model_version: {m.get('version') or ''}",
             f"model_run_id: {m.get('run_id') or ''}", f"model_sha256: {m.get('sha256')}",
             f"input: {i.get('path')}", f"input_sha256: {i.get('sha256') or i.get('note') or ''}"]
    if c:
        lines.append(f"calibration: {c.get('source')} n={c.get('n')} psnr_min={c.get('psnr_min'):.3f} "
                     f"psnr_median={c.get('psnr_median'):.3f} psnr_max={c.get('psnr_max'):.3f}")
    else:
        lines.append(f"calibration: none ({provenance.get('normalization')})")
    lines.append(f"threshold: {'' if threshold is None else threshold} ({thr_source or 'none'})")
    return ["# " + " ".join(x.split()) for x in lines]



def segment_record(g: dict[str, Any], fps: float | None) -> dict[str, Any]:
    return {"start_frame": g["start_frame"], "end_frame": g["end_frame"], "frames": g["frames"],
            "start_s": frame_time(g["start_frame"], fps), "end_s": frame_time(g["end_frame"] + 1, fps),
            "peak_score": round(g["peak_score"], 6), "peak_frame": g["peak_frame"]}
