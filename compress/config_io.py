"""Frozen dataclasses <-> plain dicts / YAML, one-to-one, with every problem reported at once.

A config class is a frozen dataclass whose fields are typed with ``int``, ``float``, ``str``,
``bool``, ``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` or
another config dataclass. Range limits and help text live in field metadata (see
:func:`option`); a class may add cross-field checks in a ``problems(self, path)`` method.

:func:`from_dict` walks the whole tree and collects every :class:`Problem` (unknown keys with
the valid ones, wrong types, out-of-range values, bad choices) before raising one
:class:`ConfigError`; :func:`to_dict` is its exact inverse.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from compress.errors import ConfigError, Problem

T = TypeVar("T")
_MISSING = object()


def option(
    default: Any = dataclasses.MISSING,
    *,
    lo: float | None = None,
    hi: float | None = None,
    help: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with an inclusive range [lo, hi] and a help text."""
    meta = {"lo": lo, "hi": hi, "help": help}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, path: str, problems: list[Problem]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        for arg in non_none:
            trial: list[Problem] = []
            out = _convert(value, arg, path, trial)
            if not trial:
                return out
        problems.append(Problem(path, value, _type_name(tp)))
        return _MISSING
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            problems.append(Problem(path, value, "one of the valid choices", tuple(choices)))
            return _MISSING
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(Problem(path, value, _type_name(tp)))
            return _MISSING
        inner = get_args(tp)[0]
        items = [_convert(v, inner, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(Problem(path, value, "a mapping"))
            return _MISSING
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(v, vt, f"{path}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, path, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(Problem(path, value, "true or false"))
            return _MISSING
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(Problem(path, value, "an integer"))
            return _MISSING
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(Problem(path, value, "a number"))
            return _MISSING
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(Problem(path, value, "a string"))
            return _MISSING
        return value
    problems.append(Problem(path, value, _type_name(tp)))
    return _MISSING


def _from_dict(cls: Any, data: Any, path: str, problems: list[Problem]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem(path, data, f"a mapping ({cls.__name__})"))
        return _MISSING
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            problems.append(
                Problem(_join(path, str(key)), data[key], "a known key", tuple(sorted(fields)))
            )
    kwargs: dict[str, Any] = {}
    n_before = len(problems)
    for name, f in fields.items():
        fpath = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(Problem(fpath, None, f"a value ({_type_name(hints[name])})"))
            continue
        value = _convert(data[name], hints[name], fpath, problems)
        if value is _MISSING:
            continue
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            rng = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            problems.append(Problem(fpath, value, f"a value in {rng}"))
            continue
        kwargs[name] = value
    if len(problems) > n_before:
        return _MISSING
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        problems.append(Problem(path, data, str(exc)))
        return _MISSING
    check = getattr(obj, "problems", None)
    if callable(check):
        problems.extend(check(path))
    return obj


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def from_dict(cls: type[T], data: Any, source: str = "") -> T:
    """Build `cls` from `data`, raising one ConfigError that lists every problem."""
    problems: list[Problem] = []
    obj = _from_dict(cls, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return typing.cast(T, obj)


def to_dict(obj: Any) -> Any:
    """The plain-data form of a config (inverse of :func:`from_dict`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


#: values a config may expand to: the default config has about 100; a document whose aliases
#: expand past this (a "billion laughs" alias bomb: 9 aliases of 9 aliases ... of 9 values)
#: is refused before anything walks it
MAX_CONFIG_VALUES = 100_000


def _too_many_values(data: Any, limit: int = MAX_CONFIG_VALUES) -> bool:
    """Whether `data` (aliases expanded: a shared list counts once per reference) holds more
    than `limit` values; stops counting at the limit, so it costs at most `limit` steps."""
    stack, n = [data], 0
    while stack:
        v = stack.pop()
        n += 1
        if n > limit:
            return True
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return False


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The plain data of a YAML file; a missing or unparsable file is a ConfigError, and so
    is one that nests thousands deep or expands past :data:`MAX_CONFIG_VALUES` values."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([Problem("", str(p), "an existing YAML file")], str(p))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        if _too_many_values(data):
            raise ConfigError([Problem("", str(p), f"a config of at most {MAX_CONFIG_VALUES:,} "
                                       "values (its aliases expand past that: an alias bomb?)")],
                              str(p))
        return data
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        what = " ".join(str(exc).split())  # the parser's message spans lines: one line here
        raise ConfigError([Problem("", str(p), f"valid YAML ({what})")], str(p)) from exc
    except RecursionError:  # thousands of nested [ or {: the parser recurses per level
        raise ConfigError([Problem("", str(p), "YAML nested less deeply (the file nests "
                                   "deeper than a config ever needs)")], str(p)) from None


def load_yaml(cls: type[T], path: str | os.PathLike[str],
              overrides: Sequence[str] = ()) -> T:
    """Read a YAML file into `cls`, with ``KEY=VALUE`` `overrides` applied first
    (:func:`apply_overrides`); a missing or unparsable file is a ConfigError too."""
    data = read_yaml(path)
    source = str(Path(path))
    if overrides:
        data, source = apply_overrides(data, overrides), f"{source} with --set"
    return from_dict(cls, data, source=source)


_EXP_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_overrides(items: Sequence[str], source: str = "--set") -> list[tuple[str, Any]]:
    """``["evolve.max_rounds=3", ...]`` -> ``[("evolve.max_rounds", 3), ...]``: a dotted key
    and a value read as YAML (``3`` an int, ``1e-3`` a float, ``true`` a bool, ``null`` or
    nothing None, ``[pte, onnx]`` a list, anything else a string). ConfigError listing every
    malformed item."""
    problems: list[Problem] = []
    out: list[tuple[str, Any]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not all(part.strip() for part in key.split(".")):
            problems.append(Problem(source, item, "KEY=VALUE with a dotted KEY, e.g. "
                                    "evolve.max_rounds=3"))
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            problems.append(Problem(key, raw, f"a YAML value ({str(exc).splitlines()[0]})"))
            continue
        if isinstance(value, str) and _EXP_NUMBER.fullmatch(raw.strip()):
            value = float(raw)  # YAML 1.1 (PyYAML) reads 1e-3 as a string
        out.append((key, value))
    if problems:
        raise ConfigError(problems, source)
    return out


def apply_overrides(data: Any, items: Sequence[str], source: str = "--set") -> dict[str, Any]:
    """A copy of the plain config `data` (None: empty) with each ``KEY=VALUE`` of `items`
    set by dotted key (:func:`parse_overrides`), missing sections created. Keys are not
    checked here: :func:`from_dict` then reports an unknown one like any unknown key of a
    file. ConfigError when a key goes through a value that is not a mapping."""
    out: Any = copy.deepcopy(data) if data is not None else {}
    if not isinstance(out, dict):
        raise ConfigError([Problem("", out, "a mapping at the top of the config")], source)
    problems: list[Problem] = []
    for key, value in parse_overrides(items, source):
        parts = [p.strip() for p in key.split(".")]
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                problems.append(Problem(".".join(parts[: i + 1]), nxt,
                                        f"a mapping (--set {key} sets a key inside it)"))
                break
            node = nxt
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source)
    return out


def dump_yaml(obj: Any) -> str:
    """The YAML text of a config."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
