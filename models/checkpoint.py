"""Self-describing checkpoints: safetensors weights plus a JSON header.

One ``.safetensors`` file holds everything needed to rebuild the model without unpickling
code. The JSON header lives in the safetensors metadata under the key ``lhq_mobile``::

    {
      "schema_version": 1,
      "model": "lhq-svc-demo",            # registry name
      "config": {...},                    # full build config (overrides already applied)
      "architecture": ["res", "xattn"],   # evolvable block kinds, or null
      "history": [...],                   # evolution / training history, free-form records
      "extra": {...},                     # anything else (speakers, metrics, step)
      "sha256": "..."                     # over tensor names, dtypes, shapes and bytes
    }

A checkpoint path may be the file itself or a directory holding ``model.safetensors``.
Every failure raises :class:`~models.errors.CheckpointError` naming the file and the fault.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.errors import CheckpointError, ModelsError
from models.fileio import atomic_path

SCHEMA_VERSION = 1
HEADER_KEY = "lhq_mobile"
DEFAULT_FILENAME = "model.safetensors"


@dataclass
class CheckpointHeader:
    """The JSON header of a checkpoint."""

    model: str
    config: dict[str, Any]
    architecture: list[str] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "model": self.model,
                "config": self.config,
                "architecture": self.architecture,
                "history": self.history,
                "extra": self.extra,
                "sha256": self.sha256,
            },
            sort_keys=True,
        )


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file path: `path` itself, or `path/model.safetensors` for a directory."""
    p = Path(path)
    if p.is_dir():
        p = p / DEFAULT_FILENAME
    if not p.exists():
        raise CheckpointError(f"checkpoint {p}: no such file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {p}: file is empty")
    return p


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    *,
    model_name: str,
    config: dict[str, Any],
    architecture: list[str] | None = None,
    history: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model`'s weights and header to `path` atomically; return the file path.

    If `path` is a directory (or ends with a separator) the file is ``path/model.safetensors``.
    """
    from safetensors.torch import save_file

    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        p = p / DEFAULT_FILENAME
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().clone().cpu() for k, v in model.state_dict().items()}
    header = CheckpointHeader(
        model=model_name,
        config=dict(config),
        architecture=list(architecture) if architecture is not None else None,
        history=list(history or []),
        extra=dict(extra or {}),
        sha256=_digest(tensors),
    )
    try:
        json.dumps(header.config)
        json.dumps(header.extra)
        json.dumps(header.history)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {p}: header is not JSON-serialisable: {exc}") from exc
    with atomic_path(p) as tmp:
        save_file(tensors, str(tmp), metadata={HEADER_KEY: header.to_json()})
    return p


def read_header(path: str | os.PathLike[str]) -> CheckpointHeader:
    """Read and validate the JSON header without loading the weights."""
    from safetensors import safe_open

    p = resolve_path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"checkpoint {p}: not a readable safetensors file ({exc})") from exc
    raw = meta.get(HEADER_KEY)
    if raw is None:
        raise CheckpointError(
            f"checkpoint {p}: no '{HEADER_KEY}' header; expected a file written by "
            "models.checkpoint.save_checkpoint (plain safetensors weights lack the model config)"
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {p}: header is not valid JSON ({exc})") from exc
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {p}: schema_version {version!r} is not supported; "
            f"this version reads 1..{SCHEMA_VERSION}"
        )
    for key in ("model", "config"):
        if key not in data:
            raise CheckpointError(f"checkpoint {p}: header has no {key!r}")
    return CheckpointHeader(
        model=data["model"],
        config=data["config"],
        architecture=data.get("architecture"),
        history=data.get("history") or [],
        extra=data.get("extra") or {},
        schema_version=version,
        sha256=data.get("sha256", ""),
    )


def load_state(
    path: str | os.PathLike[str], verify: bool = True
) -> tuple[CheckpointHeader, dict[str, torch.Tensor]]:
    """Header and state dict of a checkpoint; with `verify`, check the tensor hash."""
    from safetensors.torch import load_file

    header = read_header(path)
    p = resolve_path(path)
    try:
        state = load_file(str(p))
    except Exception as exc:
        raise CheckpointError(f"checkpoint {p}: weights are unreadable ({exc})") from exc
    if verify and header.sha256 and _digest(state) != header.sha256:
        raise CheckpointError(
            f"checkpoint {p}: weights do not match the header's sha256 (file is corrupt)"
        )
    return header, state


def load_model(
    path: str | os.PathLike[str], **overrides: Any
) -> tuple[torch.nn.Module, CheckpointHeader]:
    """Rebuild the model named in the header through the registry and load its weights."""
    from models import registry

    header, state = load_state(path)
    p = resolve_path(path)
    try:
        spec = registry.get(header.model)
    except ModelsError as exc:
        raise CheckpointError(f"checkpoint {p}: {exc}") from exc
    cfg = {k: v for k, v in spec.legacy.items() if k in spec.defaults}  # keys added later
    cfg.update(header.config)
    cfg.update(overrides)
    try:
        model = spec.build(**cfg)
    except (TypeError, ValueError, ModelsError) as exc:
        raise CheckpointError(f"checkpoint {p}: cannot rebuild {header.model!r}: {exc}") from exc
    load_into(model, state, source=str(p))
    model.eval()
    return model, header


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Load `state` into `model` strictly, with an error that lists what does not fit."""
    # a module whose parameters were renamed maps the keys of older checkpoints
    # (`upgrade_state(prefix, state)`, e.g. models.separation.lstm.LSTMStack)
    for name, mod in model.named_modules():
        upgrade = getattr(mod, "upgrade_state", None)
        if callable(upgrade):
            state = upgrade(f"{name}." if name else "", state)
    own = model.state_dict()
    # buffers a module derives from its constructor (its `_derived` names) may be absent
    # from checkpoints written before they existed: their values come from the model
    derived = {f"{name}.{d}" if name else d for name, mod in model.named_modules()
               for d in getattr(mod, "_derived", ())}
    state = {**{k: own[k] for k in derived if k in own and k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if bad_shape:
            parts.append(f"shape mismatch {bad_shape[:3]}")
        raise CheckpointError(
            f"checkpoint {source}: weights do not fit the model: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
