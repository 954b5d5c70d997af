"""ONNX export (``torch.onnx.export``, dynamo exporter) run in onnxruntime, behind the parity gate.

fp32: ``torch.onnx.export(model, inputs, dynamo=True, dynamic_shapes=...)``, the exporter's graph
optimisation, metadata in ``metadata_props``, then ``onnx.checker.check_model(full_check=True)``.
int8: onnxruntime's static quantization (``quantize_static``) of that fp32 graph in QDQ format
with per-channel symmetric int8 weights and uint8 activations around the weight-bearing ops
(Conv, ConvTranspose, MatMul, Gemm; element-wise ops stay fp32), calibrated (MinMax) on the same
calibration inputs as the ``.pte`` path. The result is loaded in an onnxruntime CPU session and
gated like every other format (:mod:`export.parity`) before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from export.artifact import ExportResult
from export.calibration import CalibrationSet
from export.errors import ExportError
from export.job import prepare_export
from export.parity import GateConfig
from export.runtime import OnnxRunner

log = logging.getLogger(__name__)
OPSET = 18
# Like the XNNPACK quantizer, only the weight-bearing ops are quantized; element-wise ops
# (log, softmax, norms) stay fp32, where linear int8 steps would wreck small values.
ONNX_QUANT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@contextlib.contextmanager
def _quiet_exporter_registry() -> Iterator[None]:
    """The exporter warns once per missing optional package (``torchvision is not installed.
    Skipping torchvision::nms``...), through torch's own log handler, at each export; those
    lines show only when the root logger is at INFO or below (``compress -v``)."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old = log.level
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def to_onnx_fp32(
    model: torch.nn.Module,
    inputs: tuple[Any, ...],
    dynamic_shapes: Any,
    metadata: Mapping[str, Any],
    what: str,
) -> bytes:
    """fp32 ONNX bytes of `model` (dynamo exporter, optimised, checked) with `metadata`."""
    import onnx

    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), _quiet_exporter_registry():
            program = torch.onnx.export(
                model,
                inputs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=OPSET,
                verbose=False,
                optimize=True,
            )
    except Exception as exc:  # the exporter raises torch.onnx.errors.* and export errors
        raise ExportError(f"{what}: torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    if program is None:
        raise ExportError(f"{what}: torch.onnx.export returned no program")
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"{what}: onnx.checker rejected the graph: {exc}") from exc
    return bytes(proto.SerializeToString())


class _Reader:
    """onnxruntime CalibrationDataReader over calibration input tuples."""

    def __init__(self, names: Sequence[str], calibration: CalibrationSet):
        self._names = list(names)
        self._batches = calibration.inputs
        self._it: Iterator[tuple[Any, ...]] = iter(self._batches)

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        return {n: x.detach().cpu().numpy() for n, x in zip(self._names, batch)}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def nodes_in_modules(model: Any, prefixes: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes the dynamo exporter attributed to modules under `prefixes`."""
    import ast

    wanted = tuple(p.strip(".") for p in prefixes if p.strip("."))
    names = []
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key != "pkg.torch.onnx.name_scopes":
                continue
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            path = ".".join(s for s in scopes[:-1] if s)
            parts = [s for s in scopes if s]
            if any(path == p or path.startswith(p + ".") or p in parts for p in wanted):
                names.append(node.name)
    return names


def quantize_onnx_int8(
    fp32: bytes, calibration: CalibrationSet, what: str, keep_fp32: Sequence[str] = ()
) -> bytes:
    """Static int8 (QDQ, per-channel weights) of an fp32 ONNX model with onnxruntime.

    Nodes of the submodules named in `keep_fp32` are excluded from quantization.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in OnnxRunner(fp32).session.get_inputs()]
    reader_cls = type("CalibrationReader", (_Reader, CalibrationDataReader), {})
    with tempfile.TemporaryDirectory(prefix="onnx_q_") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32)
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; keep the fp32 graph
            log.warning(
                "%s: onnxruntime quant_pre_process failed (%s); quantizing as is", what, exc
            )
            pre = src
        exclude = (
            sorted(
                set(nodes_in_modules(onnx.load_from_string(fp32), keep_fp32))
                | set(nodes_in_modules(onnx.load(str(pre)), keep_fp32))
            )
            if keep_fp32
            else []
        )
        try:
            quantize_static(
                str(pre),
                str(dst),
                reader_cls(names, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(ONNX_QUANT_OPS),
                nodes_to_exclude=exclude,
            )
        except Exception as exc:  # onnxruntime.quantization raises plain exceptions
            raise ExportError(f"{what}: onnxruntime static quantization failed: {exc}") from exc
        proto = onnx.load(str(dst))
    fp32_meta = onnx.load_from_string(fp32).metadata_props
    del proto.metadata_props[:]
    for p in fp32_meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = p.key, ("int8" if p.key == "precision" else p.value)
    return bytes(proto.SerializeToString())


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Sequence[Any],
    out_dir: str | os.PathLike[str] | None,
    name: str,
    *,
    precision: str = "fp32",
    calibration: CalibrationSet | None = None,
    dynamic_shapes: Any = None,
    metadata: Mapping[str, Any] | None = None,
    gate: GateConfig | None = None,
    audio_sample_rate: int | None = None,
    threads: int | None = None,
    keep_fp32: Sequence[str] = (),
) -> ExportResult:
    """Export `model` to ``{name}_onnxruntime_{precision}.onnx`` in `out_dir`, gated on parity.

    Arguments as in :func:`export.pte.export_pte`. Raises ExportError / ParityError.
    """
    job = prepare_export(
        model,
        example_inputs,
        name,
        fmt="onnx",
        backend="onnxruntime",
        precision=precision,
        calibration=calibration,
        dynamic_shapes=dynamic_shapes,
        metadata=metadata,
        gate=gate,
        meta_precision="fp32",  # converted in fp32, quantized afterwards
    )
    what, inputs, meta = job.what, job.inputs, job.meta
    with torch.no_grad():
        data = to_onnx_fp32(model, inputs, dynamic_shapes, meta, what)
    if precision == "int8":
        assert job.calibration is not None
        data = quantize_onnx_int8(data, job.calibration, what, keep_fp32=keep_fp32)
        meta["precision"] = "int8"
    return job.finish(
        data,
        OnnxRunner(data, threads=threads),
        out_dir=out_dir,
        audio_sample_rate=audio_sample_rate,
        extra={
            "onnx_opset": OPSET,
            "onnx_exporter": "torch.onnx.export(dynamo=True)",
            "keep_fp32": list(keep_fp32) if precision == "int8" else [],
        },
    )
