"""Calibration inputs for int8 (PT2E observers, onnxruntime static quantization).

Calibration should see real audio: :func:`calibration_from_dir` reads the wav / flac files of a
folder, cuts them into chunks and turns each chunk into model inputs with an **input adapter**
``adapter(wav (T,) float32 tensor, sample_rate) -> tuple of inputs``. The adapter comes from,
in order:

1. ``spec.audio_inputs(model, wav, sample_rate)`` when the registry spec defines it;
2. ``model.inputs_from_audio(wav, sample_rate)`` when the model defines it;
3. for models whose first input is audio shaped ``(1, T)`` or ``(1, 1, T)`` and whose other
   inputs are scalar controls (speaker id, pitch shift, shape ``(1,)``): the chunk becomes the
   first input and the controls are kept from the example inputs.

Without a folder, :func:`calibration_from_examples` uses the spec's example inputs and says so
in the calibration record written to the sidecar (it is never presented as real data). Random
noise is never used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.errors import ExportError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
Adapter = Callable[[torch.Tensor, int], tuple[Any, ...]]
SILENCE_RMS = 1e-3  # chunks quieter than -60 dBFS are skipped


@dataclass
class CalibrationSet:
    """Input tuples for calibration plus a JSON-ready record of where they came from."""

    inputs: list[tuple[Any, ...]]
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ExportError("a calibration set needs at least one input tuple")


def calibration_from_examples(example_inputs: Sequence[Any]) -> CalibrationSet:
    """Calibrate on the example inputs only (no dataset given); the record says so."""
    return CalibrationSet(
        inputs=[tuple(example_inputs)],
        source={
            "kind": "example_inputs",
            "n_batches": 1,
            "note": "no calibration dataset given: int8 ranges were calibrated on the model "
            "spec's example inputs, not on real audio; pass --calibration DIR for a release",
        },
    )


def resolve_adapter(
    spec: Any | None, model: torch.nn.Module, example_inputs: Sequence[Any]
) -> Adapter:
    """The input adapter for `model` (see the module docstring); ExportError when none applies."""
    spec_fn = getattr(spec, "audio_inputs", None) if spec is not None else None
    if spec_fn is not None:
        return lambda wav, sr: tuple(spec_fn(model, wav, sr))
    model_fn = getattr(model, "inputs_from_audio", None)
    if callable(model_fn):
        return lambda wav, sr: tuple(model_fn(wav, sr))
    first = example_inputs[0] if example_inputs else None
    if (
        isinstance(first, torch.Tensor)
        and first.is_floating_point()
        and first.ndim in (2, 3)
        and all(d == 1 for d in first.shape[:-1])
        and first.shape[-1] >= 1000
        and all(isinstance(x, torch.Tensor) and x.ndim <= 1 for x in example_inputs[1:])
    ):
        lead = tuple(first.shape[:-1])
        controls = tuple(example_inputs[1:])
        return lambda wav, sr: (wav.reshape(*lead, -1), *controls)
    shapes = [
        tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__ for x in example_inputs
    ]
    name = getattr(spec, "name", type(model).__name__)
    raise ExportError(
        f"model {name!r} takes inputs {shapes}, not one audio tensor, and has no input adapter "
        "(spec.audio_inputs or model.inputs_from_audio): cannot turn calibration audio into "
        "model inputs; export without --calibration (example inputs) or add an adapter"
    )


def audio_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Audio files under `folder` (recursive, sorted)."""
    root = Path(folder)
    if not root.is_dir():
        raise ExportError(f"calibration directory {root} does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ExportError(
            f"calibration directory {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return files


def calibration_from_dir(
    folder: str | os.PathLike[str],
    adapter: Adapter,
    *,
    sample_rate: int,
    chunk_seconds: float,
    max_batches: int = 8,
) -> CalibrationSet:
    """Cut the audio of `folder` into `chunk_seconds` chunks (non-silent) and adapt each one.

    Chunks are taken round-robin over the files (first chunk of every file, then the second...)
    so a few batches already cover several recordings.
    """
    from models.audio import load_audio

    if chunk_seconds <= 0:
        raise ExportError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    if max_batches < 1:
        raise ExportError(f"max_batches must be >= 1, got {max_batches}")
    n = int(round(chunk_seconds * sample_rate))
    files = audio_files(folder)
    per_file: list[list[np.ndarray]] = []
    used: list[str] = []
    for path in files:
        wav, _ = load_audio(path, sample_rate=sample_rate, channels=1, allow_silent=True)
        chunks = [wav[i : i + n] for i in range(0, len(wav) - n + 1, n)]
        chunks = [
            c for c in chunks if float(np.sqrt(np.mean(c.astype(np.float64) ** 2))) > SILENCE_RMS
        ]
        if chunks:
            per_file.append(chunks)
            used.append(str(path))
    if not per_file:
        raise ExportError(
            f"calibration directory {folder}: no file has a non-silent chunk of "
            f"{chunk_seconds:g} s "
            f"({n} samples at {sample_rate} Hz); {len(files)} file(s) checked"
        )
    inputs: list[tuple[Any, ...]] = []
    k = 0
    while len(inputs) < max_batches and any(k < len(c) for c in per_file):
        for chunks in per_file:
            if k < len(chunks) and len(inputs) < max_batches:
                wav_t = torch.from_numpy(np.ascontiguousarray(chunks[k], dtype=np.float32))
                inputs.append(tuple(adapter(wav_t, sample_rate)))
        k += 1
    log.info(
        "calibration: %d chunk(s) of %.2f s from %d file(s)", len(inputs), chunk_seconds, len(used)
    )
    return CalibrationSet(
        inputs=inputs,
        source={
            "kind": "audio_dir",
            "dir": str(Path(folder).resolve()),
            "n_files": len(used),
            "n_batches": len(inputs),
            "chunk_seconds": chunk_seconds,
            "sample_rate": sample_rate,
            "files": [os.path.basename(p) for p in used[:50]],
        },
    )
