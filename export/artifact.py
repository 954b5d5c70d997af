"""Exported files: names, atomic writes, the sidecar JSON, and :class:`ExportResult`.

Every exported program is written as ``{model}_{backend}_{precision}.{ext}`` next to a sidecar
``{model}_{backend}_{precision}.json`` holding its sha256, size, parity figures, delegation
report, tool versions, input / output shapes and dtypes, metadata and the calibration source.
Both files are written to a temporary name in the same directory and renamed, the program
first and the sidecar last, so a reader that sees the sidecar sees a complete program.
Nothing is written before the parity gate has passed (the callers guarantee the order).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from export.errors import ExportError
from export.parity import GateConfig, evaluate_gate
from models.fileio import atomic_write_bytes

BACKENDS = {"pte": "xnnpack", "onnx": "onnxruntime", "tflite": "litert"}
EXTENSIONS = {"pte": "pte", "onnx": "onnx", "tflite": "tflite"}
SIDECAR_SCHEMA_VERSION = 1
_TOOLS = (
    "torch",
    "executorch",
    "torchao",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "ai-edge-litert",
    "litert-torch",
    "lhq-mobile",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def artifact_stem(model: str, fmt: str, precision: str) -> str:
    """``{model}_{backend}_{precision}`` for format `fmt` (``pte`` / ``onnx`` / ``tflite``)."""
    if fmt not in BACKENDS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(BACKENDS)}")
    if not _NAME_RE.match(model):
        raise ExportError(
            f"model name {model!r} cannot be used in a file name; "
            "use letters, digits, '.', '_', '-'"
        )
    return f"{model}_{BACKENDS[fmt]}_{precision}"


def tool_versions() -> dict[str, str | None]:
    """Installed versions of the export toolchain (None when a tool is not installed)."""
    out: dict[str, str | None] = {}
    for name in _TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe_tensors(tensors: Sequence[Any]) -> list[dict[str, Any]]:
    """Shape and dtype of each tensor (non-tensors described by type)."""
    out = []
    for t in tensors:
        if isinstance(t, torch.Tensor):
            out.append({"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")})
        else:
            out.append({"type": type(t).__name__, "value": repr(t)})
    return out


@dataclass
class ExportResult:
    """What an export wrote (or, with ``write=False``, would have written).

    Attributes:
        path: the program file (``.pte`` / ``.onnx`` / ``.tflite``), None when not written.
        sidecar_path: the JSON sidecar, None when not written.
        data: the program bytes.
        sidecar: the sidecar content.
        parity: the parity report (as in the sidecar).
    """

    model: str
    format: str
    backend: str
    precision: str
    data: bytes
    sidecar: dict[str, Any]
    path: Path | None = None
    sidecar_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @property
    def parity(self) -> dict[str, Any]:
        return dict(self.sidecar["parity"])


def build_sidecar(
    *,
    model: str,
    fmt: str,
    precision: str,
    data: bytes,
    parity: Mapping[str, Any],
    inputs: Sequence[Any],
    outputs: Sequence[Any],
    metadata: Mapping[str, Any],
    calibration: Mapping[str, Any],
    dynamic: Mapping[str, Any] | None,
    delegation: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar JSON content (see the module docstring)."""
    stem = artifact_stem(model, fmt, precision)
    return {
        "schema_version": SIDECAR_SCHEMA_VERSION,
        "file": f"{stem}.{EXTENSIONS[fmt]}",
        "model": model,
        "format": fmt,
        "backend": BACKENDS[fmt],
        "precision": precision,
        "sha256": sha256_bytes(data),
        "size_bytes": len(data),
        "inputs": describe_tensors(inputs),
        "outputs": describe_tensors(outputs),
        "dynamic_shapes": dict(dynamic) if dynamic else None,
        "metadata": dict(metadata),
        "calibration": dict(calibration),
        "parity": dict(parity),
        "delegation": dict(delegation) if delegation is not None else None,
        "tool_versions": tool_versions(),
        **(dict(extra) if extra else {}),
    }


def write_artifact(
    out_dir: str | os.PathLike[str], fmt: str, data: bytes, sidecar: dict[str, Any],
    inputs: Sequence[Any] | None = None,
) -> tuple[Path, Path]:
    """Write program, example inputs (when given) and sidecar atomically (program first,
    sidecar last). Returns the program's and the sidecar's paths.

    The example inputs — the real inputs the parity gate ran, in input order — go to
    ``{stem}.inputs.npz`` (arrays ``input_0``, ``input_1``, ...), named by the sidecar's
    ``example_inputs`` (added to `sidecar` in place): ``compress bench`` feeds them to the
    runner, so an index input (a speaker id) stays in range and a benchmark runs what the app
    runs."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"output directory {out} exists and is not a directory")
    stem = artifact_stem(sidecar["model"], fmt, sidecar["precision"])
    path = out / f"{stem}.{EXTENSIONS[fmt]}"
    side = out / f"{stem}.json"
    atomic_write_bytes(path, data)
    if inputs is not None:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **{f"input_{i}": (t.detach().cpu().numpy() if hasattr(t, "detach")
                                         else np.asarray(t)) for i, t in enumerate(inputs)})
        atomic_write_bytes(out / f"{stem}.inputs.npz", buf.getvalue())
        sidecar["example_inputs"] = f"{stem}.inputs.npz"  # the caller's sidecar says so too
    text = json.dumps(sidecar, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write_bytes(side, text.encode("utf-8"))
    return path, side


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def gate_and_write(
    *,
    model_name: str,
    fmt: str,
    precision: str,
    data: bytes,
    runner: Callable[..., list[torch.Tensor]],
    parity_inputs: Sequence[Sequence[Any]],
    refs: Sequence[Sequence[torch.Tensor]],
    gate: GateConfig,
    audio_sample_rate: int | None,
    out_dir: str | os.PathLike[str] | None,
    metadata: Mapping[str, Any],
    calibration: Mapping[str, Any],
    dynamic: Mapping[str, Any] | None,
    delegation: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Run the exported program on `parity_inputs`, apply the gate, then write (if `out_dir`).

    Raises :class:`~export.errors.ParityError` (before anything is written) when the gate fails.
    """
    tests = [list(runner(*inputs)) for inputs in parity_inputs]
    report = evaluate_gate(
        refs,
        tests,
        precision=precision,
        backend=BACKENDS[fmt],
        gate=gate,
        audio_sample_rate=audio_sample_rate,
    )
    stem = artifact_stem(model_name, fmt, precision)
    report.raise_if_failed(f"{stem}.{EXTENSIONS[fmt]}")
    sidecar = build_sidecar(
        model=model_name,
        fmt=fmt,
        precision=precision,
        data=data,
        parity=report.to_dict(),
        inputs=list(parity_inputs[0]),
        outputs=list(refs[0]),
        metadata=metadata,
        calibration=calibration,
        dynamic=dynamic,
        delegation=delegation,
        extra=extra,
    )
    result = ExportResult(
        model=model_name,
        format=fmt,
        backend=BACKENDS[fmt],
        precision=precision,
        data=data,
        sidecar=sidecar,
    )
    if out_dir is not None:
        result.path, result.sidecar_path = write_artifact(out_dir, fmt, data, sidecar,
                                                          inputs=list(parity_inputs[0]))
    return result
