"""The hyper-parameter search space: `tune.space` in params.yaml, checked and turned into Ray Tune's.

A space maps dotted params keys to specs:

    tune:
      space:
        pseudo.lam: {type: loguniform, low: 0.01, high: 1.0}
        pseudo.p:   {type: uniform, low: 0.1, high: 0.9}
        train.batch_size: {type: randint, low: 2, high: 8}        # both ends included
        pseudo.kind: {type: choice, values: [gaussian, learned]}
        train.lr:   {type: grid, values: [1.0e-4, 3.0e-4]}          # every value, in order
        pseudo.jumps: {type: choice, values: [[2, 3, 4, 5], [2, 3], [4, 5]]}   # a list-valued key: a choice of lists

Keys are checked against the config here, before Ray starts, so a typo fails in a second with the
key's name. Values drawn from a choice or grid are validated inside each trial, like any params
file: a value `train` would refuse makes that trial fail (reported, not fatal to the search).
This module does not import Ray; `to_ray` does, lazily.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from pseudovad import config as config_mod
from pseudovad.config import Config
from pseudovad.errors import ConfigError
from pseudovad.method_spec import get_method

TYPES = ("loguniform", "uniform", "randint", "choice", "grid")
# set by the search itself for every trial, or not a hyper-parameter of training at all
RESERVED = ("tune.", "train.epochs", "train.out", "tracking.", "registry.", "score.", "ingest.", "storage.",
            "synthetic.")


@dataclass(frozen=True)
class Dim:
    """One searched key."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    def describe(self) -> str:
        if self.type in ("choice", "grid"):
            return f"{self.type} {list(self.values)}"
        return f"{self.type} [{self.low:g}, {self.high:g}]"


def default_space(cfg: Config) -> dict[str, dict[str, Any]]:
    """The method's hand-picked knobs around its paper's values (`MethodSpec.default_space`)."""
    return get_method(cfg.model.method).default_space(cfg)


def field_type(key: str) -> Any:
    """The declared type of a dotted params key; ConfigError if it is not a leaf key of the config."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not config_mod.is_section(cls):
            raise ConfigError(f"tune.space.{key}: {'.'.join(parts[:i])} is not a section of the params")
        hints = config_mod.key_types(cls)
        if part not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"tune.space.{key}: unknown params key (known in "
                              f"{'.'.join(parts[:i]) or 'the top level'}: {known})")
        cls = hints[part]
    if config_mod.is_section(cls):
        raise ConfigError(f"tune.space.{key}: is a section, not a single params key")
    if typing.get_origin(cls) is typing.Literal:       # a key with choices: the type of its values
        return type(typing.get_args(cls)[0])
    return cls


def _scalar(tp: Any) -> Any:
    """Optional[X] → X."""
    if typing.get_origin(tp) is typing.Union:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp


def _number(key: str, spec: dict, name: str) -> float:
    v = spec.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"tune.space.{key}.{name}: expected a number, got {v!r}")
    return float(v)


def parse_dim(key: str, spec: Any) -> Dim:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"tune.space: keys must be dotted params keys like pseudo.lam, got {key!r}")
    if any(key == r or key.startswith(r) for r in RESERVED):
        raise ConfigError(f"tune.space.{key}: cannot be searched (set by the search itself or not a training setting)")
    tp = _scalar(field_type(key))
    if not isinstance(spec, dict):
        raise ConfigError(f"tune.space.{key}: expected a spec like {{type: loguniform, low: 0.01, high: 1.0}}, "
                          f"got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"tune.space.{key}.type: must be one of {', '.join(TYPES)}, got {kind!r}")
    allowed = {"type", "values"} if kind in ("choice", "grid") else {"type", "low", "high"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise ConfigError(f"tune.space.{key}: unknown field(s) {', '.join(extra)} for type {kind} "
                          f"(expected {', '.join(sorted(allowed))})")
    if kind in ("choice", "grid"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"tune.space.{key}.values: expected a non-empty list, got {values!r}")
        return Dim(key, kind, values=tuple(values))
    low, high = _number(key, spec, "low"), _number(key, spec, "high")
    if not low < high:
        raise ConfigError(f"tune.space.{key}: low ({low:g}) must be < high ({high:g})")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"tune.space.{key}: loguniform needs low > 0, got {low:g}")
    if kind == "randint":
        if tp is not int:
            raise ConfigError(f"tune.space.{key}: randint is for integer keys; {key} is {getattr(tp, '__name__', tp)}")
        if not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"tune.space.{key}: randint bounds must be integers, got {low:g}, {high:g}")
    elif tp is not float:
        raise ConfigError(f"tune.space.{key}: {kind} draws real numbers but {key} is "
                          f"{getattr(tp, '__name__', tp)} (use randint, choice or grid)")
    return Dim(key, kind, low, high)


def parse_space(cfg: Config) -> dict[str, Dim]:
    """`tune.space` (or the method's default space), checked; ConfigError names the bad key."""
    raw = cfg.tune.space or default_space(cfg)
    if not isinstance(raw, dict):
        raise ConfigError(f"tune.space: expected a mapping of params keys to specs, got {raw!r}")
    dims = {k: parse_dim(k, v) for k, v in raw.items()}
    search = cfg.tune.search
    if search == "grid":
        cont = [d.key for d in dims.values() if d.type not in ("choice", "grid")]
        if cont:
            raise ConfigError(f"tune.space.{cont[0]}: tune.search=grid needs values (type grid or choice), "
                              f"not a {dims[cont[0]].type} range")
    elif search in ("optuna", "hyperopt"):
        grid = [d.key for d in dims.values() if d.type == "grid"]
        if grid:
            raise ConfigError(f"tune.space.{grid[0]}: type grid works with tune.search random or grid, "
                              f"not {search} (use choice)")
        if search == "optuna":   # Optuna's categorical distribution takes None, bool, int, float, str only
            lists = [d.key for d in dims.values() if any(isinstance(v, (list, tuple, dict)) for v in d.values)]
            if lists:
                raise ConfigError(f"tune.space.{lists[0]}: a choice of lists works with tune.search random, grid "
                                  f"or hyperopt, not optuna (its choices must be single values)")
    return dims


def to_ray(dims: dict[str, Dim], search: str) -> dict[str, Any]:
    """Ray Tune's param_space: {dotted key: sampler}. With search=grid every choice is a grid too."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, d in dims.items():
        if d.type == "grid" or (d.type == "choice" and search == "grid"):
            out[key] = tune.grid_search(list(d.values))
        elif d.type == "choice":
            out[key] = tune.choice(list(d.values))
        elif d.type == "loguniform":
            out[key] = tune.loguniform(d.low, d.high)
        elif d.type == "uniform":
            out[key] = tune.uniform(d.low, d.high)
        else:  # randint: both ends included (Ray's upper bound is exclusive)
            out[key] = tune.randint(int(d.low), int(d.high) + 1)
    return out


def plain(value: Any) -> Any:
    """numpy scalars and tuples from Ray's samplers → plain YAML-safe Python values."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def apply(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a params tree with dotted keys set to the (plain) sampled values."""
    return config_mod.set_keys(tree, {k: plain(v) for k, v in overrides.items()})
