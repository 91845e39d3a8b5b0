"""params.yaml → typed, validated config.

Every stage reads its settings from one `Config` so that the CLI, `dvc repro` and the Kubeflow
components see the same values. Validation happens here, once, so a typo in params.yaml fails
before any data is touched, with a one-line message naming the key.

The dataclass defaults are the papers' settings (the `gpu` profile: 16×256×256 clips, widths
96/128/256/256). The repository's params.yaml is the CPU profile on synthetic footage.

A validated Config is never changed in place: `with_values(cfg, {"train.init": …})` returns a new,
re-validated one, and `set_keys` is the one way a dotted key is set in a params tree.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from pseudovad.errors import ConfigError
from pseudovad.methods.spec import DEFAULT as DEFAULT_METHOD
from pseudovad.methods.spec import get_method, method_names


def setting(default: Any, description: str) -> Any:
    """A params key's default and what it means: the one place a key is described (the params
    reference, docs/reference/params.md, is generated from it by `documented_keys`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"description": description})
    return field(default=default, metadata={"description": description})


@dataclass
class DataConfig:
    """Where footage lives and how frames become model input."""

    name: str = setting("synthetic", "dataset name: the MLflow experiment is `pseudovad-<name>`; "
                                     "registry tags and reports name it")
    root: str = setting("data/synthetic", "dataset root: `<root>/{training,testing}/frames/<video>/*` or "
                                          "`…/videos/*` (the benchmark layout, see *Datasets*)")
    labels: Optional[str] = setting(None, "frame-label file (`.npy`, `.mat`, `.csv`); null: found in "
                                          "`<root>/testing`")
    pixel_masks: Optional[str] = setting(None, "`.npz` of the test videos' pixel masks → `pixel_auc` in "
                                               "metrics.json (format: *Evaluation protocol*); null: none")
    store: str = setting("data/store", "frame store folder: one uint8 `.npy` per video + `manifest.json`")
    size: list[int] = setting([256, 256], "[H, W] frames are resized to")
    channels: int = setting(1, "1 grayscale, 3 colour (RGB)")
    clip_len: int = setting(16, "frames per LTGPA clip (MAE-NCT: `model.mae.in_frames` + 1)")
    scored_index: int = setting(8, "0-based index of the scored frame in a clip (the 9th of 16)")
    clip_stride: int = setting(1, "step between training clip starts (`evaluate` always scores every clip)")
    frame_step: int = setting(1, "temporal subsampling inside a clip")
    num_workers: Optional[int] = setting(None, "DataLoader worker processes; null: none on CPU (the step "
                                               "needs every core), up to 4 on CUDA")


@dataclass
class SyntheticConfig:
    """The offline default dataset: walkers on a textured street, anomalies in the test split."""

    out: str = setting("data/synthetic", "where `synthesize` writes")
    seed: int = setting(0, "scene and walker seed")
    train_videos: int = setting(4, "training videos")
    test_videos: int = setting(4, "test videos")
    frames: int = setting(120, "frames per video")
    height: int = setting(120, "frame height in pixels")
    width: int = setting(160, "frame width in pixels")
    fps: int = setting(10, "video frame rate")
    walkers: int = setting(4, "mean number of people in view")
    noise: float = setting(4.0, "std of per-frame sensor noise, in grey levels")
    anomaly_fraction: float = setting(0.35, "share of each test video covered by anomalous events "
                                            "(> 0.3 gives two events per video, else one)")


@dataclass
class LTGPAConfig:
    """LTGPA's F and G (paper Tables 3–6)."""

    variant: str = setting("video", "`video` (3D conv clips) or `image` (2D conv, one-class images)")
    width: list[int] = setting([96, 128, 256, 256], "F's encoder widths (the decoder mirrors them); "
                                                    "`data.size` must be divisible by 2^len(width)")
    g_width: list[int] = setting([96, 128, 256], "G's encoder widths")
    reconstruct: str = setting("clip", "`clip`: F reconstructs the clip (the paper) | `motion`: F sees and "
                                       "reconstructs the clip minus its per-pixel temporal mean, which is added "
                                       "back (the static scene is not F's to code; video variant only)")


@dataclass
class MAEConfig:
    """MAE-NCT's ViT encoder + one-layer linear decoder."""

    patch_size: int = setting(16, "ViT patch side in pixels; divides `data.size`")
    embed_dim: int = setting(768, "ViT width; divisible by `heads`")
    depth: int = setting(12, "transformer blocks")
    heads: int = setting(12, "attention heads")
    mlp_ratio: float = setting(4.0, "MLP hidden width / `embed_dim`")
    in_frames: int = setting(4, "past frames stacked as input; the next one is predicted and scored")
    pretrained: Optional[str] = setting(None, "local timm / SimMIM ViT state_dict loaded by `train` "
                                              "(never downloaded)")
    predict: str = setting("frame", "`frame`: decode the next frame (the paper) | `change`: decode its change "
                                    "from the last input frame, which is added back (an output parametrisation)")


@dataclass
class ModelConfig:
    """Which detector, and its network."""

    method: str = setting(DEFAULT_METHOD, "the detection method (one module each in `pseudovad/methods/`)")
    ltgpa: LTGPAConfig = field(default_factory=LTGPAConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)


@dataclass
class PseudoConfig:
    """How pseudo anomalies are made."""

    kind: str = setting("learned", "LTGPA's pseudo anomalies: `none` (baseline), `gaussian`, `learned` (G); "
                                   "comparison rows `skip` (LNTRA skip frames), `patch` (LNTRA moving patches)")
    p: float = setting(0.5, "probability that a batch is pseudo-anomalous")
    lam: float = setting(0.1, "λ: weight of the noise-norm reward in G's loss (image variant: 5)")
    sigma: float = setting(0.1, "σ of Gaussian pseudo noise (paper: 0.1, 0.5, 1)")
    jumps: list[int] = setting([2, 3, 4, 5], "`skip`: frame jumps, one drawn per clip, each ≥ 2 "
                                             "(LNTRA, STEAL: 2 3 4 5)")
    patch_max_size: float = setting(0.5, "`patch`: largest patch side as a share of the frame side, "
                                         "in (0, 1] (LNTRA α)")
    patch_max_move: int = setting(10, "`patch`: largest step per frame and axis, px (LNTRA β = 10 at "
                                      "256×256; scale it with the frame, ≈ 4 at 64×96)")
    patch_source: Optional[str] = setting(None, "`patch`: folder of object images (e.g. CIFAR-100 as png); "
                                                "null: built-in procedural textured shapes")
    mask_ratio: float = setting(0.75, "MAE-NCT: share of mask patches replaced by the mask token "
                                      "(paper: Ped2 0.75, Avenue 0.25, ShanghaiTech 0.75)")
    mask_patch: int = setting(32, "MAE-NCT: mask patch side in pixels; a multiple of "
                                  "`model.mae.patch_size`, divides `data.size`")
    mode: str = setting("nct", "MAE-NCT: `nct` (masks + KL consistency), `none` (no pseudo anomalies), "
                               "`prob` (a masked batch with probability `pseudo.p`, no KL)")
    lambda_n: float = setting(1.0, "MAE-NCT: weight of the normal-input term")
    lambda_p: float = setting(1.0, "MAE-NCT: weight of the masked-input term")
    lambda_cst: float = setting(0.3, "MAE-NCT: weight of the bidirectional-KL consistency term")


@dataclass
class TrainConfig:
    """`train`: the training loop, its speed options and its outputs."""

    epochs: int = setting(60, "epochs")
    batch_size: int = setting(4, "clips per batch (image variant: 256)")
    lr: float = setting(1e-4, "learning rate of F (Adam for LTGPA, AdamW for MAE-NCT)")
    g_lr: Optional[float] = setting(None, "G's learning rate; null: `train.lr`")
    weight_decay: float = setting(0.0, "AdamW weight decay (MAE-NCT paper: 0.05)")
    warmup_epochs: int = setting(0, "linear learning-rate warm-up epochs (MAE-NCT paper: 10)")
    lr_schedule: Optional[str] = setting(None, "`constant` or `cosine` (half cosine to 0 after the warm-up, "
                                               "per step); null: the method's paper schedule (LTGPA constant, "
                                               "MAE-NCT cosine)")
    max_steps: int = setting(0, "stop after this many steps; 0: no cap")
    max_clips_per_epoch: int = setting(0, "subsample each epoch to this many clips; 0: all")
    checkpoint_every: int = setting(200, "steps between checkpoints (also at every epoch end)")
    amp: str = setting("auto", "`auto`: bf16 autocast where the CPU (AMX / avx512_bf16) or GPU has bf16, "
                               "else fp32; `bf16`; `off` (old `false` / `true` = off / bf16)")
    memory_format: str = setting("auto", "`channels_last`, `contiguous`; `auto`: the layout measured faster "
                                         "for the model kind and device")
    pseudo_loss: str = setting("reconstruct_normal", "LTGPA pseudo batches: `reconstruct_normal` (F(X^P) → X^N: "
                                                     "LTGPA, LNTRA) or `maximize` (STEAL: −‖F(X^P) − X^P‖²)")
    compile: bool = setting(False, "`torch.compile` (inductor) the models; on CPU not worth it")
    init: Optional[str] = setting(None, "warm start: a `model.pt` path or `models:/NAME@ALIAS`")
    out: str = setting("runs/train", "output folder: model.pt, metrics.json, provenance.json, history.json, "
                                     "checkpoints/")
    cifar_root: Optional[str] = setting(None, "image variant: folder of the CIFAR-10 python batches")
    normal_class: int = setting(0, "image variant: the normal class (0–9)")
    val_fraction: float = setting(0.1, "validation (calibration) data: a tail of each training video (or of "
                                       "the normal images); used when at least one clip long")
    holdout_fraction: float = setting(0.0, "the end of each training video held out from training and "
                                           "calibration, for evaluate's label-free check (a split by time); "
                                           "0: none, as in the papers (train on all training footage)")


@dataclass
class EvaluateConfig:
    """`evaluate`: the papers' protocol on the labelled test split, and the label-free check on the
    held-out end of the training videos."""

    out: str = setting("runs/evaluate", "metrics.json, provenance.json, scores.csv, roc.csv, plots/")
    batch_size: int = setting(8, "clips per forward pass")
    top_k: int = setting(4, "frames in `plots/topk.png` (0: no figure)")
    videos: list[str] = setting([], "test video ids to evaluate; []: all (`--videos` overrides)")
    score: str = setting("frame", "`frame` (the papers' whole-frame PSNR), `region` (worst window) or `fused` "
                                  "(model + motion residual, each standardised on normal validation footage): "
                                  "what scores.csv, roc.csv and the plots show; metrics.json has all the model allows")
    region_grid: list[int] = setting([4, 6], "rows, cols of the region score's half-overlapping windows")
    bootstrap: int = setting(1000, "resamples of the test videos for each AUC's 95% interval; 0: none")
    protocol: str = setting("official", "`official`: only frames a clip scores count in the AUCs (the papers' "
                                        "evaluation); `padded`: every frame, edge frames carrying the nearest "
                                        "scored frame's score (the numbers before)")
    inject: list[str] = setting(["object", "speed", "appearance"], "label-free check: the kinds of anomalies "
                                "injected into the held-out footage (`object`, `speed`, `appearance`)")
    inject_seed: int = setting(0, "where and how the anomalies are injected (the same per seed)")
    fps: Optional[float] = setting(None, "frame rate for per-hour figures where the store has none (frame "
                                         "folders); null: the videos' own")


@dataclass
class InferenceConfig:
    """How every scoring pass runs (evaluate, score, tune trials, train's validation PSNR and
    calibration): one setting, so the calibration in model.pt and `score` see the same arithmetic."""

    amp: str = setting("auto", "`auto`: bf16 autocast where the CPU or GPU has bf16, else fp32; `bf16`; "
                               "`off` (fp32)")
    memory_format: str = setting("auto", "`channels_last`, `contiguous`; `auto`: the layout measured faster "
                                         "for the model kind and device")


@dataclass
class TrackingConfig:
    """MLflow tracking."""

    uri: str = setting("sqlite:///mlflow.db", "MLflow tracking store; `MLFLOW_TRACKING_URI` overrides it")
    artifact_location: str = setting("mlruns", "artifact folder of experiments created on a local store "
                                               "(made absolute)")
    experiment: Optional[str] = setting(None, "experiment name; null: `pseudovad-<data.name>`")
    enabled: bool = setting(True, "false: no MLflow runs (`register` then refuses to run)")


@dataclass
class RegistryConfig:
    """`register`: the model version and the promotion gate."""

    model_name: Optional[str] = setting(None, "registered model; null: `pseudovad-<model.method>`")
    min_delta: float = setting(0.0, "`champion` moves only if auc_micro beats it by ≥ this (and > 0) on the "
                                    "same test set")
    beat_floor: bool = setting(True, "refuse a version whose auc_micro does not beat its training-free floor "
                                     "(`auc_floor`: frame difference / temporal residual on the same frames)")
    max_false_alarm_rise: float = setting(0.01, "without labels: the largest rise allowed in the share of "
                                                "held-out normal frames flagged, against the champion on the "
                                                "same footage")
    max_synthetic_auc_drop: Optional[float] = setting(None, "without labels: the largest fall allowed in the "
                                                            "injected-anomaly AUC against the champion; null (the "
                                                            "default): not checked, since on Ped2 and Ped1 that "
                                                            "AUC did not track the real one (docs/results.md)")
    out: str = setting("runs/register", "folder of `decision.json`")


@dataclass
class ScoreConfig:
    """`score`: new footage, recorded or live."""

    threshold: Optional[float] = setting(None, "flag frames with score ≥ this, in [0, 1]; null: 0.99 when "
                                               "calibrated, no flags with minmax (`--threshold` overrides)")
    normalization: str = setting("calibrated", "`calibrated` (normal-footage PSNR stored with the model) or "
                                               "`minmax` (per video, offline only)")
    min_segment: int = setting(3, "flagged runs shorter than this many frames are dropped")
    batch_size: int = setting(8, "clips per forward pass (more: faster, that many frames more lookahead)")
    shift_share: float = setting(0.5, "domain shift: warn when this share of frames lies outside the "
                                      "calibration's PSNR range")
    shift_margin_db: float = setting(3.0, "domain shift: the least distance (dB) beyond the calibration's PSNR "
                                          "range that counts as outside (the margin is max(q95 − q05, this))")
    shift_window: int = setting(250, "live: scored frames the domain-shift check looks at each time")
    queue_frames: int = setting(16, "live: frames held between the camera and the scorer; beyond, the oldest "
                                    "is dropped")
    reconnect_max_s: float = setting(30.0, "live: longest wait between reconnects (backoff doubles from 0.5 s)")
    rotate_s: float = setting(3600.0, "live: a new scores CSV (and video) every this many seconds")
    keep_files: int = setting(24, "live: rotated CSVs / videos kept (the oldest are deleted)")
    alert_timeout_s: float = setting(5.0, "`--alert-url`: time-out of one POST")
    alert_retries: int = setting(3, "`--alert-url`: tries per alert (backoff 1 s, 2 s, …)")


@dataclass
class TuneConfig:
    """`tune`: the Ray Tune search, scored on validation videos only."""

    num_samples: int = setting(8, "random search: trials (× every grid point); grid search: ignored")
    max_epochs: int = setting(10, "epochs of every trial (ASHA's max_t)")
    grace_period: int = setting(1, "ASHA: epochs before a trial can be stopped")
    reduction_factor: float = setting(4.0, "ASHA: a trial must be in the top 1/factor at each rung")
    scheduler: str = setting("asha", "`asha` (early stopping) or `fifo`")
    search: str = setting("random", "`random`, `grid`, `optuna` / `hyperopt` (if installed)")
    val_videos: list[str] = setting([], "labelled test videos the search is scored on (required); the rest "
                                        "give `test_auc`")
    cpus_per_trial: float = setting(1.0, "CPUs per trial (and its torch threads)")
    gpus_per_trial: float = setting(0.0, "GPUs per trial; a fraction shares a GPU")
    max_concurrent: int = setting(0, "trials at once; 0: as many as the resources allow")
    max_failures: int = setting(1, "retries of a failing trial before it is reported")
    address: Optional[str] = setting(None, "Ray cluster (`ray://host:10001`, `host:6379`, `auto`); null: "
                                           "`RAY_ADDRESS` if set, else a fresh local Ray (`--address` overrides)")
    space: dict[str, Any] = setting({}, "params key → search spec (see *Hyper-parameter search*); {}: the "
                                        "method's default space")
    out: str = setting("runs/tune", "best_params.yaml, best_model.pt, results.csv, metrics.json, "
                                    "provenance.json, search/, trials/")


@dataclass
class StorageConfig:
    """S3: footage in, DVC data out. Credentials come only from the AWS environment, never from params."""

    endpoint_url: Optional[str] = setting(None, "S3-compatible endpoint (MinIO, Ceph, …); null: AWS. "
                                                "`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` override it")
    bucket: Optional[str] = setting(None, "bucket with the footage (and, by default, the DVC remote)")
    prefix: str = setting("footage/", "where new footage is dropped")
    region: str = setting("us-east-1", "S3 region; `AWS_REGION` / `AWS_DEFAULT_REGION` override it")
    dvc_remote: Optional[str] = setting(None, "DVC remote for `dvc push` / `pull`; null: "
                                              "`s3://<storage.bucket>/dvc`")
    max_attempts: int = setting(5, "tries per S3 call (botocore standard retries) and per download "
                                   "(Range resumes)")


@dataclass
class IngestConfig:
    """`ingest`: which new footage is accepted into the training split."""

    source: Optional[str] = setting(None, "`s3://bucket/prefix` or a local folder; null: "
                                          "`s3://<storage.bucket>/<storage.prefix>`")
    min_frames: int = setting(32, "videos with fewer decodable frames are quarantined")
    min_size: int = setting(32, "smallest accepted frame side in pixels (the smaller side ≥ this)")
    max_size: int = setting(8192, "largest accepted frame side in pixels (the larger side ≤ this)")
    min_fps: float = setting(1.0, "lowest accepted frame rate")
    max_fps: float = setting(240.0, "highest accepted frame rate")
    quarantine: str = setting("data/quarantine", "rejected files and their `<name>.reason.txt`")
    warm_start: bool = setting(True, "a retraining round starts from the champion's weights; false, or no "
                                     "champion yet: from `train.init` (null: scratch)")
    root: Optional[str] = setting(None, "accepted raw footage + `ingest.json`; null: `<data.store>-ingested` "
                                        "(what dvc.yaml tracks)")


@dataclass
class Config:
    """Every params key. The defaults are the papers' settings; params.yaml is the CPU profile."""

    seed: int = setting(0, "seeds numpy / torch for training and sampling")
    device: str = setting("auto", "`auto` (CUDA if present), `cpu`, `cuda` (`--device` overrides)")
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys → values, for logging params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, d: dict[str, Any]) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if isinstance(v, dict) and k != "space":
                    walk(key + ".", v)
                else:
                    out[key] = v

        walk("", self.to_dict())
        return out

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"pseudovad-{self.data.name}"

    @property
    def registered_model_name(self) -> str:
        return self.registry.model_name or f"pseudovad-{self.model.method}"


# ----------------------------------------------------------------------------------------------
# What each key means (the params reference page is generated from this)

@dataclass(frozen=True)
class KeyDoc:
    """One params key (or, with type "section", one section) as the reference documents it."""

    key: str
    type: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()


def documented_keys() -> list[KeyDoc]:
    """Every section and key of the params tree in params.yaml's order: its type (with its choices),
    the code default and its description. The one way the docs read what a key means: a key whose
    field has no description comes back with description "" (the docs tests refuse that)."""
    out: list[KeyDoc] = []

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                doc = tp.__doc__ or ""
                if doc.startswith(tp.__name__ + "("):     # dataclass's generated signature, not a text
                    doc = ""
                out.append(KeyDoc(key, "section", None, " ".join(doc.split())))
                walk(tp, key + ".")
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            out.append(KeyDoc(key, _type_label(tp), default, f.metadata.get("description", ""),
                              tuple(_CHOICES.get(key, method_names() if key == "model.method" else ()))))

    walk(Config, "")
    return out


def _type_label(tp: Any) -> str:
    """A field's type as the reference writes it: `int`, `list[int]`, `str or null`."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        return f"{_type_label(args[0])} or null"
    if typing.get_origin(tp) in (list, dict):
        return f"{typing.get_origin(tp).__name__}[{', '.join(_type_label(a) for a in typing.get_args(tp))}]"
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


# ----------------------------------------------------------------------------------------------
# Building the typed tree from plain dicts

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


# Keys that used to be booleans: the old YAML values keep their meaning. YAML 1.1 also reads an
# unquoted `off` / `on` as a boolean, so `-p inference.amp=off` arrives as False.
_LEGACY_BOOLS = {"train.amp": {False: "off", True: "bf16"}, "inference.amp": {False: "off", True: "bf16"}}


def _coerce(key: str, tp: Any, value: Any) -> Any:
    if isinstance(value, bool) and key in _LEGACY_BOOLS:
        return _LEGACY_BOOLS[key][value]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(key, inner[0], value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in values:
        if k not in names:
            raise ConfigError(f"{prefix}{k}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(prefix + k, hints[k], v) for k, v in values.items()}
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """CLI override values are YAML scalars/lists: `3`, `0.1`, `true`, `[64,64]`, `null`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_override(assignment: str) -> tuple[str, Any]:
    """`key=value` (a CLI -p, a pipeline's `overrides`) → (dotted key, YAML value)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r}: expected key=value")
    key, _, raw = assignment.partition("=")
    return key.strip(), _parse_value(raw)


def set_keys(tree: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a params tree with dotted keys set, in order: {"pseudo.lam": 0.2} sets
    tree["pseudo"]["lam"]. Missing sections are created; the tree is not validated here."""
    out = copy.deepcopy(dict(tree))
    for key, value in values.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{key}: {p} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def with_values(cfg: Config, values: Mapping[str, Any]) -> Config:
    """A new, re-validated Config: `cfg` with the dotted keys in `values` set; `cfg` is unchanged."""
    return from_dict(set_keys(cfg.to_dict(), values))


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "space":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------------
# Range checks: one place, one message per key

# the kinds of anomalies evaluate's label-free check can inject (`pseudovad.data.inject` makes them)
INJECT_KINDS = ("object", "speed", "appearance")

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "model.ltgpa.variant": ("video", "image"),
    "pseudo.kind": ("none", "gaussian", "learned", "skip", "patch"),
    "pseudo.mode": ("nct", "none", "prob"),
    "train.pseudo_loss": ("reconstruct_normal", "maximize"),
    "score.normalization": ("calibrated", "minmax"),
    "tune.scheduler": ("asha", "fifo"),
    "evaluate.score": ("frame", "region", "fused"),
    "evaluate.protocol": ("official", "padded"),
    "tune.search": ("random", "grid", "optuna", "hyperopt"),
    "train.amp": ("auto", "bf16", "off"),
    "train.memory_format": ("auto", "channels_last", "contiguous"),
    "inference.amp": ("auto", "bf16", "off"),
    "inference.memory_format": ("auto", "channels_last", "contiguous"),
}


def _get(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for p in dotted.split("."):
        node = getattr(node, p)
    return node


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def lr_schedule(cfg: Config) -> str:
    """The learning-rate schedule's shape: `train.lr_schedule`, or the method's paper schedule
    (LTGPA: constant Adam; MAE-NCT: warm-up + cosine) when it is null."""
    if cfg.train.lr_schedule is not None:
        return cfg.train.lr_schedule
    return get_method(cfg.model.method).lr_schedule


def validate(cfg: Config) -> Config:
    for key, choices in _CHOICES.items():
        v = _get(cfg, key)
        _check(v in choices, key, f"must be one of {', '.join(choices)}, got {v!r}")
    d = cfg.data
    _check(len(d.size) == 2 and all(s >= 8 for s in d.size), "data.size", f"must be [H, W] with H, W ≥ 8, got {d.size}")
    _check(d.channels in (1, 3), "data.channels", f"must be 1 or 3, got {d.channels}")
    _check(d.clip_len >= 2, "data.clip_len", f"must be ≥ 2, got {d.clip_len}")
    _check(0 <= d.scored_index < d.clip_len, "data.scored_index", f"must be in [0, clip_len), got {d.scored_index}")
    _check(d.clip_stride >= 1, "data.clip_stride", f"must be ≥ 1, got {d.clip_stride}")
    _check(d.frame_step >= 1, "data.frame_step", f"must be ≥ 1, got {d.frame_step}")
    _check(d.num_workers is None or d.num_workers >= 0, "data.num_workers", f"must be ≥ 0 or null, got {d.num_workers}")
    s = cfg.synthetic
    _check(s.train_videos >= 1, "synthetic.train_videos", f"must be ≥ 1, got {s.train_videos}")
    _check(s.test_videos >= 0, "synthetic.test_videos", f"must be ≥ 0 (0: no labelled test split), got {s.test_videos}")
    _check(s.frames >= 16, "synthetic.frames", f"must be ≥ 16, got {s.frames}")
    _check(s.height >= 32 and s.width >= 32, "synthetic.height", "frames must be at least 32×32")
    _check(s.fps >= 1, "synthetic.fps", f"must be ≥ 1, got {s.fps}")
    _check(0.0 < s.anomaly_fraction < 1.0, "synthetic.anomaly_fraction", f"must be in (0, 1), got {s.anomaly_fraction}")
    _check(s.noise >= 0, "synthetic.noise", f"must be ≥ 0, got {s.noise}")
    p = cfg.pseudo
    _check(0.0 <= p.p <= 1.0, "pseudo.p", f"must be in [0, 1], got {p.p}")
    _check(p.lam >= 0, "pseudo.lam", f"must be ≥ 0, got {p.lam}")
    _check(p.sigma > 0, "pseudo.sigma", f"must be > 0, got {p.sigma}")
    _check(len(p.jumps) >= 1 and all(j >= 2 for j in p.jumps), "pseudo.jumps",
           f"must be a non-empty list of jumps ≥ 2 (a jump of 1 is the normal clip), got {p.jumps}")
    _check(0.0 < p.patch_max_size <= 1.0, "pseudo.patch_max_size",
           f"must be in (0, 1] (a share of the frame side), got {p.patch_max_size}")
    _check(p.patch_max_move >= 0, "pseudo.patch_max_move", f"must be ≥ 0, got {p.patch_max_move}")
    _check(0.0 < p.mask_ratio < 1.0, "pseudo.mask_ratio", f"must be in (0, 1), got {p.mask_ratio}")
    _check(p.mask_patch >= 1, "pseudo.mask_patch", f"must be ≥ 1, got {p.mask_patch}")
    for k in ("lambda_n", "lambda_p", "lambda_cst"):
        _check(getattr(p, k) >= 0, f"pseudo.{k}", f"must be ≥ 0, got {getattr(p, k)}")
    t = cfg.train
    _check(t.epochs >= 1, "train.epochs", f"must be ≥ 1, got {t.epochs}")
    _check(t.batch_size >= 1, "train.batch_size", f"must be ≥ 1, got {t.batch_size}")
    _check(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    _check(t.g_lr is None or t.g_lr > 0, "train.g_lr", f"must be > 0, got {t.g_lr}")
    _check(t.weight_decay >= 0, "train.weight_decay", f"must be ≥ 0, got {t.weight_decay}")
    _check(t.warmup_epochs >= 0, "train.warmup_epochs", f"must be ≥ 0, got {t.warmup_epochs}")
    _check(t.lr_schedule in (None, "constant", "cosine"), "train.lr_schedule",
           f"must be constant, cosine or null (the method's paper schedule), got {t.lr_schedule!r}")
    _check(t.max_steps >= 0, "train.max_steps", f"must be ≥ 0, got {t.max_steps}")
    _check(t.max_clips_per_epoch >= 0, "train.max_clips_per_epoch", f"must be ≥ 0, got {t.max_clips_per_epoch}")
    _check(t.checkpoint_every >= 1, "train.checkpoint_every", f"must be ≥ 1, got {t.checkpoint_every}")
    _check(0 <= t.normal_class <= 9, "train.normal_class", f"must be in [0, 9], got {t.normal_class}")
    _check(0.0 <= t.val_fraction < 1.0, "train.val_fraction", f"must be in [0, 1), got {t.val_fraction}")
    _check(0.0 <= t.holdout_fraction < 1.0 and t.val_fraction + t.holdout_fraction < 1.0, "train.holdout_fraction",
           f"must be in [0, 1) with train.val_fraction + it < 1, got {t.holdout_fraction}")
    _check(cfg.evaluate.batch_size >= 1, "evaluate.batch_size", "must be ≥ 1")
    _check(cfg.evaluate.top_k >= 0, "evaluate.top_k", "must be ≥ 0")
    rg = cfg.evaluate.region_grid
    _check(len(rg) == 2 and all(isinstance(x, int) and 1 <= x for x in rg) and rg[0] <= d.size[0] and rg[1] <= d.size[1],
           "evaluate.region_grid", f"must be [rows, cols] with 1 ≤ rows ≤ H and 1 ≤ cols ≤ W of data.size {d.size}, got {rg}")
    _check(cfg.evaluate.bootstrap >= 0, "evaluate.bootstrap", f"must be ≥ 0, got {cfg.evaluate.bootstrap}")
    unknown = [k for k in cfg.evaluate.inject if k not in INJECT_KINDS]
    _check(not unknown, "evaluate.inject", f"unknown kind {', '.join(map(repr, unknown))} (known: {', '.join(INJECT_KINDS)})")
    _check(len(set(cfg.evaluate.inject)) == len(cfg.evaluate.inject), "evaluate.inject",
           f"lists a kind more than once: {cfg.evaluate.inject}")
    _check(cfg.evaluate.fps is None or cfg.evaluate.fps > 0, "evaluate.fps", f"must be > 0 or null, got {cfg.evaluate.fps}")
    _check(cfg.registry.max_false_alarm_rise >= 0, "registry.max_false_alarm_rise",
           f"must be ≥ 0, got {cfg.registry.max_false_alarm_rise}")
    _check(cfg.registry.max_synthetic_auc_drop is None or cfg.registry.max_synthetic_auc_drop >= 0,
           "registry.max_synthetic_auc_drop", f"must be ≥ 0 or null, got {cfg.registry.max_synthetic_auc_drop}")
    _check(cfg.registry.min_delta >= 0, "registry.min_delta", f"must be ≥ 0, got {cfg.registry.min_delta}")
    _check(cfg.score.threshold is None or 0.0 <= cfg.score.threshold <= 1.0, "score.threshold",
           f"must be in [0, 1] (scores are), got {cfg.score.threshold}")
    _check(cfg.score.min_segment >= 1, "score.min_segment", "must be ≥ 1")
    _check(cfg.score.batch_size >= 1, "score.batch_size", "must be ≥ 1")
    sc = cfg.score
    _check(0.0 < sc.shift_share <= 1.0, "score.shift_share", f"must be in (0, 1], got {sc.shift_share}")
    _check(sc.shift_window >= 1, "score.shift_window", "must be ≥ 1")
    _check(sc.shift_margin_db >= 0, "score.shift_margin_db", "must be ≥ 0")
    _check(sc.queue_frames >= 1, "score.queue_frames", "must be ≥ 1")
    _check(sc.reconnect_max_s > 0, "score.reconnect_max_s", "must be > 0")
    _check(sc.rotate_s > 0, "score.rotate_s", "must be > 0")
    _check(sc.keep_files >= 1, "score.keep_files", "must be ≥ 1")
    _check(sc.alert_timeout_s > 0, "score.alert_timeout_s", "must be > 0")
    _check(sc.alert_retries >= 1, "score.alert_retries", "must be ≥ 1")
    _check(cfg.registry.model_name is None or bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", cfg.registry.model_name)),
           "registry.model_name", f"must be letters, digits, '.', '_', '-' (it goes into models:/NAME@ALIAS), "
           f"got {cfg.registry.model_name!r}")
    tu = cfg.tune
    _check(tu.num_samples >= 1, "tune.num_samples", "must be ≥ 1")
    _check(tu.max_epochs >= 1, "tune.max_epochs", "must be ≥ 1")
    _check(1 <= tu.grace_period <= tu.max_epochs, "tune.grace_period", "must be in [1, tune.max_epochs]")
    _check(tu.cpus_per_trial > 0, "tune.cpus_per_trial", "must be > 0")
    _check(tu.gpus_per_trial >= 0, "tune.gpus_per_trial", "must be ≥ 0")
    _check(tu.reduction_factor > 1, "tune.reduction_factor", f"must be > 1, got {tu.reduction_factor}")
    _check(tu.max_concurrent >= 0, "tune.max_concurrent", f"must be ≥ 0, got {tu.max_concurrent}")
    _check(tu.max_failures >= 0, "tune.max_failures", f"must be ≥ 0, got {tu.max_failures}")
    dup = sorted({v for v in tu.val_videos if tu.val_videos.count(v) > 1})
    _check(not dup, "tune.val_videos", f"lists {', '.join(dup)} more than once")
    ig = cfg.ingest
    _check(ig.min_frames >= 1, "ingest.min_frames", "must be ≥ 1")
    _check(0 < ig.min_size <= ig.max_size, "ingest.min_size", "must be in (0, ingest.max_size]")
    _check(0 < ig.min_fps <= ig.max_fps, "ingest.min_fps", "must be in (0, ingest.max_fps]")
    _check(cfg.storage.max_attempts >= 1, "storage.max_attempts", f"must be ≥ 1, got {cfg.storage.max_attempts}")
    for key in ("storage.endpoint_url", "storage.dvc_remote", "ingest.source"):
        v = _get(cfg, key)  # credentials belong in the environment, never in a committed params file
        _check(not (v and "://" in v and "@" in v.split("://", 1)[1].split("/", 1)[0]), key,
               "must not contain credentials (user:password@); use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")

    get_method(cfg.model.method).check(cfg)
    return cfg


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key written twice in one mapping is an error: plain YAML
    keeps the last silently, so a `train:` section pasted twice would drop the first one."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *base` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise ConfigError(f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} is written twice "
                                      f"(first on line {seen[key] + 1}); keep one")
                seen[key] = key_node.start_mark.line
            except TypeError:          # an unhashable key: YAML's own error follows
                continue
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str | Path) -> Any:
    """A params file's text → its tree; a duplicate key (naming both lines) or a YAML error is a
    ConfigError naming `source`."""
    loader = _StrictLoader(text)
    loader.name = str(source)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
    finally:
        loader.dispose()


def read_text_file(path: Path, what: str) -> str:
    """A text input file as UTF-8; a folder, an unreadable or a non-UTF-8 file is one ConfigError line."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a {what}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                          "save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror})") from None


def from_dict(values: dict[str, Any]) -> Config:
    return validate(_build(Config, values or {}))


def load(path: str | Path | None = "params.yaml", overrides: list[str] | None = None,
         extra: dict[str, Any] | None = None) -> Config:
    """Load params.yaml (missing file: all defaults), merge `extra`, then `key=value` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.exists():
            loaded = parse_yaml(read_text_file(p, "params file"), p)
            if loaded is not None and not isinstance(loaded, dict):
                raise ConfigError(f"{p}: expected a mapping at the top level")
            tree = loaded or {}
        elif str(path) != "params.yaml":
            raise ConfigError(f"{p}: params file not found")
    if extra:
        tree = deep_merge(tree, extra)
    for o in overrides or []:
        tree = set_keys(tree, dict([parse_override(o)]))
    return from_dict(tree)


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
