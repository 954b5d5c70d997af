"""Steps shared by every backend: checking inputs, describing dynamic shapes, parity inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from export.calibration import CalibrationSet
from export.errors import ExportError
from export.parity import PRECISIONS

MAX_EXTRA_PARITY_INPUTS = 2


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


def check_inputs(example_inputs: Sequence[Any], what: str) -> tuple[Any, ...]:
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    inputs = tuple(example_inputs)
    if not inputs:
        raise ExportError(f"{what}: example_inputs is empty; give the model's positional inputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise ExportError(
                f"{what}: example input {i} is a {type(x).__name__}; exported programs take tensors"
            )
    # a strided view (e.g. a batch_first nn.LSTM's output, a transpose) would give the program
    # that input's dim order; the runtime is then fed a contiguous buffer and XNNPACK fails
    # ("Propagating input shapes failed"), leaving the output unwritten
    return tuple(x.contiguous() for x in inputs)


def _dims(entry: Any) -> dict[str, Any] | None:
    if entry is None:
        return None
    if isinstance(entry, Mapping):
        return {
            str(axis): {
                "name": getattr(d, "__name__", str(d)),
                "min": getattr(d, "min", None),
                "max": getattr(d, "max", None),
            }
            for axis, d in entry.items()
        }
    if isinstance(entry, (list, tuple)):
        return {
            str(i): {
                "name": getattr(d, "__name__", str(d)),
                "min": getattr(d, "min", None),
                "max": getattr(d, "max", None),
            }
            for i, d in enumerate(entry)
            if d is not None
        }
    return {"value": str(entry)}


def describe_dynamic(dynamic_shapes: Any) -> dict[str, Any] | None:
    """JSON-ready description ``{input: {axis: {name, min, max}}}`` of `torch.export` shapes."""
    if dynamic_shapes is None:
        return None
    if isinstance(dynamic_shapes, Mapping):
        return {str(k): _dims(v) for k, v in dynamic_shapes.items()}
    return {str(i): _dims(v) for i, v in enumerate(dynamic_shapes)}


def max_dynamic_frames(desc: Mapping[str, Any] | None) -> int | None:
    """The largest upper bound of any dynamic axis (None when fixed or unbounded)."""
    if not desc:
        return None
    bounds = [
        int(axis["max"])
        for dims in desc.values()
        if isinstance(dims, Mapping)
        for axis in dims.values()
        if isinstance(axis, Mapping) and isinstance(axis.get("max"), int)
    ]
    return max(bounds) if bounds else None


def parity_inputs(
    example_inputs: tuple[Any, ...],
    calibration: CalibrationSet | None,
    dynamic: bool,
) -> list[tuple[Any, ...]]:
    """Inputs the gate runs on: the example inputs plus up to two calibration inputs.

    Calibration inputs are added when they came from real audio and, for fixed-shape programs,
    only when their shapes equal the example inputs'.
    """
    out = [example_inputs]
    if calibration is None or calibration.source.get("kind") == "example_inputs":
        return out
    shapes = [tuple(x.shape) for x in example_inputs]
    for inputs in calibration.inputs:
        if len(out) > MAX_EXTRA_PARITY_INPUTS:
            break
        if dynamic or [tuple(x.shape) for x in inputs] == shapes:
            out.append(tuple(inputs))
    return out


def input_frames(example_inputs: tuple[Any, ...]) -> int | None:
    """Time length (last axis) of the first input with at least 2 dims, else None."""
    for x in example_inputs:
        if isinstance(x, torch.Tensor) and x.ndim >= 2:
            return int(x.shape[-1])
    return None


def fill_zero_parameters(model: torch.nn.Module, std: float = 0.05, seed: int = 0) -> list[str]:
    """Fill every all-zero parameter with seeded N(0, std²) noise; return their names.

    Untrained presets may zero-initialise output layers (diffusion decoders do), so their
    output is identically zero and any parity figure is vacuous. Benchmarks and tests of
    untrained presets call this first; trained checkpoints never need it.
    """
    g = torch.Generator().manual_seed(seed)
    filled = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() and not bool(p.detach().abs().sum()):
                p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
                filled.append(name)
    return filled
