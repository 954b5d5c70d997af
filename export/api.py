"""One call to export a registry preset or a checkpoint to any format: :func:`export_model`.

``name_or_ckpt`` is either a registry name (the preset is built as-is, untrained: for tests and
for measuring size and speed before training) or a checkpoint path (rebuilt through
``models.checkpoint.load_model``). The spec supplies example inputs, bounded dynamic shapes,
audio metadata and, for calibration from a folder of audio, the input adapter
(:mod:`export.calibration`); a spec with a ``program`` hook has its device program exported
instead of the built module (speech-to-singing: the network without its phoneme decoder, the
GRU states explicit).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from export.artifact import ExportResult
from export.calibration import (
    CalibrationSet,
    calibration_from_dir,
    calibration_from_examples,
    resolve_adapter,
)
from export.common import check_precision
from export.errors import ExportError
from export.metadata import speaker_metadata, spec_metadata
from export.parity import GateConfig, stoi_sample_rate

log = logging.getLogger(__name__)

FORMATS = ("pte", "onnx", "tflite")
# Components whose first output is a waveform (STOI is checked on it).
AUDIO_COMPONENTS = frozenset({"pipeline", "vocoder", "separator", "enhancer", "svc"})


@dataclass
class LoadedModel:
    """A model ready to export: module, spec, example inputs, dynamic shapes, metadata."""

    name: str
    model: torch.nn.Module
    spec: Any
    example_inputs: tuple[Any, ...]
    dynamic_shapes: Any
    metadata: dict[str, Any]
    source: str
    audio_out: bool


def load_for_export(name_or_ckpt: str | os.PathLike[str], name: str | None = None) -> LoadedModel:
    """Build a registry preset or load a checkpoint, with its spec's inputs and metadata."""
    from models import registry
    from models.checkpoint import load_model

    text = str(name_or_ckpt)
    path = Path(text)
    extra_meta: dict[str, Any] = {}
    if path.exists():
        model, header = load_model(path)
        spec = registry.get(header.model)
        config = dict(header.config)
        extra_meta = speaker_metadata(header.extra.get("speakers"), header.extra.get("f0_stats"))
        source = f"checkpoint {path}"
        default_name = header.model
    else:
        if os.sep in text or text.endswith(".safetensors"):
            raise ExportError(f"checkpoint {text} does not exist")
        try:
            spec = registry.get(text)
        except Exception as exc:
            raise ExportError(
                f"{text!r} is neither an existing checkpoint path nor a registered model: {exc}"
            ) from exc
        model = spec.build()
        config = dict(spec.defaults)
        source = f"registry preset {spec.name} (untrained)"
        default_name = spec.name
    model.eval()
    if spec.program is not None:  # the device program around the trained module
        model = spec.program(model).eval()
        make_meta = getattr(model, "export_metadata", None)
        extra_meta = {**extra_meta, **(make_meta() if callable(make_meta) else {})}
    inputs = tuple(spec.example_inputs(model))
    dynamic = spec.dynamic_shapes(model)
    audio_out = spec.component in AUDIO_COMPONENTS or "audio-out" in getattr(spec, "tags", ())
    return LoadedModel(
        name=name or default_name,
        model=model,
        spec=spec,
        example_inputs=inputs,
        dynamic_shapes=dynamic,
        metadata={**spec_metadata(spec, config), **extra_meta},
        source=source,
        audio_out=audio_out,
    )


def streaming(lm: LoadedModel, frames: int) -> LoadedModel:
    """`lm`'s streaming program of `frames` frames a call (:func:`export_model`)."""
    make = getattr(lm.model, "streaming_program", None)
    if make is None:
        raise ExportError(f"{lm.name} has no streaming program (the near-causal Vox-TasNet and "
                          "the causal Chimera network have one)")
    if frames < 1:
        raise ExportError(f"--stream-frames {frames}: expected >= 1")
    try:
        prog = make(frames).eval()
    except ValueError as exc:
        raise ExportError(f"{lm.name}: {exc}") from None
    sr = int(lm.spec.audio.sample_rate)
    n, c = int(prog.chunk_samples), int(prog.channels)
    chunk = _tone(n / sr, sr)[:n].reshape(1, 1, n).expand(1, c, n).contiguous()
    state = tuple(prog.initial_state())
    if any(bool(t.any()) for t in state):
        raise ExportError(f"{lm.name}: its streaming program starts from a non-zero state, "
                          "which the metadata cannot describe")
    meta = {**lm.metadata, "component": "stream", "stream_frames": int(frames),
            "chunk_frames": n, "chunk_seconds": n / sr,
            "delay_samples": int(prog.delay_samples),
            "state_shapes": json.dumps([list(t.shape) for t in state]),
            "initial_state": "zeros",
            "example_input": "synthetic harmonic tone and the initial state"}
    return replace(lm, name=f"{lm.name}-stream", model=prog, example_inputs=(chunk, *state),
                   dynamic_shapes=None, metadata=meta, audio_out=False)


def _tone(seconds: float, sample_rate: int) -> torch.Tensor:
    """A deterministic harmonic tone (example input only, never calibration)."""
    n = int(round(seconds * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 220.0 * (1.0 + 0.02 * torch.sin(2 * math.pi * 5.0 * t))  # vibrato
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    wav = torch.zeros_like(t)
    for k in range(1, 6):
        wav = wav + 0.3 / k * torch.sin(k * phase)
    return wav.float()


def export_model(
    name_or_ckpt: str | os.PathLike[str],
    format: str,
    precision: str,
    out_dir: str | os.PathLike[str] | None,
    *,
    calibration: str | os.PathLike[str] | None = None,
    chunk_seconds: float | None = None,
    threads: int | None = None,
    gate: GateConfig | None = None,
    allow_fallback_ops: Iterable[str] = (),
    max_calibration_batches: int = 8,
    name: str | None = None,
    keep_fp32: Iterable[str] = (),
    stream_frames: int | None = None,
) -> ExportResult:
    """Export a preset or checkpoint to ``{model}_{backend}_{precision}.{ext}`` + sidecar.

    Args:
        name_or_ckpt: registry name or checkpoint path.
        format: ``pte`` (ExecuTorch / XNNPACK), ``onnx`` (onnxruntime) or ``tflite`` (LiteRT).
        precision: ``fp32`` or ``int8``.
        out_dir: directory for the files (None: gate only, write nothing).
        calibration: folder of audio files for int8 calibration (needs an input adapter);
            None calibrates on the spec's example inputs (recorded in the sidecar).
        chunk_seconds: export a fixed chunk of this length (built with the input adapter from
            the first calibration chunk, or from a synthetic tone); default: spec shapes.
        threads: runtime threads for the parity run.
        gate: parity thresholds.
        allow_fallback_ops: hot ops allowed on portable kernels (``.pte`` only).
        max_calibration_batches: calibration chunks taken from `calibration`.
        name: model name for the files (default: the registry name).
        keep_fp32: int8: submodules (dotted names) left in fp32, added to the model's own
            ``export_keep_fp32`` attribute when it has one (e.g. an STFT front end). A model
            with an ``export_int8_modules`` attribute has only those submodules quantized
            (``.pte``), so arithmetic between them (a sampler, an F0 shift) stays fp32.
        stream_frames: export the model's streaming program instead (a model with a
            ``streaming_program(frames)`` method: the near-causal Vox-TasNet, the causal
            Chimera network): one chunk of that many frames and the state in, the output
            chunk and the next state out; the metadata carries the chunk, the delay and the
            state's shapes, so an app can call it chunk after chunk.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    check_precision(precision)
    lm = load_for_export(name_or_ckpt, name=name)
    if stream_frames is not None:
        if calibration is not None or chunk_seconds is not None:
            raise ExportError("--stream-frames fixes the chunk and calibrates on it: give "
                              "neither --calibration nor --chunk-seconds with it")
        lm = streaming(lm, stream_frames)
    sr = int(lm.spec.audio.sample_rate)
    inputs, dynamic = lm.example_inputs, lm.dynamic_shapes
    meta = dict(lm.metadata)
    calib: CalibrationSet | None = None
    adapter = None
    if calibration is not None or chunk_seconds is not None:
        adapter = resolve_adapter(lm.spec, lm.model, inputs)
    if calibration is not None:
        assert adapter is not None
        seconds = chunk_seconds or float(lm.spec.audio.chunk_seconds) or 1.0
        calib = calibration_from_dir(
            calibration,
            adapter,
            sample_rate=sr,
            chunk_seconds=seconds,
            max_batches=max_calibration_batches,
        )
    if chunk_seconds is not None:
        if chunk_seconds <= 0:
            raise ExportError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        frames = getattr(lm.model, "config", {}).get("noise_frames")
        hop = int(lm.spec.audio.hop_length or 0)
        if isinstance(frames, int) and hop and chunk_seconds * sr > (frames - 1) * hop:
            longest = (frames - 1) * hop / sr
            raise ExportError(
                f"--chunk-seconds {chunk_seconds:g}: {lm.name} holds a noise buffer of {frames} "
                f"frames, so one call takes at most {longest:.3f} s; give a shorter chunk"
            )
        assert adapter is not None
        if calib is not None:
            inputs = tuple(calib.inputs[0])
            meta["example_input"] = "first calibration chunk"
        else:
            inputs = tuple(adapter(_tone(chunk_seconds, sr), sr))
            meta["example_input"] = "synthetic harmonic tone"
        dynamic = None  # a fixed chunk, recorded in the metadata
        meta["chunk_seconds"] = float(chunk_seconds)
    if precision == "int8" and calib is None:
        calib = calibration_from_examples(inputs)
        if "example_input" in meta:
            calib.source["example_input"] = meta["example_input"]
    audio_sr = stoi_sample_rate(lm.model, sr) if lm.audio_out else None
    meta["source"] = lm.source
    keep = tuple(dict.fromkeys([*getattr(lm.model, "export_keep_fp32", ()), *keep_fp32]))
    log.info("exporting %s (%s) to %s %s", lm.name, lm.source, format, precision)
    common: dict[str, Any] = dict(
        precision=precision,
        calibration=calib,
        metadata=meta,
        gate=gate,
        audio_sample_rate=audio_sr,
        threads=threads,
    )
    if format == "pte":
        from export.pte import export_pte

        return export_pte(
            lm.model,
            inputs,
            out_dir,
            lm.name,
            dynamic_shapes=dynamic,
            allow_fallback_ops=allow_fallback_ops,
            keep_fp32=keep,
            only_modules=getattr(lm.model, "export_int8_modules", None),
            **common,
        )
    if format == "onnx":
        from export.onnx_export import export_onnx

        return export_onnx(
            lm.model, inputs, out_dir, lm.name, dynamic_shapes=dynamic, keep_fp32=keep, **common
        )
    from export.tflite import export_tflite

    return export_tflite(lm.model, inputs, out_dir, lm.name, **common)
