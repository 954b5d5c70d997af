"""Run exported programs in their real runtimes and read their metadata back.

* ``.pte`` — :class:`PteRunner` loads the program with ``executorch.runtime.Runtime`` (the
  pybindings of the C++ runtime with the XNNPACK backend and portable kernels);
  :func:`load_pte_metadata` calls the ``get_metadata_json`` constant method.
* ``.onnx`` — :class:`OnnxRunner` on onnxruntime's CPU execution provider;
  :func:`load_onnx_metadata` reads ``metadata_props``.
* ``.tflite`` — :class:`TfliteRunner` on ``ai_edge_litert``'s Interpreter (the optional
  ``[tflite]`` extra).

Each runner takes the model's positional inputs (tensors) and returns a list of tensors, and
sets its intra-op thread count (`threads`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.errors import ExportError
from export.metadata import JSON_METHOD

Source = bytes | str | os.PathLike[str]


def _read(source: Source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise ExportError(f"exported program {path} does not exist")
    return path.read_bytes()


def _tensor_inputs(inputs: Sequence[Any], what: str) -> list[torch.Tensor]:
    out = []
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise ExportError(
                f"{what}: input {i} is a {type(x).__name__}; only tensors are supported"
            )
        out.append(x.contiguous())
    return out


def set_executorch_threads(threads: int) -> None:
    """Set the size of ExecuTorch's CPU threadpool (used by XNNPACK)."""
    from executorch.extension.pybindings import portable_lib

    if threads < 1:
        raise ExportError(f"threads must be >= 1, got {threads}")
    portable_lib._unsafe_reset_threadpool(int(threads))


def check_pte_bytes(data: bytes) -> None:
    """Refuse bytes that are not an ExecuTorch program before the runtime sees them: a
    ``.pte`` is a flatbuffer whose file identifier, bytes 4–8, is ``ET`` and two digits
    (``ET12``). The runtime given random bytes may not return (measured: no answer in 60 s on
    2 KB of random bytes, ``benchmarks/faults.py``)."""
    ident = data[4:8]
    if len(data) < 8 or ident[:2] != b"ET" or not ident[2:].isdigit():
        raise ExportError(f"not an ExecuTorch program (its file identifier, bytes 4-8, is "
                          f"{ident!r}; a .pte has b'ET' and two digits there)")


class PteRunner:
    """A loaded ``.pte`` program: ``runner(*inputs) -> list[Tensor]``."""

    def __init__(self, source: Source, method: str = "forward", threads: int | None = None):
        from executorch.runtime import Runtime

        self.data = _read(source)
        check_pte_bytes(self.data)
        if threads is not None:
            set_executorch_threads(threads)
        try:
            self.program = Runtime.get().load_program(self.data)
        except Exception as exc:  # the runtime raises RuntimeError with its status code
            raise ExportError(f"ExecuTorch could not load the program: {exc}") from exc
        if method not in self.program.method_names:
            raise ExportError(
                f"program has no method {method!r}; methods: {sorted(self.program.method_names)}"
            )
        try:
            self.method = self.program.load_method(method)
        except Exception as exc:  # e.g. XNNPACK rejecting a node when it compiles the graph
            raise ExportError(
                f"ExecuTorch could not load method {method!r} (the log above names the failing "
                f"backend node): {exc}"
            ) from exc

    def __call__(self, *inputs: Any) -> list[torch.Tensor]:
        outs = self.method.execute(_tensor_inputs(inputs, "pte"))
        return [o if isinstance(o, torch.Tensor) else torch.as_tensor(o) for o in outs]

    def constant(self, name: str) -> Any:
        """Value of a constant method (e.g. ``get_sample_rate``)."""
        if name not in self.program.method_names:
            raise ExportError(
                f"program has no constant method {name!r}; "
                f"methods: {sorted(self.program.method_names)}"
            )
        out = self.program.load_method(name).execute([])
        return out[0] if len(out) == 1 else list(out)


def run_pte(
    source: Source, inputs: Sequence[Any], threads: int | None = None
) -> list[torch.Tensor]:
    """Run ``forward`` of a ``.pte`` (bytes or path) once."""
    return PteRunner(source, threads=threads)(*inputs)


def load_pte_metadata(source: Source) -> dict[str, Any]:
    """Metadata baked into a ``.pte`` (the ``get_metadata_json`` constant method)."""
    runner = PteRunner(source, method=JSON_METHOD)
    value = runner.constant(JSON_METHOD)
    try:
        return dict(json.loads(value))
    except (TypeError, ValueError) as exc:
        raise ExportError(f"{JSON_METHOD} of the program is not a JSON object: {value!r}") from exc


class OnnxRunner:
    """An onnxruntime CPU session: ``runner(*inputs) -> list[Tensor]``."""

    def __init__(self, source: Source, threads: int | None = None):
        import onnxruntime as ort

        self.data = _read(source)
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(self.data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ExportError(f"onnxruntime could not load the model: {exc}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: Any) -> list[torch.Tensor]:
        xs = _tensor_inputs(inputs, "onnx")
        if len(xs) != len(self.input_names):
            raise ExportError(
                f"onnx model takes {len(self.input_names)} inputs {self.input_names}, got {len(xs)}"
            )
        feed = {n: x.detach().cpu().numpy() for n, x in zip(self.input_names, xs)}
        return [torch.from_numpy(np.asarray(o)) for o in self.session.run(None, feed)]


def run_onnx(
    source: Source, inputs: Sequence[Any], threads: int | None = None
) -> list[torch.Tensor]:
    return OnnxRunner(source, threads=threads)(*inputs)


def load_onnx_metadata(source: Source) -> dict[str, str]:
    """``metadata_props`` of an ONNX model (values are strings)."""
    import onnx

    model = onnx.load_from_string(_read(source))
    return {p.key: p.value for p in model.metadata_props}


def litert_available() -> bool:
    """True when the ``[tflite]`` extra (``ai_edge_litert`` and ``litert_torch``) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("ai_edge_litert", "litert_torch"))


class TfliteRunner:
    """A LiteRT interpreter on a ``.tflite`` model: ``runner(*inputs) -> list[Tensor]``."""

    def __init__(self, source: Source, threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ExportError(
                "running .tflite needs the [tflite] extra: pip install 'lhq-mobile[tflite]' "
                "(ai-edge-litert, litert-torch)"
            ) from exc
        self.data = _read(source)
        self.interpreter = Interpreter(model_content=self.data, num_threads=threads or 1)
        sigs = self.interpreter.get_signature_list()
        if not sigs:
            raise ExportError("the .tflite model has no signature")
        self.signature = next(iter(sigs))
        names = list(sigs[self.signature]["inputs"])
        self.input_names = sorted(names, key=_arg_index)
        self.output_names = sorted(sigs[self.signature]["outputs"], key=_arg_index)
        self.runner = self.interpreter.get_signature_runner(self.signature)
        self.input_details = self.runner.get_input_details()
        self.output_details = self.runner.get_output_details()

    def __call__(self, *inputs: Any) -> list[torch.Tensor]:
        xs = _tensor_inputs(inputs, "tflite")
        if len(xs) != len(self.input_names):
            raise ExportError(
                f"tflite model takes {len(self.input_names)} inputs {self.input_names}, "
                f"got {len(xs)}"
            )
        feed = {
            n: _quantize_io(x.detach().cpu().numpy(), self.input_details[n])
            for n, x in zip(self.input_names, xs)
        }
        out = self.runner(**feed)
        return [
            torch.from_numpy(_dequantize_io(np.array(out[n]), self.output_details[n]))
            for n in self.output_names
        ]


def _quantize_io(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Quantize a float input for an int8 / uint8 model input (scale, zero point of the tensor)."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and x.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return x.astype(dtype, copy=False)


def _dequantize_io(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if y.dtype.kind in "iu" and scale:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y


def _arg_index(name: str) -> tuple[int, str]:
    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else 0, name)
