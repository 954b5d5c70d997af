"""Model registry: `name -> ModelSpec`.

A spec knows how to build its model (`build(**overrides)`), example inputs for export and
tests (`example_inputs()`), optional dynamic shapes for `torch.export`, and the audio metadata
an app needs (sample rate, hop, channels, chunk length). Families register their presets in
their own module, listed in `_FAMILY_MODULES`; the registry imports them lazily, so importing
`models.registry` stays cheap.

Every family registers a tiny `<family>-unittest` preset for tests.

Example::

    from models import registry
    spec = registry.get("lhq-svc-unittest")
    model = spec.build()
    out = model(*spec.example_inputs())
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from models.errors import RegistryError

log = logging.getLogger(__name__)

# Modules that call `register()` for their presets. Add a family here when it exists.
_FAMILY_MODULES: list[str] = ["models.lhq_svc.presets", "models.separation.presets",
                               "models.sts.presets"]
_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


@dataclass(frozen=True)
class AudioMeta:
    """What an app needs to feed the model: rates and shapes of its audio."""

    sample_rate: int
    hop_length: int = 0
    channels: int = 1
    chunk_seconds: float = 0.0
    n_mels: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "hop_length": self.hop_length,
            "channels": self.channels,
            "chunk_seconds": self.chunk_seconds,
            "n_mels": self.n_mels,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A registered model preset.

    Args:
        name: registry key, e.g. ``lhq-svc-demo``.
        family: model family, e.g. ``lhq-svc``.
        factory: ``factory(**config) -> nn.Module``; ``config`` is ``defaults`` updated by the
            overrides given to :meth:`build`.
        defaults: the preset's configuration (JSON-serialisable; stored in checkpoints).
        inputs: ``inputs(model) -> tuple`` of example tensors for the built model.
        dynamic: optional ``dynamic(model) -> dynamic_shapes`` for ``torch.export``.
        audio: audio metadata.
        description: one line for ``compress models``.
        component: which part of a pipeline this is (``decoder``, ``vocoder``, ``pipeline``...).
        audio_inputs: optional adapter turning a real audio clip into model inputs (int8
            calibration on a folder of audio, see ``export.calibration``).
        legacy: config keys added after checkpoints of this preset were first written, with
            the value their absence stands for (a checkpoint without the key is rebuilt with
            that value, not with the preset's current default).
        program: optional ``program(model) -> nn.Module``, the device program that
            ``compress export`` ships for a built or loaded model when it differs from the
            training module (heads used only by a loss dropped, recurrent states as explicit
            inputs and outputs). `inputs` and `dynamic` then receive the program; a program's
            ``export_metadata()`` (when it has one) is added to the exported metadata.
    """

    name: str
    family: str
    factory: Callable[..., torch.nn.Module]
    defaults: Mapping[str, Any]
    inputs: Callable[[torch.nn.Module], tuple[Any, ...]]
    audio: AudioMeta
    dynamic: Callable[[torch.nn.Module], Any] | None = None
    description: str = ""
    component: str = "model"
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Optional input adapter for calibration on real audio (used by `export`):
    # ``audio_inputs(model, wav (T,) float32 tensor, sample_rate) -> tuple of model inputs``.
    audio_inputs: Callable[[torch.nn.Module, torch.Tensor, int], tuple[Any, ...]] | None = None
    legacy: Mapping[str, Any] = field(default_factory=dict)
    program: Callable[[torch.nn.Module], torch.nn.Module] | None = None

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Return the preset's config with `overrides` applied (unknown keys are an error)."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise RegistryError(
                f"model {self.name!r}: unknown override(s) {unknown}; "
                f"valid keys: {sorted(self.defaults)}"
            )
        cfg = dict(self.defaults)
        cfg.update(overrides)
        return cfg

    def build(self, **overrides: Any) -> torch.nn.Module:
        """Build the model with the preset's config updated by `overrides`."""
        model = self.factory(**self.config(**overrides))
        return model

    def example_inputs(self, model: torch.nn.Module | None = None) -> tuple[Any, ...]:
        """Example inputs (seeded) for `model` (built from the preset if not given)."""
        if model is None:
            model = self.build()
        return self.inputs(model)

    def dynamic_shapes(self, model: torch.nn.Module | None = None) -> Any:
        """`torch.export` dynamic shapes, or None when the model takes a fixed chunk."""
        if self.dynamic is None:
            return None
        if model is None:
            model = self.build()
        return self.dynamic(model)


def register(spec: ModelSpec) -> ModelSpec:
    """Add `spec` to the registry (a second registration of the same name is an error)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise RegistryError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)


def names() -> list[str]:
    """All registered model names, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """The spec registered as `name`."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RegistryError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        ) from None


def build(name: str, **overrides: Any) -> torch.nn.Module:
    """Shortcut for `get(name).build(**overrides)`."""
    return get(name).build(**overrides)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def describe(name: str) -> dict[str, Any]:
    """A JSON-ready summary of a preset: name, family, params, fp32 MB and audio metadata."""
    spec = get(name)
    model = spec.build()
    params = count_parameters(model)
    return {
        "name": spec.name,
        "family": spec.family,
        "component": spec.component,
        "params": params,
        "fp32_mb": round(params * 4 / 1e6, 3),
        "description": spec.description,
        "audio": spec.audio.to_dict(),
    }
