"""A small JSON Schema validator (no dependencies) for device_bench's result schema.

Supports the subset the result schema uses: ``type`` (a name or a list of names), ``const``,
``enum``, ``required``, ``properties``, ``additionalProperties`` (bool), ``items``,
``minItems``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``pattern``. Unknown keywords
(descriptions, ``$id``, ...) are ignored. `problems()` returns every violation at once, each
with its JSON path.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from device_bench.errors import BenchError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
RESULT_SCHEMA = SCHEMA_DIR / "bench_result.v1.json"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def problems(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """All violations of `schema` by `instance` (empty when valid)."""
    out: list[str] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(instance).__name__}"]
    if "const" in schema and instance != schema["const"]:
        out.append(f"{path}: expected {schema['const']!r}, got {instance!r}")
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    is_num = isinstance(instance, (int, float)) and not isinstance(instance, bool)
    if is_num and "minimum" in schema and instance < schema["minimum"]:
        out.append(f"{path}: {instance} < minimum {schema['minimum']}")
    if is_num and "maximum" in schema and instance > schema["maximum"]:
        out.append(f"{path}: {instance} > maximum {schema['maximum']}")
    if is_num and "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
        out.append(f"{path}: {instance} <= exclusive minimum {schema['exclusiveMinimum']}")
    pattern = schema.get("pattern")
    if isinstance(instance, str) and pattern and re.search(pattern, instance) is None:
        out.append(f"{path}: {instance!r} does not match {pattern}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                out.append(f"{path}: missing required key {key!r}")
        for key, value in instance.items():
            if key in props:
                out.extend(problems(value, props[key], f"{path}.{key}"))
            elif schema.get("additionalProperties", True) is False:
                out.append(f"{path}: unexpected key {key!r}; allowed: {sorted(props)}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append(f"{path}: {len(instance)} items < minItems {schema['minItems']}")
        if "items" in schema:
            for i, item in enumerate(instance):
                out.extend(problems(item, schema["items"], f"{path}[{i}]"))
    return out


@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    return json.loads(RESULT_SCHEMA.read_text())


def validate_result(obj: Any, source: str = "result") -> None:
    """Raise BenchError listing every problem when `obj` is not a valid bench_result.v1."""
    found = problems(obj, result_schema())
    if found:
        raise BenchError(
            f"{source} is not a valid bench_result.v1 ({len(found)} problems): " + "; ".join(found)
        )
