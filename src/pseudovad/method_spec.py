"""What a detection method is (`MethodSpec`) and the registry of them (`register_method`,
`get_method`, `method_names`), in the habit of timm's `@register_model`.

The registry is at the bottom of the package so that every layer can ask it (the config for a
method's checks, `geometry` for its clip, `models` for its network, the scoring engine for its
prediction, the report for its rows) without importing the layers above. It finds the built-in
methods by importing the modules of `pseudovad.methods` (`BUILTINS`) on the first lookup; a plugin or a test
registers its own with `register_method`. A spec module imports nothing heavy at the top (the
config is validated before torch is loaded); what needs torch is imported inside its functions.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any, ClassVar, Mapping

from pseudovad.errors import ConfigError

# Annotations only (never imported here: the config and the geometry ask this registry).
Config = ClipGeometry = Any

# the package whose modules are the built-in methods, each registering its spec on import
BUILTINS = "pseudovad.methods"
# model.method when params name none; model files from before the key were trained with it
DEFAULT = "ltgpa"

_REGISTRY: dict[str, "MethodSpec"] = {}
_LOADED = False


class MethodSpec:
    """One detection method. Subclass it in `pseudovad/methods/<name>.py`, set the class
    attributes, override what differs from the defaults, and decorate it with `@register_method`.

    `cfg` is a validated `Config`; `config` a model file's config dict (`meta["config"]`), read
    leniently since older files lack newer keys.
    """

    name: ClassVar[str]                     # the value of `model.method`
    title: ClassVar[str] = ""               # how documentation and reports name it
    section: ClassVar[str | None] = None    # its own params section, `model.<section>`
    settings: ClassVar[Any] = None          # that section's model (fields with defaults and descriptions)
    pseudo_key: ClassVar[str | None] = None  # the `pseudo.*` key that picks its pseudo anomalies
    pseudo_default: ClassVar[str] = "none"   # that key's default (read where a model file lacks it)
    share_key: ClassVar[str | None] = None   # a `pseudo.*` share of pseudo batches: at 0 none are drawn
    pseudo_settings: ClassVar[tuple[str, ...]] = ()   # `pseudo.*` keys a model version's description lists
    lr_schedule: ClassVar[str] = "constant"  # its paper's learning-rate schedule (`train.lr_schedule: null`)
    rows: ClassVar[tuple[str, ...]] = ("baseline",)   # the AUC table's row order (report)
    paper_auc: ClassVar[Mapping[tuple[str, str], tuple[float, str]]] = {}   # (row, dataset) → (AUC %, source)
    resembles: ClassVar[Mapping[str, str]] = {}   # pseudo-anomaly kind → the injected kind it resembles

    # params -------------------------------------------------------------------------------
    def check(self, cfg: Config) -> None:
        """The checks that need this method's keys together with others (e.g. `data.size` against
        its network's stride); raise ConfigError naming the key."""

    def pseudo_kind(self, config: Mapping[str, Any]) -> str:
        """The pseudo-anomaly setting a run was trained with ("none" when the method has none)."""
        if self.pseudo_key is None:
            return "none"
        return str(config.get("pseudo", {}).get(self.pseudo_key, self.pseudo_default))

    # clips and networks ---------------------------------------------------------------------
    def geometry(self, cfg: Config) -> tuple[int, int]:
        """(clip_len, scored_index): the frames a clip holds and the one it scores."""
        return cfg.data.clip_len, cfg.data.scored_index

    def model_kind(self, config: Mapping[str, Any]) -> str:
        """"video" (3D conv on clips), "image" (2D conv on single images) or "vit": what decides the
        memory format and whether a batch is (B, C, L, H, W) or (B, C, H, W)."""
        return "video"

    def value_range(self, config: Mapping[str, Any]) -> str:
        """'tanh' ([-1, 1]) or 'unit' ([0, 1]): how frames are scaled for the network."""
        return "tanh"

    def trains_on_images(self, cfg: Config) -> bool:
        """True when it trains on one-class still images (`train.cifar_root`), not on footage."""
        return False

    def build_model(self, cfg: Config) -> Any:
        """The detector network saved as model.pt."""
        raise NotImplementedError

    def trainer(self) -> type:
        """The `training.method.Method` subclass with its update rule."""
        raise NotImplementedError

    def input_frames(self, geometry: ClipGeometry) -> int:
        """Frames the network's forward takes per clip."""
        return geometry.clip_len

    def scored_prediction(self, model: Any, clip: Any, scored_index: int) -> tuple[Any, Any]:
        """(prediction, target) of the scored frame, each (B, C, H, W), for a clip (B, C, L, H, W):
        by default the network reconstructs the clip and the scored frame is read out of it."""
        return model(clip)[:, :, scored_index], clip[:, :, scored_index]

    # search and reports ---------------------------------------------------------------------
    def default_space(self, cfg: Config) -> dict[str, dict[str, Any]]:
        """`tune.space` when params give none: params key → search spec."""
        return {"train.lr": {"type": "loguniform", "low": 1e-5, "high": 3e-3}}

    def describe(self, config: Mapping[str, Any]) -> dict[str, str]:
        """{method, pseudo_kind, variant}: the report's row of a model (variant: its row label)."""
        kind = self.pseudo_kind(config)
        return {"method": self.name, "pseudo_kind": kind, "variant": "baseline" if kind == "none" else kind}

    def run_label(self, cfg: Config) -> str:
        """The MLflow run name's tail, telling two runs apart (e.g. `ltgpa-learned-λ0.1-p0.5`)."""
        kind = self.pseudo_kind(cfg.to_dict())
        return f"{self.name}-{'baseline' if kind == 'none' else kind}"


def register_method(cls: type[MethodSpec]) -> type[MethodSpec]:
    """Class decorator: register one instance of `cls` under `cls.name` (a second spec under a
    taken name is an error: one name, one method)."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__name__}: a method spec needs a `name`")
    if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
        raise ValueError(f"method {name!r} is registered twice ({type(_REGISTRY[name]).__name__}, {cls.__name__})")
    _REGISTRY[name] = cls()
    return cls


def unregister_method(name: str) -> None:
    """Remove a method (a test's own, once the test is done)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules([str(Path(__file__).parent / "methods")]):
        if not info.name.startswith("_"):
            importlib.import_module(f"{BUILTINS}.{info.name}")


def method_names() -> tuple[str, ...]:
    """Every registered method's name, built-ins first."""
    _load_builtins()
    return tuple(_REGISTRY)


def methods() -> tuple[MethodSpec, ...]:
    _load_builtins()
    return tuple(_REGISTRY.values())


def get_method(name: Any) -> MethodSpec:
    """The spec registered as `name`; ConfigError naming `model.method` and the known names."""
    _load_builtins()
    try:
        return _REGISTRY[str(name)]
    except KeyError:
        raise ConfigError(f"model.method: must be one of {', '.join(_REGISTRY)}, got {name!r}") from None


def method_of(config: Mapping[str, Any]) -> MethodSpec:
    """The spec of a model file's config dict (files from before `model.method` used the default)."""
    return get_method(config.get("model", {}).get("method", DEFAULT))
