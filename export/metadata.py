"""Metadata baked into exported programs: what an app needs to feed and label the model.

A flat mapping ``str -> int | float | str | bool``: model name, version, precision, backend,
sample rate, hop, channels, chunk length (seconds and input frames), number of speakers,
whether the length is dynamic and its bounds. In a `.pte` every key becomes a constant method
``get_<key>`` (ExecuTorch's ``constant_methods``), plus ``get_metadata_json`` holding the whole
mapping as JSON, so an app can read it without running the model. ONNX files carry the same
mapping in ``metadata_props``; every format also has it in the sidecar JSON.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from typing import Any

from export.errors import ExportError

METADATA_SCHEMA_VERSION = 1
CONSTANT_PREFIX = "get_"
JSON_METHOD = "get_metadata_json"
Scalar = int | float | str | bool


def package_version() -> str:
    try:
        return importlib.metadata.version("lhq-mobile")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def spec_metadata(spec: Any, config: Mapping[str, Any] | None = None) -> dict[str, Scalar]:
    """Metadata of a registry spec (`models.registry.ModelSpec`): audio fields and speakers."""
    audio = spec.audio.to_dict()
    meta: dict[str, Scalar] = {
        "model_name": spec.name,
        "family": spec.family,
        "component": spec.component,
    }
    for key in ("sample_rate", "hop_length", "channels", "chunk_seconds", "n_mels"):
        meta[key] = audio[key]
    cfg = dict(config if config is not None else spec.defaults)
    for key in ("n_speakers", "num_speakers", "speakers"):
        if isinstance(cfg.get(key), int) and not isinstance(cfg.get(key), bool):
            meta["speakers"] = int(cfg[key])
            break
    return meta


def speaker_metadata(
    speakers: Any, f0_stats: Mapping[str, Any] | None = None
) -> dict[str, Scalar]:
    """``speaker_names`` (JSON list, index order) and, when every singer has F0 statistics,
    ``speaker_f0_hz`` (JSON list of median F0 in Hz, same order) for ``--pitch auto``."""
    if not isinstance(speakers, list | tuple) or not speakers:
        return {}
    names = [str(s) for s in speakers]
    meta: dict[str, Scalar] = {"speaker_names": json.dumps(names)}
    stats = f0_stats or {}
    if all(isinstance(stats.get(s), Mapping) and "median_hz" in stats[s] for s in names):
        meta["speaker_f0_hz"] = json.dumps([float(stats[s]["median_hz"]) for s in names])
    return meta


def build_metadata(
    base: Mapping[str, Any] | None,
    *,
    model_name: str,
    precision: str,
    backend: str,
    input_frames: int | None,
    dynamic: bool,
    max_frames: int | None = None,
) -> dict[str, Scalar]:
    """Complete metadata: `base` (e.g. :func:`spec_metadata`) plus export facts.

    Keys always present: ``model_name``, ``version``, ``metadata_schema``, ``precision``,
    ``backend``, ``dynamic_length``; ``chunk_frames`` (time length of the first input at
    export) and ``max_frames`` when known. A chunk length in seconds is derived from the hop
    and sample rate when the base does not give one and the model is fixed-length.
    """
    meta: dict[str, Scalar] = {}
    for key, value in (base or {}).items():
        meta[str(key)] = _scalar(key, value)
    meta["model_name"] = model_name
    meta.setdefault("version", package_version())
    meta["metadata_schema"] = METADATA_SCHEMA_VERSION
    meta["precision"] = precision
    meta["backend"] = backend
    meta["dynamic_length"] = bool(dynamic)
    if input_frames is not None:
        meta["chunk_frames"] = int(input_frames)
    if max_frames is not None:
        meta["max_frames"] = int(max_frames)
    return meta


def _scalar(key: Any, value: Any) -> Scalar:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise ExportError(
        f"metadata {key!r}={value!r}: values must be int, float, str or bool, "
        f"got {type(value).__name__}"
    )


def constant_methods(meta: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """ExecuTorch constant methods for `meta`: ``get_<key>`` per key and ``get_metadata_json``."""
    methods: dict[str, Scalar] = {}
    for key, value in meta.items():
        if not key.isidentifier():
            raise ExportError(f"metadata key {key!r} is not a valid method name (identifier)")
        methods[CONSTANT_PREFIX + key] = value
    methods[JSON_METHOD] = json.dumps(dict(meta), sort_keys=True)
    return methods
