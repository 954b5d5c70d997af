"""LiteRT ``.tflite`` export with ``litert-torch``, run in ``ai-edge-litert``, parity-gated.

Needs the optional ``[tflite]`` extra (``pip install 'lhq-mobile[tflite]'``: ``ai-edge-litert``,
``litert-torch``; heavy, pulls jax and transformers). Without it :func:`export_tflite` raises
:class:`~export.errors.ExportError` saying so.

fp32: ``litert_torch.convert(model, inputs)``. int8: PT2E with litert-torch's own
``PT2EQuantizer`` (symmetric, per-channel weights, static activations), calibrated on the same
inputs as the other formats, then converted with ``QuantConfig(pt2e_quantizer=...)``. The
model is exported at the fixed shapes of the example inputs (the chunk length goes to the
metadata in the sidecar).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from export.artifact import ExportResult
from export.calibration import CalibrationSet
from export.errors import ExportError
from export.job import prepare_export
from export.parity import GateConfig
from export.runtime import TfliteRunner, litert_available

INSTALL_HINT = (
    "the .tflite format needs the [tflite] extra: pip install 'lhq-mobile[tflite]' "
    "(ai-edge-litert, litert-torch)"
)


def _convert(
    model: torch.nn.Module,
    inputs: tuple[Any, ...],
    precision: str,
    calibration: CalibrationSet | None,
    what: str,
) -> bytes:
    import litert_torch

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            if precision == "int8":
                from litert_torch.quantize.pt2e_quantizer import (
                    PT2EQuantizer,
                    get_symmetric_quantization_config,
                )
                from litert_torch.quantize.quant_config import QuantConfig
                from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

                from export import pt2e_patterns

                pt2e_patterns.install()
                assert calibration is not None
                quantizer = PT2EQuantizer().set_global(
                    get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
                )
                graph = torch.export.export(model, inputs, strict=False).module()
                prepared = prepare_pt2e(graph, quantizer)
                for batch in calibration.inputs:
                    prepared(*batch)
                converted = convert_pt2e(prepared, fold_quantize=False)
                edge = litert_torch.convert(
                    converted, inputs, quant_config=QuantConfig(pt2e_quantizer=quantizer)
                )
            else:
                edge = litert_torch.convert(model, inputs)
            with tempfile.TemporaryDirectory(prefix="tflite_") as tmp:
                path = Path(tmp, "model.tflite")
                edge.export(str(path))
                return path.read_bytes()
    except ExportError:
        raise
    except Exception as exc:  # litert-torch raises from torch.export, MLIR and the converter
        raise ExportError(
            f"{what}: litert-torch conversion failed: {type(exc).__name__}: {exc}"
        ) from exc


def export_tflite(
    model: torch.nn.Module,
    example_inputs: Sequence[Any],
    out_dir: str | os.PathLike[str] | None,
    name: str,
    *,
    precision: str = "fp32",
    calibration: CalibrationSet | None = None,
    metadata: Mapping[str, Any] | None = None,
    gate: GateConfig | None = None,
    audio_sample_rate: int | None = None,
    threads: int | None = None,
) -> ExportResult:
    """Export `model` to ``{name}_litert_{precision}.tflite`` in `out_dir`, gated on parity.

    Arguments as in :func:`export.pte.export_pte` (fixed shapes only).
    Raises ExportError (also when the [tflite] extra is missing) / ParityError.
    """
    def require_litert(what: str) -> None:
        if not litert_available():
            raise ExportError(f"{what}: {INSTALL_HINT}")

    job = prepare_export(
        model,
        example_inputs,
        name,
        fmt="tflite",
        backend="litert",
        precision=precision,
        calibration=calibration,
        dynamic_shapes=None,  # fixed shapes only
        metadata=metadata,
        gate=gate,
        precheck=require_litert,
    )
    with torch.no_grad():
        data = _convert(model, job.inputs, precision, job.calibration, job.what)
    return job.finish(
        data,
        TfliteRunner(data, threads=threads),
        out_dir=out_dir,
        audio_sample_rate=audio_sample_rate,
        extra={"tflite_converter": "litert_torch.convert"},
    )
