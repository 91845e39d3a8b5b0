"""What a Kubeflow pipeline step (a component in `components/`) hands a stage and takes back.

The components only map KFP inputs and outputs to stage functions; the rules behind that mapping
live here, in the package the image installs, so the KFP steps and the tests run the same code:
the one table of typed pipeline parameters ↔ params keys (`TYPED`, `PIPELINE_PARAMS`:
`step_config` reads a step's settings through it, `step_arguments` passes a pipeline's parameters
on through it; a parameter left unset changes nothing), settings in layers (`from_layers`),
checkpoints on a volume so a retried pod resumes (`work_dir`), a finished stage's files copied
into the step's output artifacts and its checkpoints removed (`publish_training`,
`publish_tuning`), and what the KFP UI shows (`numbers`, `markdown`). Nothing here imports kfp:
functions take and return paths and plain values.

KFP derives a component's interface from its function's literal signature (`inspect.signature`)
and ships the function's source into the pod (`inspect.getsource`), so signatures stay written
out; what each parameter *means* is said once, here.
"""
from __future__ import annotations

import json
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

# The typed pipeline parameters, keyed by the params key each one sets: (parameter, type, meaning).
# The one rule (README, `pseudovad-kfp --help`): the params file decides; a typed parameter changes
# its key only when the user set it. KFP passes every parameter to every step, and a None default
# is refused by kfp.local, so each one defaults to UNSET of its type, a value its key never takes,
# and `typed_values` leaves those out. Component and pipeline signatures are written out (KFP reads
# them literally); tests/test_kfp_params.py checks them, docs/deploy/parameters.md's table and
# `pseudovad-kfp --help` against this table and the config's defaults.
TYPED: dict[str, tuple[str, type, str]] = {
    "model.method": ("method", str, "the detection method, e.g. `ltgpa`, `mae_nct` (any registered one)"),
    "pseudo.kind": ("pseudo_kind", str, "LTGPA pseudo anomalies: `none`, `gaussian`, `learned`, `skip`, `patch`"),
    "pseudo.lam": ("lam", float, "λ, G's noise-norm reward"),
    "pseudo.p": ("p", float, "share of pseudo-anomalous batches"),
    "pseudo.sigma": ("sigma", float, "σ of Gaussian noise"),
    "pseudo.jumps": ("jumps", list, "skip-frame jumps, one drawn per clip"),
    "pseudo.patch_max_size": ("patch_max_size", float, "largest patch side / frame side"),
    "pseudo.patch_max_move": ("patch_max_move", int, "largest patch step per frame and axis, px"),
    "pseudo.patch_source": ("patch_source", str, "folder of object images in the pod (image or volume); "
                                                 "null: built-in shapes"),
    "train.pseudo_loss": ("pseudo_loss", str, "`maximize`: STEAL's loss on pseudo batches"),
    "pseudo.mask_ratio": ("mask_ratio", float, "MAE-NCT masked share"),
    "train.epochs": ("epochs", int, "training epochs"),
    "train.init": ("init", str, "start from these weights: a model.pt in the pod or an MLflow URI"),
    "tune.num_samples": ("tune_samples", int, "trials of the search (space, epochs, validation videos: "
                                              "`tune.*` in the params)"),
    "tune.gpus_per_trial": ("tune_gpus_per_trial", float, "GPU share per trial: 0.5 runs two trials per GPU; "
                                                          "0: trials on CPU"),
    "registry.min_delta": ("min_delta", float, "promotion gate: AUC gain needed to move `champion`"),
    "registry.model_name": ("model_name", str, "registered model; null: `pseudovad-<method>`"),
    "ingest.warm_start": ("warm_start", bool, "retraining: start from the champion's weights (`true` / `false`; "
                                              "while there is none: `train.init`)"),
    "tracking.uri": ("mlflow_uri", str, "MLflow tracking server (runs, registry, champion); also exported "
                                        "as MLFLOW_TRACKING_URI in the step"),
    "storage.dvc_remote": ("dvc_remote", str, "the project's DVC remote (`s3://bucket/dvc`): frames pulled "
                                              "from / pushed to it; empty: an imported dataset"),
}
# Pipeline parameter → the params key it sets.
PIPELINE_PARAMS = {name: key for key, (name, _, _) in TYPED.items()}
# "Unset" for each type, and the annotation a signature gives each type: a boolean key is a string
# parameter ("true" / "false"), since a KFP Boolean has no value left over to mean unset.
UNSET: dict[type, Any] = {str: "", int: -1, float: -1.0, list: [], bool: ""}
SIGNATURE_TYPE: dict[type, type] = {str: str, int: int, float: float, list: list, bool: str}
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
    2. `typed`: the typed pipeline parameters the user set, as dotted keys (`{"pseudo.lam": 0.2}`,
       `typed_values`); a value of "" or None is left out;
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


def typed_values(args: Mapping[str, Any]) -> dict[str, Any]:
    """The typed parameters set among a step's arguments, as {params key: value}: every argument
    named in `PIPELINE_PARAMS` whose value is not UNSET for its type. A boolean key's string
    parameter is read as YAML ("false" → False; anything else is left for the config to refuse)."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        key = PIPELINE_PARAMS.get(name)
        if key is None or value is None:
            continue
        kind = TYPED[key][1]
        if not isinstance(value, bool) and value == UNSET[kind]:
            continue
        if kind is bool and isinstance(value, str):
            value = config_mod.parse_override(f"{key}={value}")[1]
        out[key] = value
    return out


def parameters_set(args: Mapping[str, Any]) -> dict[str, Any]:
    """What a step records of its typed parameters: {parameter: value} of those the user set,
    credentials in URLs redacted (the step's MLflow runs carry it as the tag `kfp.parameters_set`)."""
    names = {key: name for name, key in PIPELINE_PARAMS.items()}
    return {names[k]: tracking.redact(v) if isinstance(v, str) and "://" in v else v
            for k, v in typed_values(args).items()}


def step_config(args: Mapping[str, Any], tuned: Optional[Mapping[str, Any]] = None) -> Config:
    """The Config of one step from its arguments (a component's `locals()`): `params`, then the
    typed parameters the user set (`typed_values`), then `tuned`, then `overrides` (`from_layers`).

    Every component calls it first, so it is also where a step starts: the drift guard refuses
    an image of other code than the pipeline was compiled from (`build.check_compiled_from`),
    and the KFP run id (`run_id`, `dsl.PIPELINE_JOB_ID_PLACEHOLDER`) and the typed parameters
    set (`parameters_set`) become MLflow tags.
    """
    build.check_compiled_from(os.environ.get(build.ENV_COMPILED_FROM))
    if args.get("run_id"):
        os.environ[tracking.KFP_TAGS["kfp.run_id"]] = str(args["run_id"])
    os.environ[tracking.KFP_TAGS["kfp.parameters_set"]] = json.dumps(parameters_set(args), sort_keys=True)
    typed = typed_values(args)
    mlflow_uri = typed.pop("tracking.uri", "")
    return from_layers(args.get("params", ""), typed, args.get("overrides", ()), tuned, mlflow_uri)


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
