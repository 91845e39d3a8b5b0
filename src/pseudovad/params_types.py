"""What params keys are declared with, and what is read back off the declarations.

`pseudovad.config` declares every key as a field of a pydantic model (a `Section`); this module
holds the pieces that are not about any one key: strict value types with the few conversions
params files rely on, `rule` for a one-key check, each key's type label and choices for the
reference docs (`documented`), and pydantic's error list turned into the one line a user sees.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from pseudovad.errors import ConfigError

# Types are strict (pydantic's lax mode would read "3" as 3 and "yes" as true); on top of that the
# conversions params files rely on: 3.0 is an integer, an integer a number, a number a string.
Int = Annotated[int, BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]
Float = Annotated[float, BeforeValidator(lambda v: float(v) if type(v) is int else v)]
Str = Annotated[str, BeforeValidator(lambda v: str(v) if type(v) in (int, float) else v)]


class Section(BaseModel):
    """A params section: an unknown key is an error, and so is a value of the wrong type."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=False)


def rule(test: Callable[[Any], Any], must: str) -> AfterValidator:
    """A one-key check pydantic's constraints cannot say; `must` is its message (`{v}`: the value)."""
    def check(v: Any) -> Any:
        if not test(v):
            raise ValueError(must.format(v=v))
        return v
    return AfterValidator(check)


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def key_types(section: type[BaseModel]) -> dict[str, Any]:
    """{key: its declared type} of a section, in params.yaml's order (`Optional[int]`, `list[str]`…)."""
    hints = typing.get_type_hints(section)
    return {name: hints[name] for name in section.model_fields}


def choices(tp: Any) -> tuple[Any, ...]:
    """The values a `Literal` (or optional `Literal`) type allows; () for any other type."""
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else ()


def type_label(tp: Any) -> str:
    """A field's type as the reference writes it: `int`, `list[int]`, `str or null`."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union:
        return f"{type_label(args[0])} or null"
    if typing.get_origin(tp) is Literal:
        return type(args[0]).__name__
    if typing.get_origin(tp) in (list, dict):
        return f"{typing.get_origin(tp).__name__}[{', '.join(type_label(a) for a in typing.get_args(tp))}]"
    return "any" if tp is Any else getattr(tp, "__name__", str(tp))


@dataclass(frozen=True)
class KeyDoc:
    """One params key (or, with type "section", one section) as the reference documents it."""

    key: str
    type: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()


def documented(root: type[BaseModel]) -> list[KeyDoc]:
    """Every section and key under `root` in declaration order: its type (with its choices; a key
    validated by a function lists them in `json_schema_extra`), the default and its description.
    A field without a description comes back with description "" (the docs tests refuse that)."""
    out: list[KeyDoc] = []

    def walk(cls: type[BaseModel], prefix: str) -> None:
        for name, tp in key_types(cls).items():
            key, f = prefix + name, cls.model_fields[name]
            if is_section(tp):
                out.append(KeyDoc(key, "section", None, " ".join((tp.__doc__ or "").split())))
                walk(tp, key + ".")
                continue
            allowed = choices(tp) or (f.json_schema_extra or {}).get("choices", ())
            out.append(KeyDoc(key, type_label(tp), f.get_default(call_default_factory=True), f.description or "",
                              tuple(allowed)))

    walk(root, "")
    return out


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "string_type": "a string", "bool_type": "true/false",
             "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping"}
_BOUNDS = {"ge": ("[", "≥"), "gt": ("(", ">"), "le": ("]", "≤"), "lt": (")", "<")}


def _bounds(field: Any) -> str:
    """`≥ 0`, `> 0`, `in [0, 1)`: a field's range as its messages say it."""
    b = [(k, getattr(m, k)) for m in field.metadata for k in _BOUNDS if getattr(m, k, None) is not None]
    if len(b) == 1:
        return f"{_BOUNDS[b[0][0]][1]} {b[0][1]}"
    (lo, a), (hi, z) = sorted(b, key=lambda kv: kv[0] in ("le", "lt"))
    return f"in {_BOUNDS[lo][0]}{a}, {z}{_BOUNDS[hi][0]}"


def one_line(e: ValidationError, root: type[BaseModel]) -> ConfigError:
    """pydantic's first error as `<dotted.key>: <what is wrong>` (`data.size[1]` for a list item)."""
    err = e.errors(include_url=False)[0]
    loc, kind, v = err["loc"], err["type"], err.get("input")
    cls, field, tp = root, None, None
    for part in loc:                      # the section and the field the error is in
        if not (isinstance(part, str) and part in cls.model_fields):
            break
        field, tp = cls.model_fields[part], key_types(cls)[part]
        if is_section(tp):
            cls = tp
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if kind == "extra_forbidden":
        msg = f"unknown key (known: {', '.join(sorted(cls.model_fields))})"
    elif kind in _EXPECTED:
        msg = f"expected {_EXPECTED[kind]}, got {type(v).__name__ if kind == 'model_type' else repr(v)}"
    elif kind == "literal_error":
        msg = f"must be one of {', '.join(map(str, choices(tp)))}, got {v!r}"
    elif kind == "value_error":
        msg = str(err["ctx"]["error"])
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        shown = float(v) if "float" in str(tp) and type(v) is int else v      # 1 in a float key is 1.0
        msg = f"must be {_bounds(field)}, got {shown}"
    else:
        msg = err["msg"]
    return ConfigError(f"{key}: {msg}")
