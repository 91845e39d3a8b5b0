"""Params trees as YAML: reading a params file strictly, and setting dotted keys in a tree.

A tree here is plain data (what YAML gives); `pseudovad.config` validates it into a Config.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from pseudovad.errors import ConfigError


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


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra`'s keys merged in, section by section (`tune.space` is one value)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "space":
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
