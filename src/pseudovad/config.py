"""params.yaml → typed, validated config.

Every stage reads its settings from one `Config` so that the CLI, `dvc repro` and the Kubeflow
components see the same values. Validation happens here, once (pydantic models), so a typo in
params.yaml fails before any data is touched, with a one-line message naming the key.

The defaults are the papers' settings (the `gpu` profile: 16×256×256 clips, widths
96/128/256/256). The repository's params.yaml is the CPU profile on synthetic footage.

A validated Config is never changed in place: `with_values(cfg, {"train.init": …})` returns a new,
re-validated one, and `set_keys` is the one way a dotted key is set in a params tree.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pseudovad.errors import ConfigError
from pseudovad.method_spec import DEFAULT as DEFAULT_METHOD
from pseudovad.method_spec import get_method, method_names, methods
from pseudovad.params_types import (Float, Int, KeyDoc, Section, Str, documented, is_section,  # noqa: F401
                                    one_line, rule)
from pseudovad.params_types import key_types as _key_types
from pseudovad.params_yaml import deep_merge, parse_override, parse_yaml, read_text_file, set_keys  # noqa: F401

# train.amp / inference.amp used to be booleans (YAML also reads an unquoted `off` as false).
Amp = Annotated[Literal["auto", "bf16", "off"],
                BeforeValidator(lambda v: ("bf16" if v else "off") if isinstance(v, bool) else v)]
Layout = Literal["auto", "channels_last", "contiguous"]


# the kinds of anomalies evaluate's label-free check can inject (`pseudovad.data.inject` makes them)
INJECT_KINDS = ("object", "speed", "appearance")


def _inject_kinds(kinds: list[str]) -> list[str]:
    unknown = [k for k in kinds if k not in INJECT_KINDS]
    if unknown:
        raise ValueError(f"unknown kind {', '.join(map(repr, unknown))} (known: {', '.join(INJECT_KINDS)})")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"lists a kind more than once: {kinds}")
    return kinds


def _once(videos: list[str]) -> list[str]:
    dup = sorted({v for v in videos if videos.count(v) > 1})
    if dup:
        raise ValueError(f"lists {', '.join(dup)} more than once")
    return videos


def _no_credentials(url: Optional[str]) -> bool:
    """Credentials belong in the environment, never in a committed params file."""
    return not (url and "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0])


FrameSize = Annotated[list[Int], rule(lambda s: len(s) == 2 and min(s) >= 8, "must be [H, W] with H, W ≥ 8, got {v}")]
Channels = Annotated[Int, rule(lambda c: c in (1, 3), "must be 1 or 3, got {v}")]
Jumps = Annotated[list[Int], rule(lambda j: j and min(j) >= 2,
                                  "must be a non-empty list of jumps ≥ 2 (a jump of 1 is the normal clip), got {v}")]
Schedule = Annotated[Optional[Str], rule(lambda s: s in (None, "constant", "cosine"),
                                         "must be constant, cosine or null (the method's paper schedule), got {v!r}")]
InjectKinds = Annotated[list[Str], AfterValidator(_inject_kinds)]
ModelName = Annotated[Optional[Str], rule(lambda n: n is None or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", n),
                                          "must be letters, digits, '.', '_', '-' (it goes into models:/NAME@ALIAS), "
                                          "got {v!r}")]
VideoIds = Annotated[list[Str], AfterValidator(_once)]
Url = Annotated[Optional[Str], rule(_no_credentials, "must not contain credentials (user:password@); "
                                                    "use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")]


class DataConfig(Section):
    """Where footage lives and how frames become model input."""

    name: Str = Field("synthetic", description="dataset name: the MLflow experiment is `pseudovad-<name>`; "
                                               "registry tags and reports name it")
    root: Str = Field("data/synthetic", description="dataset root: `<root>/{training,testing}/frames/<video>/*` or "
                                                    "`…/videos/*` (the benchmark layout, see *Datasets*)")
    labels: Optional[Str] = Field(None, description="frame-label file (`.npy`, `.mat`, `.csv`); null: found in "
                                                    "`<root>/testing`")
    pixel_masks: Optional[Str] = Field(None, description="`.npz` of the test videos' pixel masks → `pixel_auc` in "
                                                         "metrics.json (format: *Evaluation protocol*); null: none")
    store: Str = Field("data/store", description="frame store folder: one uint8 `.npy` per video + `manifest.json`")
    size: FrameSize = Field([256, 256], description="[H, W] frames are resized to")
    channels: Channels = Field(1, description="1 grayscale, 3 colour (RGB)")
    clip_len: Int = Field(16, ge=2, description="frames per LTGPA clip (MAE-NCT: `model.mae.in_frames` + 1)")
    scored_index: Int = Field(8, description="0-based index of the scored frame in a clip (the 9th of 16)")
    clip_stride: Int = Field(1, ge=1, description="step between training clip starts (`evaluate` always scores every "
                             "clip)")
    frame_step: Int = Field(1, ge=1, description="temporal subsampling inside a clip")
    num_workers: Optional[Int] = Field(None, ge=0, description="DataLoader worker processes; null: none on CPU (the "
                                       "step needs every core), up to 4 on CUDA")


class SyntheticConfig(Section):
    """The offline default dataset: walkers on a textured street, anomalies in the test split."""

    out: Str = Field("data/synthetic", description="where `synthesize` writes")
    seed: Int = Field(0, description="scene and walker seed")
    train_videos: Int = Field(4, ge=1, description="training videos")
    test_videos: Int = Field(4, ge=0, description="test videos")
    frames: Int = Field(120, ge=16, description="frames per video")
    height: Int = Field(120, ge=32, description="frame height in pixels")
    width: Int = Field(160, ge=32, description="frame width in pixels")
    fps: Int = Field(10, ge=1, description="video frame rate")
    walkers: Int = Field(4, description="mean number of people in view")
    noise: Float = Field(4.0, ge=0, description="std of per-frame sensor noise, in grey levels")
    anomaly_fraction: Float = Field(0.35, gt=0, lt=1, description="share of each test video covered by anomalous "
                                    "events (> 0.3 gives two events per video, else one)")


def _registered(name: str) -> str:
    if name not in method_names():
        raise ValueError(f"must be one of {', '.join(method_names())}, got {name!r}")
    return name


class ModelConfig(Section):
    """Which detector, and its network: `method`, and each registered method's own section
    (`model.ltgpa`, `model.mae`, …), declared by its spec in `pseudovad/methods/`."""

    model_config = ConfigDict(extra="allow", strict=True)   # the methods' sections, built below
    method: Annotated[Str, AfterValidator(_registered)] = Field(
        DEFAULT_METHOD, description="the detection method (one module each in `pseudovad/methods/`)")

    @model_validator(mode="before")
    @classmethod
    def _method_sections(cls, values: Any) -> Any:
        """Every registered method's section, validated by its own model (defaults where absent),
        so a params file may hold the sections of methods it does not run; any other key is unknown."""
        if not isinstance(values, dict):
            return values                       # pydantic says what it expected
        sections = method_sections()
        out = {k: v for k, v in values.items() if k == "method"}
        for key in values:
            if key != "method" and key not in sections:
                raise ConfigError(f"model.{key}: unknown key (known: {', '.join(sorted(['method', *sections]))})")
        for name, settings in sections.items():
            try:
                out[name] = settings.model_validate(values.get(name, {}))
            except ValidationError as e:
                raise ConfigError(f"model.{name}.{one_line(e, settings)}") from None
        return out


def method_sections() -> dict[str, type[Section]]:
    """`model.<section>` → its model, for every registered method that has one."""
    return {m.section: m.settings for m in methods() if m.section}


def key_types(section: type[BaseModel]) -> dict[str, Any]:
    """{key: its declared type} of a section, with the methods' sections under `model`."""
    return {**_key_types(section), **(method_sections() if section is ModelConfig else {})}


class PseudoConfig(Section):
    """How pseudo anomalies are made."""

    kind: Literal["none", "gaussian", "learned", "skip", "patch"] = Field("learned", description="LTGPA's pseudo "
                                                                          "anomalies: `none` (baseline), `gaussian`, "
                                                                          "`learned` (G); comparison rows `skip` "
                                                                          "(LNTRA skip frames), `patch` (LNTRA moving "
                                                                          "patches)")
    p: Float = Field(0.5, ge=0, le=1, description="probability that a batch is pseudo-anomalous")
    lam: Float = Field(0.1, ge=0, description="λ: weight of the noise-norm reward in G's loss (image variant: 5)")
    sigma: Float = Field(0.1, gt=0, description="σ of Gaussian pseudo noise (paper: 0.1, 0.5, 1)")
    jumps: Jumps = Field([2, 3, 4, 5], description="`skip`: frame jumps, one drawn per clip, each ≥ 2 "
                                                   "(LNTRA, STEAL: 2 3 4 5)")
    patch_max_size: Float = Field(0.5, gt=0, le=1, description="`patch`: largest patch side as a share of the frame "
                                  "side, in (0, 1] (LNTRA α)")
    patch_max_move: Int = Field(10, ge=0, description="`patch`: largest step per frame and axis, px (LNTRA β = 10 at "
                                                      "256×256; scale it with the frame, ≈ 4 at 64×96)")
    patch_source: Optional[Str] = Field(None, description="`patch`: folder of object images (e.g. CIFAR-100 as png); "
                                                          "null: built-in procedural textured shapes")
    mask_ratio: Float = Field(0.75, gt=0, lt=1, description="MAE-NCT: share of mask patches replaced by the mask token "
                                                            "(paper: Ped2 0.75, Avenue 0.25, ShanghaiTech 0.75)")
    mask_patch: Int = Field(32, ge=1, description="MAE-NCT: mask patch side in pixels; a multiple of "
                                                  "`model.mae.patch_size`, divides `data.size`")
    mode: Literal["nct", "none", "prob"] = Field("nct", description="MAE-NCT: `nct` (masks + KL consistency), `none` "
                                                 "(no pseudo anomalies), `prob` (a masked batch with probability "
                                                 "`pseudo.p`, no KL)")
    lambda_n: Float = Field(1.0, ge=0, description="MAE-NCT: weight of the normal-input term")
    lambda_p: Float = Field(1.0, ge=0, description="MAE-NCT: weight of the masked-input term")
    lambda_cst: Float = Field(0.3, ge=0, description="MAE-NCT: weight of the bidirectional-KL consistency term")


class TrainConfig(Section):
    """`train`: the training loop, its speed options and its outputs."""

    epochs: Int = Field(60, ge=1, description="epochs")
    batch_size: Int = Field(4, ge=1, description="clips per batch (image variant: 256)")
    lr: Float = Field(1e-4, gt=0, description="learning rate of F (Adam for LTGPA, AdamW for MAE-NCT)")
    g_lr: Optional[Float] = Field(None, gt=0, description="G's learning rate; null: `train.lr`")
    weight_decay: Float = Field(0.0, ge=0, description="AdamW weight decay (MAE-NCT paper: 0.05)")
    warmup_epochs: Int = Field(0, ge=0, description="linear learning-rate warm-up epochs (MAE-NCT paper: 10)")
    lr_schedule: Schedule = Field(None, description="`constant` or `cosine` (half cosine to 0 after the warm-up, "
                                                    "per step); null: the method's paper schedule (LTGPA constant, "
                                                    "MAE-NCT cosine)")
    max_steps: Int = Field(0, ge=0, description="stop after this many steps; 0: no cap")
    max_clips_per_epoch: Int = Field(0, ge=0, description="subsample each epoch to this many clips; 0: all")
    checkpoint_every: Int = Field(200, ge=1, description="steps between checkpoints (also at every epoch end)")
    amp: Amp = Field("auto", description="`auto`: bf16 autocast where the CPU (AMX / avx512_bf16) or GPU has bf16, "
                                         "else fp32; `bf16`; `off` (old `false` / `true` = off / bf16)")
    memory_format: Layout = Field("auto", description="`channels_last`, `contiguous`; `auto`: the layout measured "
                                  "faster for the model kind and device")
    pseudo_loss: Literal["reconstruct_normal", "maximize"] = Field("reconstruct_normal", description="LTGPA pseudo "
                                                                   "batches: `reconstruct_normal` (F(X^P) → X^N: "
                                                                   "LTGPA, LNTRA) or `maximize` (STEAL: −‖F(X^P) − "
                                                                   "X^P‖²)")
    compile: bool = Field(False, description="`torch.compile` (inductor) the models; on CPU not worth it")
    init: Optional[Str] = Field(None, description="warm start: a `model.pt` path or `models:/NAME@ALIAS`")
    out: Str = Field("runs/train", description="output folder: model.pt, metrics.json, provenance.json, history.json, "
                                               "checkpoints/")
    cifar_root: Optional[Str] = Field(None, description="image variant: folder of the CIFAR-10 python batches")
    normal_class: Int = Field(0, ge=0, le=9, description="image variant: the normal class (0–9)")
    val_fraction: Float = Field(0.1, ge=0, lt=1, description="validation (calibration) data: a tail of each training "
                                "video (or of the normal images); used when at least one clip long")
    holdout_fraction: Float = Field(0.0, ge=0, lt=1, description="the end of each training video held out from "
                                    "training and calibration, for evaluate's label-free check (a split by time); 0: "
                                    "none, as in the papers (train on all training footage)")


class EvaluateConfig(Section):
    """`evaluate`: the papers' protocol on the labelled test split, and the label-free check on the
    held-out end of the training videos."""

    out: Str = Field("runs/evaluate", description="metrics.json, provenance.json, scores.csv, roc.csv, plots/")
    batch_size: Int = Field(8, ge=1, description="clips per forward pass")
    top_k: Int = Field(4, ge=0, description="frames in `plots/topk.png` (0: no figure)")
    videos: list[Str] = Field([], description="test video ids to evaluate; []: all (`--videos` overrides)")
    score: Literal["frame", "region", "fused"] = Field("frame", description="`frame` (the papers' whole-frame PSNR), "
                                                       "`region` (worst window) or `fused` (model + motion residual, "
                                                       "each standardised on normal validation footage): what "
                                                       "scores.csv, roc.csv and the plots show; metrics.json has all "
                                                       "the model allows")
    region_grid: list[Int] = Field([4, 6], description="rows, cols of the region score's half-overlapping windows")
    bootstrap: Int = Field(1000, ge=0, description="resamples of the test videos for each AUC's 95% interval; 0: none")
    protocol: Literal["official", "padded"] = Field("official", description="`official`: only frames a clip scores "
                                                    "count in the AUCs (the papers' evaluation); `padded`: every "
                                                    "frame, edge frames carrying the nearest scored frame's score (the "
                                                    "numbers before)")
    inject: InjectKinds = Field(["object", "speed", "appearance"], description="label-free check: the kinds of "
                                "anomalies injected into the held-out footage (`object`, `speed`, `appearance`)")
    inject_seed: Int = Field(0, description="where and how the anomalies are injected (the same per seed)")
    fps: Optional[Float] = Field(None, gt=0, description="frame rate for per-hour figures where the store has none "
                                 "(frame folders); null: the videos' own")


class InferenceConfig(Section):
    """How every scoring pass runs (evaluate, score, tune trials, train's validation PSNR and
    calibration): one setting, so the calibration in model.pt and `score` see the same arithmetic."""

    amp: Amp = Field("auto", description="`auto`: bf16 autocast where the CPU or GPU has bf16, else fp32; `bf16`; "
                                         "`off` (fp32)")
    memory_format: Layout = Field("auto", description="`channels_last`, `contiguous`; `auto`: the layout measured "
                                  "faster for the model kind and device")


class TrackingConfig(Section):
    """MLflow tracking."""

    uri: Str = Field("sqlite:///mlflow.db", description="MLflow tracking store; `MLFLOW_TRACKING_URI` overrides it")
    artifact_location: Str = Field("mlruns", description="artifact folder of experiments created on a local store "
                                                         "(made absolute)")
    experiment: Optional[Str] = Field(None, description="experiment name; null: `pseudovad-<data.name>`")
    enabled: bool = Field(True, description="false: no MLflow runs (`register` then refuses to run)")


class RegistryConfig(Section):
    """`register`: the model version and the promotion gate."""

    model_name: ModelName = Field(None, description="registered model; null: `pseudovad-<model.method>`")
    min_delta: Float = Field(0.0, ge=0, description="`champion` moves only if auc_micro beats it by ≥ this (and > 0) "
                             "on the same test set")
    beat_floor: bool = Field(True, description="refuse a version whose auc_micro does not beat its training-free floor "
                                               "(`auc_floor`: frame difference / temporal residual on the same frames)")
    max_false_alarm_rise: Float = Field(0.01, ge=0, description="without labels: the largest rise allowed in the share "
                                        "of held-out normal frames flagged, against the champion on the same footage")
    max_synthetic_auc_drop: Optional[Float] = Field(None, ge=0, description="without labels: the largest fall allowed "
                                                    "in the injected-anomaly AUC against the champion; null (the "
                                                    "default): not checked, since on Ped2 and Ped1 that AUC did not "
                                                    "track the real one (docs/results.md)")
    out: Str = Field("runs/register", description="folder of `decision.json`")


class ScoreConfig(Section):
    """`score`: new footage, recorded or live."""

    threshold: Optional[Float] = Field(None, ge=0, le=1, description="flag frames with score ≥ this, in [0, 1]; null: "
                                       "0.99 when calibrated, no flags with minmax (`--threshold` overrides)")
    normalization: Literal["calibrated", "minmax"] = Field("calibrated", description="`calibrated` (normal-footage "
                                                           "PSNR stored with the model) or `minmax` (per video, "
                                                           "offline only)")
    min_segment: Int = Field(3, ge=1, description="flagged runs shorter than this many frames are dropped")
    batch_size: Int = Field(8, ge=1, description="clips per forward pass (more: faster, that many frames more "
                            "lookahead)")
    shift_share: Float = Field(0.5, gt=0, le=1, description="domain shift: warn when this share of frames lies outside "
                               "the calibration's PSNR range")
    shift_margin_db: Float = Field(3.0, ge=0, description="domain shift: the least distance (dB) beyond the "
                                   "calibration's PSNR range that counts as outside (the margin is max(q95 − q05, "
                                   "this))")
    shift_window: Int = Field(250, ge=1, description="live: scored frames the domain-shift check looks at each time")
    queue_frames: Int = Field(16, ge=1, description="live: frames held between the camera and the scorer; beyond, the "
                              "oldest is dropped")
    reconnect_max_s: Float = Field(30.0, gt=0, description="live: longest wait between reconnects (backoff doubles "
                                   "from 0.5 s)")
    rotate_s: Float = Field(3600.0, gt=0, description="live: a new scores CSV (and video) every this many seconds")
    keep_files: Int = Field(24, ge=1, description="live: rotated CSVs / videos kept (the oldest are deleted)")
    alert_timeout_s: Float = Field(5.0, gt=0, description="`--alert-url`: time-out of one POST")
    alert_retries: Int = Field(3, ge=1, description="`--alert-url`: tries per alert (backoff 1 s, 2 s, …)")


class TuneConfig(Section):
    """`tune`: the Ray Tune search, scored on validation videos only."""

    num_samples: Int = Field(8, ge=1, description="random search: trials (× every grid point); grid search: ignored")
    max_epochs: Int = Field(10, ge=1, description="epochs of every trial (ASHA's max_t)")
    grace_period: Int = Field(1, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: Float = Field(4.0, gt=1, description="ASHA: a trial must be in the top 1/factor at each rung")
    scheduler: Literal["asha", "fifo"] = Field("asha", description="`asha` (early stopping) or `fifo`")
    search: Literal["random", "grid", "optuna", "hyperopt"] = Field("random", description="`random`, `grid`, `optuna` "
                                                                    "/ `hyperopt` (if installed)")
    val_videos: VideoIds = Field([], description="labelled test videos the search is scored on (required); the rest "
                                                 "give `test_auc`")
    cpus_per_trial: Float = Field(1.0, gt=0, description="CPUs per trial (and its torch threads)")
    gpus_per_trial: Float = Field(0.0, ge=0, description="GPUs per trial; a fraction shares a GPU")
    max_concurrent: Int = Field(0, ge=0, description="trials at once; 0: as many as the resources allow")
    max_failures: Int = Field(1, ge=0, description="retries of a failing trial before it is reported")
    address: Optional[Str] = Field(None, description="Ray cluster (`ray://host:10001`, `host:6379`, `auto`); null: "
                                   "`RAY_ADDRESS` if set, else a fresh local Ray (`--address` overrides)")
    space: dict[Str, Any] = Field({}, description="params key → search spec (see *Hyper-parameter search*); {}: the "
                                                  "method's default space")
    out: Str = Field("runs/tune", description="best_params.yaml, best_model.pt, results.csv, metrics.json, "
                                              "provenance.json, search/, trials/")


class StorageConfig(Section):
    """S3: footage in, DVC data out. Credentials come only from the AWS environment, never from params."""

    endpoint_url: Url = Field(None, description="S3-compatible endpoint (MinIO, Ceph, …); null: AWS. "
                                                "`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` override it")
    bucket: Optional[Str] = Field(None, description="bucket with the footage (and, by default, the DVC remote)")
    prefix: Str = Field("footage/", description="where new footage is dropped")
    region: Str = Field("us-east-1", description="S3 region; `AWS_REGION` / `AWS_DEFAULT_REGION` override it")
    dvc_remote: Url = Field(None, description="DVC remote for `dvc push` / `pull`; null: "
                                              "`s3://<storage.bucket>/dvc`")
    max_attempts: Int = Field(5, ge=1, description="tries per S3 call (botocore standard retries) and per download "
                                                   "(Range resumes)")


class IngestConfig(Section):
    """`ingest`: which new footage is accepted into the training split."""

    source: Url = Field(None, description="`s3://bucket/prefix` or a local folder; null: "
                                          "`s3://<storage.bucket>/<storage.prefix>`")
    min_frames: Int = Field(32, ge=1, description="videos with fewer decodable frames are quarantined")
    min_size: Int = Field(32, gt=0, description="smallest accepted frame side in pixels (the smaller side ≥ this)")
    max_size: Int = Field(8192, description="largest accepted frame side in pixels (the larger side ≤ this)")
    min_fps: Float = Field(1.0, gt=0, description="lowest accepted frame rate")
    max_fps: Float = Field(240.0, description="highest accepted frame rate")
    quarantine: Str = Field("data/quarantine", description="rejected files and their `<name>.reason.txt`")
    warm_start: bool = Field(True, description="a retraining round starts from the champion's weights; false, or no "
                                               "champion yet: from `train.init` (null: scratch)")
    root: Optional[Str] = Field(None, description="accepted raw footage + `ingest.json`; null: `<data.store>-ingested` "
                                                  "(what dvc.yaml tracks)")


class Config(Section):
    """Every params key. The defaults are the papers' settings; params.yaml is the CPU profile."""

    seed: Int = Field(0, description="seeds numpy / torch for training and sampling")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto` (CUDA if present), `cpu`, `cuda` "
                                                   "(`--device` overrides)")
    data: DataConfig = Field(default_factory=DataConfig)
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pseudo: PseudoConfig = Field(default_factory=PseudoConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)

    @model_validator(mode="after")
    def _across_keys(self) -> Config:
        """The checks that read more than one key, once every key has its type and range."""
        check_across(self)
        check_method(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

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
# Checks that read more than one key

def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def check_across(cfg: Config) -> None:
    """What two keys of different sections (or of one) must agree on; the method's own: `check_method`."""
    d, t, rg = cfg.data, cfg.train, cfg.evaluate.region_grid
    _check(0 <= d.scored_index < d.clip_len, "data.scored_index", f"must be in [0, clip_len), got {d.scored_index}")
    _check(t.val_fraction + t.holdout_fraction < 1.0, "train.holdout_fraction",
           f"must be in [0, 1) with train.val_fraction + it < 1, got {t.holdout_fraction}")
    _check(len(rg) == 2 and 1 <= rg[0] <= d.size[0] and 1 <= rg[1] <= d.size[1], "evaluate.region_grid",
           f"must be [rows, cols] with 1 ≤ rows ≤ H and 1 ≤ cols ≤ W of data.size {d.size}, got {rg}")
    _check(cfg.tune.grace_period <= cfg.tune.max_epochs, "tune.grace_period", "must be in [1, tune.max_epochs]")
    _check(cfg.ingest.min_size <= cfg.ingest.max_size, "ingest.min_size", "must be in (0, ingest.max_size]")
    _check(cfg.ingest.min_fps <= cfg.ingest.max_fps, "ingest.min_fps", "must be in (0, ingest.max_fps]")


def lr_schedule(cfg: Config) -> str:
    """The learning-rate schedule's shape: `train.lr_schedule`, or the method's paper schedule
    (LTGPA: constant Adam; MAE-NCT: warm-up + cosine) when it is null."""
    if cfg.train.lr_schedule is not None:
        return cfg.train.lr_schedule
    return get_method(cfg.model.method).lr_schedule


def check_method(cfg: Config) -> None:
    """What the method's network (`model.<section>`) needs of the other keys: its spec's `check`."""
    get_method(cfg.model.method).check(cfg)


# ----------------------------------------------------------------------------------------------
# Reading, setting and writing

def documented_keys() -> list[KeyDoc]:
    """Every section and key of the params tree in params.yaml's order: its type (with its choices),
    the code default and its description (the params reference page is generated from it)."""
    out: list[KeyDoc] = []
    for doc in documented(Config):
        if doc.key == "model.method":
            out.append(dataclasses.replace(doc, choices=method_names()))
            for m in methods():
                if m.section:
                    text = " ".join((m.settings.__doc__ or "").split())
                    out.append(KeyDoc(f"model.{m.section}", "section", None, text))
                    out += [dataclasses.replace(k, key=f"model.{m.section}.{k.key}") for k in documented(m.settings)]
        else:
            out.append(doc)
    return out


def from_dict(values: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(values or {})
    except ValidationError as e:
        raise one_line(e, Config) from None


def with_values(cfg: Config, values: Mapping[str, Any]) -> Config:
    """A new, re-validated Config: `cfg` with the dotted keys in `values` set; `cfg` is unchanged."""
    return from_dict(set_keys(cfg.to_dict(), values))


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
