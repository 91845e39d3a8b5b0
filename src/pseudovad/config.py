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


@dataclass
class DataConfig:
    """Where footage lives and how frames become model input."""

    name: str = "synthetic"                 # dataset name: MLflow experiment, registry tags
    root: str = "data/synthetic"            # <root>/{training,testing}/{frames/<video>/*, videos/*}
    labels: Optional[str] = None            # .npy / .mat / .csv; None: look inside <root>/testing
    pixel_masks: Optional[str] = None       # .npz of test pixel masks (evaluation.pixels); None: no pixel AUC
    store: str = "data/store"               # extracted frame store (one .npy per video + manifest)
    size: list[int] = field(default_factory=lambda: [256, 256])   # H, W after resize
    channels: int = 1                       # 1 = grayscale, 3 = color (RGB)
    clip_len: int = 16                      # frames per clip (LTGPA: 16; MAE-NCT: input frames + 1)
    scored_index: int = 8                   # 0-based index of the scored frame in a clip (9th frame)
    clip_stride: int = 1                    # step between training clip starts
    frame_step: int = 1                     # temporal subsampling inside a clip
    num_workers: Optional[int] = None       # DataLoader workers; None: 0 on CPU, up to 4 on CUDA


@dataclass
class SyntheticConfig:
    """The offline default dataset: walkers on a textured street, anomalies in the test split."""

    out: str = "data/synthetic"
    seed: int = 0
    train_videos: int = 4
    test_videos: int = 4
    frames: int = 120
    height: int = 120
    width: int = 160
    fps: int = 10
    walkers: int = 4                        # mean number of normal walkers in view
    noise: float = 4.0                      # std of per-frame sensor noise, in grey levels
    anomaly_fraction: float = 0.35          # share of each test video covered by anomalous events


@dataclass
class LTGPAConfig:
    """LTGPA's F and G (paper Tables 3–6)."""

    variant: str = "video"                  # video (3D conv) | image (2D conv, one-class images)
    width: list[int] = field(default_factory=lambda: [96, 128, 256, 256])   # F encoder widths
    g_width: list[int] = field(default_factory=lambda: [96, 128, 256])      # G encoder widths


@dataclass
class MAEConfig:
    """MAE-NCT's ViT encoder + one-layer linear decoder."""

    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    in_frames: int = 4                      # past frames stacked as input channels
    pretrained: Optional[str] = None        # local path to a timm-compatible ViT state_dict


@dataclass
class ModelConfig:
    method: str = "ltgpa"                   # ltgpa | mae_nct
    ltgpa: LTGPAConfig = field(default_factory=LTGPAConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)


@dataclass
class PseudoConfig:
    """How pseudo anomalies are made."""

    kind: str = "learned"                   # LTGPA: none | gaussian | learned | skip | patch (MAE-NCT always masks)
    p: float = 0.5                          # probability that a batch is pseudo-anomalous
    lam: float = 0.1                        # λ: weight of the noise-norm reward in G's loss
    sigma: float = 0.1                      # σ of Gaussian noise
    jumps: list[int] = field(default_factory=lambda: [2, 3, 4, 5])   # skip: frame jumps, one drawn per clip
    patch_max_size: float = 0.5             # patch: largest side, as a share of the frame side (LNTRA α)
    patch_max_move: int = 10                # patch: largest step per frame and axis, in pixels (LNTRA β)
    patch_source: Optional[str] = None      # patch: folder of object images; None: procedural textured shapes
    mask_ratio: float = 0.75                # MAE-NCT: share of mask patches replaced by the token
    mask_patch: int = 32                    # MAE-NCT: side of a mask patch in pixels
    mode: str = "nct"                       # MAE-NCT: nct | none (no pseudo) | prob (pseudo with prob p)
    lambda_n: float = 1.0
    lambda_p: float = 1.0
    lambda_cst: float = 0.3


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 4
    lr: float = 1e-4
    g_lr: Optional[float] = None            # G's learning rate; None: same as lr
    weight_decay: float = 0.0               # AdamW weight decay (MAE-NCT: 0.05)
    warmup_epochs: int = 0                  # linear lr warm-up epochs (MAE-NCT paper: 10)
    lr_schedule: Optional[str] = None       # constant | cosine; None: the method's paper schedule
                                            # (LTGPA constant, MAE-NCT cosine)
    max_steps: int = 0                      # stop after this many F steps; 0 = no limit
    max_clips_per_epoch: int = 0            # subsample the clip index each epoch; 0 = all
    checkpoint_every: int = 200             # steps between checkpoints (also at every epoch end)
    amp: str = "auto"                       # auto | bf16 | off: bf16 autocast (auto: where the device has bf16)
    memory_format: str = "auto"             # auto | channels_last | contiguous (auto: the measured faster one)
    pseudo_loss: str = "reconstruct_normal"  # LTGPA pseudo batches: reconstruct_normal (F(X^P) → X^N) | maximize (STEAL)
    compile: bool = False                   # torch.compile the models
    init: Optional[str] = None              # warm start: a model.pt or models:/NAME@ALIAS
    out: str = "runs/train"                 # checkpoints, metrics, model.pt
    cifar_root: Optional[str] = None        # image variant: CIFAR-10 python batches folder
    normal_class: int = 0                   # image variant: the one normal class
    val_fraction: float = 0.1               # held-out normal data: the tail of each training video
                                            # (video) or of the normal images (image variant)


@dataclass
class EvaluateConfig:
    out: str = "runs/evaluate"
    batch_size: int = 8
    top_k: int = 4                          # frames shown in the qualitative figure
    videos: list[str] = field(default_factory=list)   # restrict to these test videos; [] = all
    score: str = "frame"                    # frame (the papers' PSNR) | region (worst window): what the files show
    region_grid: list[int] = field(default_factory=lambda: [4, 6])   # rows, cols of the region score's windows
    bootstrap: int = 1000                   # resamples of the test videos for 95% intervals; 0 = none
    protocol: str = "official"              # official (only frames a clip scores count) | padded (every frame)


@dataclass
class InferenceConfig:
    """How every scoring pass runs (evaluate, score, tune trials, train's validation PSNR and
    calibration): one setting, so the calibration in model.pt and `score` see the same arithmetic."""

    amp: str = "auto"                       # auto | bf16 | off: bf16 autocast (auto: where the device has bf16)
    memory_format: str = "auto"             # auto | channels_last | contiguous (auto: the measured faster one)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"        # MLFLOW_TRACKING_URI overrides
    artifact_location: str = "mlruns"       # used when creating an experiment on a local store
    experiment: Optional[str] = None        # None: "pseudovad-<data.name>"
    enabled: bool = True


@dataclass
class RegistryConfig:
    model_name: Optional[str] = None        # None: "pseudovad-<method>"
    min_delta: float = 0.0                  # champion moves only if AUC beats it by ≥ this
    beat_floor: bool = True                 # refuse a version whose AUC does not beat its training-free floor
    out: str = "runs/register"


@dataclass
class ScoreConfig:
    threshold: Optional[float] = None       # flag frames above this score; None: calibrated
    normalization: str = "calibrated"       # calibrated | minmax
    min_segment: int = 3                    # frames: shorter flagged runs are dropped
    batch_size: int = 8
    shift_share: float = 0.5                # domain shift: warn when this share of frames lies outside the calibration's PSNR range
    shift_margin_db: float = 3.0            # domain shift: "outside" = beyond the range by max(q95 − q05, this) dB
    shift_window: int = 250                 # live: scored frames the domain-shift check looks at before it decides
    queue_frames: int = 16                  # live: frames held between the stream and the scorer; beyond, the oldest is dropped
    reconnect_max_s: float = 30.0           # live: longest wait between reconnects (backoff doubles from 0.5 s)
    rotate_s: float = 3600.0                # live: a new scores CSV (and video) every this many seconds
    keep_files: int = 24                    # live: rotated CSVs / videos kept (the oldest are deleted)
    alert_timeout_s: float = 5.0            # --alert-url: time-out of one POST
    alert_retries: int = 3                  # --alert-url: tries per alert (backoff 1 s, 2 s, …)


@dataclass
class TuneConfig:
    """Ray Tune search (`pseudovad tune`); the protocol is in README's tune section."""

    num_samples: int = 8                    # random: trials (× every grid point); grid: ignored
    max_epochs: int = 10                    # train.epochs of every trial; ASHA's max_t
    grace_period: int = 1                   # ASHA: epochs before a trial can be stopped
    reduction_factor: float = 4.0           # ASHA: keep the top 1/reduction_factor at each rung
    scheduler: str = "asha"                 # asha | fifo
    search: str = "random"                  # random | grid | optuna | hyperopt
    val_videos: list[str] = field(default_factory=list)   # labelled test videos tuned on; never in test_auc
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0             # a fraction shares a GPU between trials
    max_concurrent: int = 0                 # trials at once; 0 = as many as the resources allow
    max_failures: int = 1                   # retries of a failing trial before it is reported as errored
    address: Optional[str] = None           # None: RAY_ADDRESS, else a fresh local Ray; ray://… or auto for a cluster
    space: dict[str, Any] = field(default_factory=dict)   # dotted key → spec; {}: the method's default space
    out: str = "runs/tune"


@dataclass
class StorageConfig:
    endpoint_url: Optional[str] = None      # S3-compatible endpoint; AWS_ENDPOINT_URL overrides
    bucket: Optional[str] = None
    prefix: str = "footage/"
    region: str = "us-east-1"
    dvc_remote: Optional[str] = None        # s3://bucket/path for `dvc push` / `dvc pull`
    max_attempts: int = 5                   # tries per S3 call (botocore standard retries) and per download resume


@dataclass
class IngestConfig:
    source: Optional[str] = None            # local folder or s3://bucket/prefix
    min_frames: int = 32
    min_size: int = 32                      # smallest accepted frame side in pixels
    max_size: int = 8192
    min_fps: float = 1.0
    max_fps: float = 240.0
    quarantine: str = "data/quarantine"
    warm_start: bool = True
    root: Optional[str] = None              # accepted raw footage + ingest.json log; None: <data.store>-ingested


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"                    # auto | cpu | cuda
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

_CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "model.method": ("ltgpa", "mae_nct"),
    "model.ltgpa.variant": ("video", "image"),
    "pseudo.kind": ("none", "gaussian", "learned", "skip", "patch"),
    "pseudo.mode": ("nct", "none", "prob"),
    "train.pseudo_loss": ("reconstruct_normal", "maximize"),
    "score.normalization": ("calibrated", "minmax"),
    "tune.scheduler": ("asha", "fifo"),
    "evaluate.score": ("frame", "region"),
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


def ltgpa_downsampling(cfg: Config) -> tuple[int, int]:
    """Total (temporal, spatial) stride of F's encoder: every stride-2 layer halves the size."""
    n = len(cfg.model.ltgpa.width)
    if cfg.model.ltgpa.variant == "image":
        return 1, 2 ** n
    return 2 ** (n - 1), 2 ** n


def lr_schedule(cfg: Config) -> str:
    """The learning-rate schedule's shape: `train.lr_schedule`, or the method's paper schedule
    (LTGPA: constant Adam; MAE-NCT: warm-up + cosine) when it is null."""
    if cfg.train.lr_schedule is not None:
        return cfg.train.lr_schedule
    return "cosine" if cfg.model.method == "mae_nct" else "constant"


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
    for k in ("train_videos", "test_videos"):
        _check(getattr(s, k) >= 1, f"synthetic.{k}", f"must be ≥ 1, got {getattr(s, k)}")
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
    _check(cfg.evaluate.batch_size >= 1, "evaluate.batch_size", "must be ≥ 1")
    _check(cfg.evaluate.top_k >= 0, "evaluate.top_k", "must be ≥ 0")
    rg = cfg.evaluate.region_grid
    _check(len(rg) == 2 and all(isinstance(x, int) and 1 <= x for x in rg) and rg[0] <= d.size[0] and rg[1] <= d.size[1],
           "evaluate.region_grid", f"must be [rows, cols] with 1 ≤ rows ≤ H and 1 ≤ cols ≤ W of data.size {d.size}, got {rg}")
    _check(cfg.evaluate.bootstrap >= 0, "evaluate.bootstrap", f"must be ≥ 0, got {cfg.evaluate.bootstrap}")
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

    method = cfg.model.method
    if method == "ltgpa":
        lt = cfg.model.ltgpa
        _check(len(lt.width) >= 1 and all(w >= 1 for w in lt.width), "model.ltgpa.width", "must be a non-empty list of positive widths")
        _check(len(lt.g_width) >= 1 and all(w >= 1 for w in lt.g_width), "model.ltgpa.g_width", "must be a non-empty list of positive widths")
        t_div, s_div = ltgpa_downsampling(cfg)
        g_div = 2 ** len(lt.g_width)
        for side in d.size:
            _check(side % s_div == 0 and side % g_div == 0, "data.size",
                   f"{d.size} must be divisible by {max(s_div, g_div)} (the autoencoders' total stride)")
        _check(lt.variant == "video" or p.kind not in ("skip", "patch"), "pseudo.kind",
               f"{p.kind} pseudo anomalies are made of clips: they need model.ltgpa.variant video")
        if lt.variant == "video":
            g_t = 2 ** (len(lt.g_width) - 1)
            _check(d.clip_len % t_div == 0 and d.clip_len % g_t == 0, "data.clip_len",
                   f"{d.clip_len} must be divisible by {max(t_div, g_t)} (F's temporal stride)")
    else:
        m = cfg.model.mae
        _check(m.patch_size >= 1 and m.depth >= 1 and m.heads >= 1, "model.mae", "patch_size, depth and heads must be ≥ 1")
        _check(m.embed_dim % m.heads == 0, "model.mae.embed_dim", f"{m.embed_dim} must be divisible by heads ({m.heads})")
        _check(m.in_frames >= 1, "model.mae.in_frames", f"must be ≥ 1, got {m.in_frames}")
        for side in d.size:
            _check(side % m.patch_size == 0, "data.size", f"{d.size} must be divisible by model.mae.patch_size ({m.patch_size})")
            _check(side % p.mask_patch == 0, "data.size", f"{d.size} must be divisible by pseudo.mask_patch ({p.mask_patch})")
        _check(p.mask_patch % m.patch_size == 0, "pseudo.mask_patch",
               f"{p.mask_patch} must be a multiple of model.mae.patch_size ({m.patch_size})")
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
