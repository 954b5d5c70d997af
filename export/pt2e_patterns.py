"""One trace per conv-BatchNorm pattern per process, instead of a dozen per int8 preparation
and 96 more per conversion of a model with a BatchNorm.

Two library steps trace fixed conv-BN patterns with ``torch.export`` on every call:

* the XNNPACK quantizer's annotation (``prepare_pt2e``) matches its conv-BN(-ReLU) QAT
  patterns for conv1d / conv2d and the transposed convs: 12 exports, ~3.5 s on this 2-core
  host, for **every** int8 preparation, BatchNorm or not: every int8 export, every latency
  probe at int8, every group of the quantize stage's sensitivity analysis;
* torchao's ``convert_pt2e`` calls ``_fold_conv_bn_qat`` on every graph that still holds a
  BatchNorm node (a pre-activation BN, or one that
  :func:`export.pte.shield_shared_conv_outputs_from_bn_fusion` kept apart from its conv), even
  after plain PTQ. That function builds the quantized-QAT conv-BN patterns and their folded
  replacements (12 pairs for each of conv1d, conv2d and both transposed convs) and traces
  each one again: 96 exports, 15-20 s here, for any int8 program of a model with a BatchNorm
  left (the separators), however small.

The traced patterns depend only on the pattern's code and closure (its flags and conv
function) and on the signature of the example inputs (their values are random and are not
baked in: the patterns take them as inputs and are matched with ``ignore_literals``), so
:func:`install` memoises torchao's tracing helper, as both modules see it, on exactly that,
and returns a deep copy each time (the annotator edits the pattern graph; the subgraph
rewriter copies nodes and attributes out of the replacement graph). The matching,
annotation and folding are the libraries' own, unchanged:
``tests/export/test_pt2e_patterns.py`` checks that a program converted with the memo is
identical to one converted without it, and ``benchmarks/pt2e_patterns.py`` measures both.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any

import torch

_LOCK = threading.Lock()
_CACHE: dict[Hashable, torch.fx.GraphModule] = {}
_STATS = {"traced": 0, "reused": 0}


def _sig(value: Any) -> Hashable:
    """A hashable signature of a pattern input or closure value; raises TypeError for values
    it does not understand (the call is then traced as torchao would)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), str(value.device))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_sig(v) for v in value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if callable(value):
        hash(value)
        return ("callable", value)
    raise TypeError(f"no signature for {type(value).__name__}")


def pattern_key(pattern: Callable[..., Any], example_inputs: tuple[Any, ...], is_cuda: bool,
                kwargs: dict[str, Any]) -> Hashable | None:
    """What a traced pattern depends on, or None when it cannot be told (then no memo).
    torchao hands its patterns over as ``WrapperModule(fn)``: a module without parameters or
    buffers whose forward calls ``fn``; that function is what is keyed."""
    if isinstance(pattern, torch.nn.Module):
        from torchao.quantization.pt2e.export_utils import WrapperModule

        if (type(pattern) is not WrapperModule or any(True for _ in pattern.parameters())
                or any(True for _ in pattern.buffers())):
            return None
        pattern = pattern.fn
    code = getattr(pattern, "__code__", None)
    if code is None:
        return None
    try:
        cells = tuple(_sig(c.cell_contents) for c in (pattern.__closure__ or ()))
        defaults = _sig(tuple(pattern.__defaults__ or ()))
        return (code, cells, defaults, _sig(tuple(example_inputs)), bool(is_cuda),
                tuple(sorted((k, _sig(v)) for k, v in kwargs.items())))
    except (TypeError, ValueError):  # an empty cell raises ValueError
        return None


# where the tracing helper is called from, each module holding its own reference to it
_USERS = ("torchao.quantization.pt2e.qat_utils",
          "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils")


def _memoised(traced: Callable[..., torch.fx.GraphModule]) -> Callable[..., torch.fx.GraphModule]:
    def memoised(pattern: Callable[..., Any], example_inputs: tuple[Any, ...],
                 is_cuda: bool = False, **kwargs: Any) -> torch.fx.GraphModule:
        key = pattern_key(pattern, example_inputs, is_cuda, kwargs)
        if key is None:
            return traced(pattern, example_inputs, is_cuda, **kwargs)
        with _LOCK:
            gm = _CACHE.get(key)
        if gm is None:
            gm = traced(pattern, example_inputs, is_cuda, **kwargs)
            with _LOCK:
                _CACHE.setdefault(key, gm)
                _STATS["traced"] += 1
        else:
            with _LOCK:
                _STATS["reused"] += 1
        return copy.deepcopy(gm)  # callers edit the pattern graph (dead code, recompile)

    memoised._memoised = True  # type: ignore[attr-defined]
    memoised.__wrapped__ = traced  # type: ignore[attr-defined]
    return memoised


def install() -> None:
    """Memoise the pattern tracing of torchao's convert and of the XNNPACK quantizer's
    annotation in this process (idempotent)."""
    import importlib

    with _LOCK:
        for name in _USERS:
            mod = importlib.import_module(name)
            traced = mod._get_aten_graph_module_for_pattern
            if not getattr(traced, "_memoised", False):
                mod._get_aten_graph_module_for_pattern = _memoised(traced)


def uninstall() -> None:
    """Put the libraries' own tracing back and forget the traced patterns (for a comparison)."""
    import importlib

    with _LOCK:
        for name in _USERS:
            mod = importlib.import_module(name)
            fn = mod._get_aten_graph_module_for_pattern
            if getattr(fn, "_memoised", False):
                mod._get_aten_graph_module_for_pattern = fn.__wrapped__
        _CACHE.clear()
        _STATS.update(traced=0, reused=0)


def stats() -> dict[str, int]:
    """How many patterns were traced and how many calls reused one, in this process."""
    return dict(_STATS)
