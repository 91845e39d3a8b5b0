"""What a Kubeflow pipeline step (a component in `components/`) hands a stage and takes back.

The components only map KFP inputs and outputs to stage functions; the rules behind that mapping
live here, in the package the image installs, so the KFP steps and the tests run the same code:
the one table of pipeline parameters ↔ params keys (`PIPELINE_PARAMS`: `step_config` reads a
step's settings through it, `step_arguments` passes a pipeline's parameters on through it),
settings in layers (`from_layers`), checkpoints on a volume so a retried pod resumes
(`work_dir`), a finished stage's files copied into the step's output artifacts and its
checkpoints removed (`publish_training`, `publish_tuning`), and what the KFP UI shows (`numbers`,
`markdown`). Nothing here imports kfp: functions take and return paths and plain values.

KFP derives a component's interface from its function's literal signature (`inspect.signature`)
and ships the function's source into the pod (`inspect.getsource`), so signatures stay written
out; what each parameter *means* is said once, here.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from pseudovad import build, tracking
from pseudovad import config as config_mod
from pseudovad import results
from pseudovad.config import Config
from pseudovad.errors import ConfigError, DataError

# The Kubeflow parameter ↔ params key map, used by every component and pipeline: a pipeline
# parameter or component input of one of these names sets that params key (README: Pipeline
# parameters). "" keeps the params' value; `mlflow_uri` is also exported (see from_layers).
PIPELINE_PARAMS = {
    "method": "model.method", "pseudo_kind": "pseudo.kind", "lam": "pseudo.lam", "p": "pseudo.p",
    "sigma": "pseudo.sigma", "jumps": "pseudo.jumps", "patch_max_size": "pseudo.patch_max_size",
    "patch_max_move": "pseudo.patch_max_move", "patch_source": "pseudo.patch_source",
    "pseudo_loss": "train.pseudo_loss", "mask_ratio": "pseudo.mask_ratio", "epochs": "train.epochs", "init": "train.init",
    "tune_samples": "tune.num_samples", "tune_gpus_per_trial": "tune.gpus_per_trial",
    "min_delta": "registry.min_delta", "model_name": "registry.model_name",
    "warm_start": "ingest.warm_start", "quarantine_dir": "ingest.quarantine", "mlflow_uri": "tracking.uri",
    "dvc_remote": "storage.dvc_remote",
}
# The other inputs every step's settings come from: a params.yaml's text and `key=value` overrides.
SETTINGS = ("params", "overrides")

MODEL_METADATA = ("method", "size", "channels", "clip_len", "scored_index", "frame_step", "value_range",
                  "train_fingerprint", "data_version")
TRAIN_HISTORY = ("metrics.json", "provenance.json", "history.json")
TUNE_RESULTS = ("best_params.yaml", "results.csv", "metrics.json", "provenance.json")


def from_layers(params: str = "", typed: Optional[Mapping[str, Any]] = None, overrides: Iterable[str] = (),
                tuned: Optional[Mapping[str, Any]] = None, mlflow_uri: str = "") -> Config:
    """The validated Config of one pipeline step, from its layers of settings; later layers win:

    1. `params`: a params.yaml as text (empty: the code defaults, the papers' GPU settings);
    2. `typed`: the step's typed pipeline parameters, as dotted keys (`{"pseudo.lam": 0.2}`);
       a value of "" or None is left out, since KFP parameters cannot be None and "" is how a
       pipeline says "keep what params says" (e.g. `model_name`, `quarantine_dir`);
    3. `tuned`: the searched keys' best values when a tune step ran (its own base is not taken);
    4. `overrides`: `key=value` strings, any params key.

    `mlflow_uri` (when not empty) is the typed `tracking.uri`, and is exported as
    MLFLOW_TRACKING_URI too: that variable beats `tracking.uri` for every MLflow call, also the
    ones made without the config (resolving a models:/ URI), so the pipeline's server wins over
    one the image or the pod's environment names.
    """
    tree = config_mod.parse_yaml(params or "", "params") or {}
    if not isinstance(tree, dict):
        raise ConfigError("params: expected a mapping at the top level (a params.yaml's text)")
    layer = {k: v for k, v in (typed or {}).items() if v is not None and v != ""}
    if mlflow_uri:
        layer["tracking.uri"] = mlflow_uri
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    tree = config_mod.set_keys(tree, layer)
    if tuned:
        tree = config_mod.set_keys(tree, tuned)
    return config_mod.load(None, [str(o) for o in overrides], extra=tree)


def step_config(args: Mapping[str, Any], tuned: Optional[Mapping[str, Any]] = None) -> Config:
    """The Config of one step from its arguments (a component's `locals()`): `params`, then every
    argument named in `PIPELINE_PARAMS`, then `tuned`, then `overrides` (`from_layers`).

    Every component calls it first, so it is also where a step starts: the drift guard refuses
    an image of other code than the pipeline was compiled from (`build.check_compiled_from`),
    and the KFP run id (`run_id`, `dsl.PIPELINE_JOB_ID_PLACEHOLDER`) becomes an MLflow tag.
    """
    build.check_compiled_from(os.environ.get(build.ENV_COMPILED_FROM))
    if args.get("run_id"):
        os.environ[tracking.KFP_TAGS["kfp.run_id"]] = str(args["run_id"])
    typed = {PIPELINE_PARAMS[k]: v for k, v in args.items() if k in PIPELINE_PARAMS and k != "mlflow_uri"}
    return from_layers(args.get("params", ""), typed, args.get("overrides", ()), tuned, args.get("mlflow_uri", ""))


def step_arguments(pipeline_args: Mapping[str, Any], component: Any) -> dict[str, Any]:
    """The settings a pipeline passes to one of its steps: each of its parameters named in
    `PIPELINE_PARAMS` or `SETTINGS` that `component` takes (by its KFP interface)."""
    inputs = component.component_spec.inputs or {}
    return {k: v for k, v in pipeline_args.items() if k in inputs and (k in PIPELINE_PARAMS or k in SETTINGS)}


def tuned_values(folder: str | Path) -> dict[str, Any]:
    """The best values of a tune output folder (`best_config` in its results: provenance.json)."""
    path = Path(folder, results.METRICS)
    if not path.is_file():
        raise DataError(f"{path}: not found (not a tune output folder)")
    best = results.read(path).get("best_config")
    if not isinstance(best, dict):
        raise DataError(f"{path}: no best_config (the search finished no trial)")
    return best


def work_dir(checkpoint_dir: str, run_id: str, stage: str, artifact_path: str) -> Path:
    """Where a stage keeps its checkpoints: `<checkpoint_dir>/<run_id>/<stage>` on a volume, the
    same folder for a retried pod of the same run, which then resumes; without a volume, beside
    the step's output artifact (a retry starts over)."""
    if checkpoint_dir:
        return Path(checkpoint_dir, run_id or "run", stage)
    return Path(f"{artifact_path}.work")


def _move_out(work: Path, files: Mapping[str, str | Path]) -> None:
    """Copy work/<name> to each destination, then delete `work`: the outputs are out, and a
    finished stage's checkpoints would only fill the volume."""
    for name, dest in files.items():
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / name, dest)
    shutil.rmtree(work)


def publish_training(cfg: Config, work: str | Path, model_path: str | Path, history_dir: str | Path) -> dict:
    """Train's outputs into the step's artifacts: model.pt → `model_path`; metrics.json,
    provenance.json, history.json and the settings used (params.yaml) → `history_dir`.

    Returns {"model": the model's metadata for the UI, "summary": train's results (both files)}.
    """
    from pseudovad.models.model_file import read_model_file

    work = Path(work)
    _move_out(work, {"model.pt": model_path, **{n: Path(history_dir, n) for n in TRAIN_HISTORY}})
    Path(history_dir, "params.yaml").write_text(config_mod.dump(cfg))
    meta = read_model_file(model_path)["meta"]
    model = {k: meta[k] for k in MODEL_METADATA if k in meta}
    model["framework"] = "pytorch"
    return {"model": model, "summary": results.read(history_dir)}


def publish_tuning(work: str | Path, best_dir: str | Path) -> None:
    """Tune's verdict (best_params.yaml, results.csv, metrics.json) into the step's artifact;
    the trials' checkpoints go."""
    _move_out(Path(work), {n: Path(best_dir, n) for n in TUNE_RESULTS})


def store_metadata(cfg: Config, store: str | Path, version: Any = None) -> dict[str, Any]:
    """What the KFP UI shows for a frame store: counts, geometry, and its data versions as DVC
    hashes (`pseudovad.data.versioning`): `data_version` (the store, what dvc.lock records) and
    `evaluation_version` (its labelled test split alone: what the promotion gate compares).
    `version`: the store's `DirVersion` when the caller has it (no second hashing pass)."""
    from pseudovad.data import versioning
    from pseudovad.data.store import FrameStore

    fs = FrameStore(store)
    splits = sorted({e.split for e in fs.entries})
    version = version or versioning.dir_version(store)
    meta: dict[str, Any] = {
        "videos": {s: len(fs.videos(s)) for s in splits},
        "frames": {s: sum(e.frames for e in fs.videos(s)) for s in splits},
        "size": list(cfg.data.size), "channels": cfg.data.channels,
        "data_version": version.md5, "dvc_size": version.size, "dvc_nfiles": version.nfiles,
    }
    if any(e.labels for e in fs.videos("testing")):
        meta["evaluation_version"] = versioning.evaluation_version(store, version=version)
    return meta


def numbers(summary: Mapping[str, Any], keys: Optional[Iterable[str]] = None) -> dict[str, int | float]:
    """The numeric values of `summary` (of `keys` only, when given) for a KFP Metrics artifact,
    which takes numbers only: None (e.g. no macro AUC) and booleans are left out."""
    names = summary.keys() if keys is None else [k for k in keys if k in summary]
    return {k: summary[k] for k in names
            if isinstance(summary[k], (int, float)) and not isinstance(summary[k], bool)}


def markdown(title: str, text: str = "", data: Any = None, log: Iterable[str] = ()) -> str:
    """A step's Markdown report: a heading, a paragraph, log lines as a code block, `data` as YAML."""
    parts = [f"## {title}"]
    if text:
        parts.append(text)
    lines = list(log)
    if lines:
        parts.append("\n".join(f"    {line}" for line in lines))
    if data is not None:
        parts.append(f"```yaml\n{yaml.safe_dump(data, sort_keys=False)}```")
    return "\n\n".join(parts) + "\n"
