"""A stage folder's results: `metrics.json` holds numbers only, `provenance.json` beside it the texts.

metrics.json is a DVC metric: `dvc metrics show`, `dvc exp show` and `dvc exp diff` tabulate and
compare every value in it across experiments, so it holds numbers (or null where a number is not
defined, e.g. the macro AUC of single-class test videos), also nested in dicts (per-video AUCs).
What the numbers are about — the model file and its sha256, the method, the test and training
sets' fingerprints, the video ids, the pseudovad version and git commit — is provenance.json.

Every reader goes through `read`, which returns both files merged, so no caller needs to know
which file holds a key, and a folder written before the split (one mixed metrics.json) still
reads. Writers go through `write`, which refuses a text in the numbers (a programming error: name
the key in `texts`) and writes provenance.json first, metrics.json last.
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping

from pseudovad.errors import DataError
from pseudovad.files import write_json

METRICS, PROVENANCE = "metrics.json", "provenance.json"


def is_metric(value: Any) -> bool:
    """A number (not a bool), None, or a dict of such values, nested to any depth."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_metric(v) for k, v in value.items())
    return False


def git(*args: str, cwd: str | Path | None = None) -> str | None:
    """`git <args>` output in `cwd` (default the working folder), or None outside a repository."""
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def origin() -> dict[str, Any]:
    """The code that produced a result: the pseudovad version and the git commit (None outside git)."""
    from pseudovad import __version__

    return {"pseudovad_version": __version__, "git_commit": git("rev-parse", "HEAD")}


def split(record: Mapping[str, Any], texts: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, provenance): the keys named in `texts` are provenance, every other key must be a metric."""
    texts = set(texts)
    metrics = {k: v for k, v in record.items() if k not in texts}
    bad = sorted(k for k, v in metrics.items() if not is_metric(v))
    if bad:
        raise ValueError(f"{', '.join(bad)}: not numbers, so not for metrics.json (name them in `texts`)")
    return metrics, {k: v for k, v in record.items() if k in texts}


def write(folder: str | Path, record: Mapping[str, Any], texts: Iterable[str]) -> dict[str, Any]:
    """Write `record` into `folder` as metrics.json (numbers) + provenance.json (the `texts` keys and
    `origin()`); returns what `read` will return. Each file is written atomically, metrics.json last."""
    folder = Path(folder)
    metrics, provenance = split(record, texts)
    provenance = {**provenance, **{k: v for k, v in origin().items() if k not in provenance}}
    write_json(folder / PROVENANCE, provenance)
    write_json(folder / METRICS, metrics)
    return {**provenance, **metrics}


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read(path: str | Path) -> dict[str, Any]:
    """A stage's results: `path` is its metrics.json (or the folder holding it); provenance.json
    beside it is merged in when present. A key in both files is an error (the files disagree)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    metrics = _load(path)
    prov_path = path.with_name(PROVENANCE)
    provenance = _load(prov_path) if prov_path.is_file() else {}
    both = sorted(set(metrics) & set(provenance))
    if both:
        raise DataError(f"{path}: {', '.join(both)} also in {prov_path.name} (one of them is stale)")
    return {**provenance, **metrics}


def finite(value: Any) -> bool:
    """A finite number (not a bool): what MLflow and the gate can use."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
