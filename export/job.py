"""The steps every exporter shares: validate, reference outputs, then gate and write.

:func:`prepare_export` does what `.pte`, `.onnx` and `.tflite` exports all need before the
format-specific conversion (argument checks, default gate and calibration, metadata, parity
inputs and eager reference outputs); :meth:`ExportJob.finish` runs the converted program
through the parity gate and writes it (:func:`export.artifact.gate_and_write`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from export.artifact import ExportResult, artifact_stem, gate_and_write
from export.calibration import CalibrationSet, calibration_from_examples
from export.common import (
    check_inputs,
    check_precision,
    describe_dynamic,
    input_frames,
    max_dynamic_frames,
    parity_inputs,
)
from export.metadata import build_metadata
from export.parity import GateConfig, reference_outputs


@dataclass
class ExportJob:
    """One export in progress: validated inputs, metadata and the eager references."""

    name: str
    fmt: str
    precision: str
    what: str
    inputs: tuple[Any, ...]
    gate: GateConfig
    calibration: CalibrationSet | None
    dynamic: dict[str, Any] | None
    meta: dict[str, Any]
    checks: list[Any]
    refs: list[Any]

    def finish(
        self,
        data: bytes,
        runner: Callable[..., list[torch.Tensor]],
        *,
        out_dir: str | os.PathLike[str] | None,
        audio_sample_rate: int | None,
        delegation: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ExportResult:
        """Gate the converted program against the references; write it when it passes."""
        source = (
            self.calibration.source if self.calibration is not None else {"kind": "none (fp32)"}
        )
        return gate_and_write(
            model_name=self.name,
            fmt=self.fmt,
            precision=self.precision,
            data=data,
            runner=runner,
            parity_inputs=self.checks,
            refs=self.refs,
            gate=self.gate,
            audio_sample_rate=audio_sample_rate,
            out_dir=out_dir,
            metadata=self.meta,
            calibration=source,
            dynamic=self.dynamic,
            delegation=delegation,
            extra=extra,
        )


def prepare_export(
    model: torch.nn.Module,
    example_inputs: Sequence[Any],
    name: str,
    *,
    fmt: str,
    backend: str,
    precision: str,
    calibration: CalibrationSet | None,
    dynamic_shapes: Any,
    metadata: Mapping[str, Any] | None,
    gate: GateConfig | None,
    meta_precision: str | None = None,
    precheck: Callable[[str], None] | None = None,
) -> ExportJob:
    """Validate the arguments and compute the eager references (model put in eval mode).

    ``meta_precision`` overrides the precision first written to the metadata (ONNX converts in
    fp32 and quantizes afterwards); ``precheck(what)`` runs after the cheap argument checks and
    before any model work (e.g. "is the optional runtime installed?").
    """
    check_precision(precision)
    artifact_stem(name, fmt, precision)  # validates the name before any work
    what = f"{name} ({fmt} {precision})"
    if precheck is not None:
        precheck(what)
    inputs = check_inputs(example_inputs, what)
    model.eval()
    if precision == "int8" and calibration is None:
        calibration = calibration_from_examples(inputs)
    dynamic = dynamic_shapes is not None
    desc = describe_dynamic(dynamic_shapes)
    meta = build_metadata(
        metadata,
        model_name=name,
        precision=meta_precision or precision,
        backend=backend,
        input_frames=input_frames(inputs),
        dynamic=dynamic,
        max_frames=max_dynamic_frames(desc),
    )
    checks = parity_inputs(inputs, calibration, dynamic=dynamic)
    return ExportJob(
        name=name,
        fmt=fmt,
        precision=precision,
        what=what,
        inputs=inputs,
        gate=gate or GateConfig(),
        calibration=calibration,
        dynamic=desc,
        meta=meta,
        checks=checks,
        refs=reference_outputs(model, checks),
    )
