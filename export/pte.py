"""ExecuTorch ``.pte`` export on the XNNPACK backend, fp32 or int8, behind the parity gate.

Pipeline (ExecuTorch's documented XNNPACK flow)::

    torch.export.export(model, inputs, dynamic_shapes)          # ATen graph
      [int8] prepare_pt2e(graph, XNNPACKQuantizer(per-channel symmetric))
             -> run calibration inputs -> convert_pt2e -> torch.export.export again
    to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                constant_methods=metadata)      # XNNPACK subgraphs
    .to_executorch().buffer                                     # .pte bytes

The bytes are then loaded in the ExecuTorch runtime and run on the parity inputs; the gate
(:mod:`export.parity`) must pass and no hot op may fall back to portable kernels
(:mod:`export.delegation`) before the file and its sidecar are written.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from export.artifact import ExportResult
from export.calibration import CalibrationSet
from export.delegation import DelegationReport, check_fallbacks, delegation_report
from export.errors import ExportError
from export.job import prepare_export
from export.metadata import constant_methods
from export.parity import GateConfig
from export.runtime import PteRunner

log = logging.getLogger(__name__)


def torch_export(
    model: torch.nn.Module | torch.fx.GraphModule,
    inputs: tuple[Any, ...],
    dynamic_shapes: Any,
    what: str,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` (non-strict) with errors turned into :class:`ExportError`."""
    try:
        return torch.export.export(model, inputs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:  # torch raises many types (UserError, GuardOnDataDependent...)
        raise ExportError(f"{what}: torch.export failed: {type(exc).__name__}: {exc}") from exc


def fold_constants(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Precompute every op whose inputs are all constants (ExecuTorch's constant propagation).

    A sampler with a fixed number of steps starts from a fixed noise buffer at a fixed time, so
    e.g. the decoder's input projection of that noise is a constant. Left in the graph, such a
    convolution has a constant input, which XNNPACK rejects once its consumers are quantized
    ("Failed to create convolution node ... invalid parameter" when the program loads).
    """
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    return constant_prop_pass(program)


def quantize_pt2e_xnnpack(
    model: torch.nn.Module,
    example_inputs: tuple[Any, ...],
    calibration: CalibrationSet,
    dynamic_shapes: Any = None,
    what: str = "model",
    keep_fp32: Sequence[str] = (),
    only_modules: Sequence[str] | None = None,
) -> torch.fx.GraphModule:
    """PT2E int8: XNNPACK quantizer, symmetric per-channel weights, static activations.

    Submodules named in `keep_fp32` (dotted paths, prefixes included) are not quantized; with
    `only_modules`, nothing outside those submodules is (per-layer sensitivity analysis).
    Returns the converted graph module (quantize / dequantize pairs around int8 ops).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from export import pt2e_patterns

    pt2e_patterns.install()  # conv-BN patterns traced once per process, not per call

    class _Quantizer(XNNPACKQuantizer):
        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return float_scalars_to_attrs(model)

        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            fence_filtered_cats(model, self.filter_fn)
            return super().annotate(model)

    quantizer = _Quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    outside = outside_modules(keep_fp32)
    memo: dict[torch.fx.Node, bool] = {}
    not_inside = outside_modules(only_modules or ())

    def inside(n: torch.fx.Node) -> bool:
        # weights and inputs (get_attr / placeholder) carry no module stack: always accepted
        return only_modules is None or n.op != "call_function" or not not_inside(n)

    quantizer.set_filter_function(lambda n: outside(n) and inside(n) and quantizable(n, memo))
    graph = fold_constants(torch_export(model, example_inputs, dynamic_shapes, what)).module()
    unshare_get_attr(graph)
    shield_shared_conv_outputs_from_bn_fusion(graph)
    try:
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for inputs in calibration.inputs:
                prepared(*inputs)
        converted = convert_pt2e(prepared)
    except Exception as exc:  # prepare / observers / convert raise plain RuntimeErrors
        raise ExportError(
            f"{what}: PT2E int8 quantization failed: {type(exc).__name__}: {exc}"
        ) from exc
    # Give every consumer its own dequantize node: XNNPACK's partitioner tags a shared dq as
    # an implicit int8 input when ANY of its users is a quantized op, which leaves its float
    # users (e.g. `x - mean` feeding a square) with int8 inputs and a float output, a
    # combination XNNPACK rejects when the program is loaded (XNNSubtract invalid parameter).
    unshare_dequantize(converted)
    float_weight_ops_take_float_inputs(converted)
    return converted


_BN_OPS = ("batch_norm.default", "_native_batch_norm_legit_no_training.default")
_CONV_OPS = ("conv1d.default", "conv2d.default", "conv3d.default", "convolution.default",
             "conv_transpose1d.default", "conv_transpose2d.input", "conv_transpose3d.input")


def shield_shared_conv_outputs_from_bn_fusion(graph: torch.fx.GraphModule) -> int:
    """Put a same-shape ``view`` between a conv that has other users and the BatchNorm after it.

    ``prepare_pt2e`` folds every BatchNorm whose input is a conv into that conv's weights
    (torchao's ``_fuse_conv_bn_``) without checking that the BatchNorm is the conv's only
    user: the conv's other users (a skip, a dense block's concatenation) then read the
    normalised output. A pre-activation dense net (BN → ReLU → conv on the block's input,
    concatenated with it) has that pattern; measured on the demo MDenseNet: output SQNR 17 /
    9 dB against eager with no op quantized at all. The view (free; XNNPACK lowers it as a
    static reshape, and the quantizer shares its input's parameters) stops the match; a conv
    whose only user is the BatchNorm is still folded. Returns the number of views inserted.
    """
    shielded = 0
    for bn in list(graph.graph.nodes):
        if bn.op != "call_function" or not str(bn.target).endswith(_BN_OPS):
            continue
        conv = bn.args[0]
        if not (isinstance(conv, torch.fx.Node) and conv.op == "call_function"
                and str(conv.target).endswith(_CONV_OPS) and len(conv.users) > 1):
            continue
        val = conv.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        with graph.graph.inserting_after(conv):
            view = graph.graph.call_function(torch.ops.aten.view.default, (conv, list(val.shape)))
        view.meta = {k: v for k, v in conv.meta.items() if k in ("val", "nn_module_stack",
                                                                  "stack_trace", "source_fn_stack")}
        bn.replace_input_with(conv, view)
        shielded += 1
    if shielded:
        graph.recompile()
    return shielded


def fence_filtered_cats(graph: torch.fx.GraphModule,
                        filter_fn: Callable[[torch.fx.Node], bool] | None) -> int:
    """Mark the ``cat`` nodes that `filter_fn` rejects as annotated with nothing (fp32).

    The XNNPACK quantizer's ``cat`` annotator ignores the filter function (executorch 1.x):
    every concatenation of the graph, its inputs and (by propagation) the pools and reshapes
    after it would go int8 whatever ``keep_fp32`` / ``only_modules`` say. A dense net
    concatenates in every layer, so one group's sensitivity measured the noise of all of them
    (measured on the demo MDenseNet: 11.2 dB for every single group). An annotation with no
    specs, marked done, makes the annotator skip the node and leaves it unquantized.
    Returns the number of nodes fenced.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    if filter_fn is None:
        return 0
    fenced = 0
    for node in graph.graph.nodes:
        if (node.op == "call_function" and node.target == torch.ops.aten.cat.default
                and Q_ANNOTATION_KEY not in node.meta and not filter_fn(node)):
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            fenced += 1
    return fenced


_WEIGHT_OPS = ("conv1d", "conv2d", "convolution", "linear", "conv_transpose1d")


def float_weight_ops_take_float_inputs(graph: torch.fx.GraphModule) -> int:
    """Bypass the int8 round trip on the input of convs / linears whose weight stayed fp32.

    XNNPACK needs the input and the weight of a GEMM quantized together; an op left in fp32
    (it computes a constant, or its module is in ``keep_fp32``) can still receive an input
    quantized for another consumer. Its input becomes the float tensor before ``q -> dq``.
    """
    changed = 0
    for node in graph.graph.nodes:
        if node.op != "call_function" or not any(
            str(node.target).endswith(f"{k}.default") for k in _WEIGHT_OPS
        ):
            continue
        if len(node.args) < 2 or _is_dq(node.args[1]) or not _is_dq(node.args[0]):
            continue
        dq = node.args[0]
        q = dq.args[0]
        if isinstance(q, torch.fx.Node) and "quantize_per_tensor" in str(q.target):
            node.replace_input_with(dq, q.args[0])
            changed += 1
    if changed:
        graph.graph.eliminate_dead_code()
        graph.recompile()
    return changed


def _is_dq(node: Any) -> bool:
    return isinstance(node, torch.fx.Node) and any(k in str(node.target) for k in _DQ_NAMES)


def depends_on_input(node: torch.fx.Node, memo: dict[torch.fx.Node, bool] | None = None) -> bool:
    """True when `node` is computed from at least one graph input (placeholder)."""
    memo = {} if memo is None else memo
    stack = [node]
    while stack:
        cur = stack[-1]
        if cur in memo:
            stack.pop()
            continue
        if cur.op == "placeholder":
            memo[cur] = True
            stack.pop()
            continue
        pending = [a for a in cur.all_input_nodes if a not in memo]
        if pending:
            stack.extend(pending)
            continue
        memo[cur] = any(memo[a] for a in cur.all_input_nodes)
        stack.pop()
    return memo[node]


_SCALAR_OPS = ("add.Tensor", "mul.Tensor")


def float_scalars_to_attrs(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Turn Python-number operands of float ``add`` / ``mul`` into constant tensors.

    The XNNPACK quantizer can then annotate ``x * 0.5`` like ``x * y``. Unlike the quantizer's
    own transform this leaves integer arithmetic alone: an index computed as ``i + 1`` must
    stay an integer tensor (a float constant would turn it into a float and break ``gather``).
    """
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or not any(str(node.target).endswith(k) for k in _SCALAR_OPS):
            continue
        val = node.meta.get("val")
        if not (isinstance(val, torch.Tensor) and val.dtype.is_floating_point):
            continue
        args = list(node.args)
        for i, a in enumerate(args):
            if isinstance(a, (int, float)) and not isinstance(a, bool):
                name = f"_export_scalar_{count}"
                count += 1
                graph.register_buffer(name, torch.tensor(float(a), dtype=val.dtype))
                with graph.graph.inserting_before(node):
                    attr = graph.graph.get_attr(name)
                attr.meta["val"] = getattr(graph, name)
                args[i] = attr
        node.args = tuple(args)
    if count:
        graph.recompile()
    return graph


def quantizable(node: torch.fx.Node, memo: dict[torch.fx.Node, bool] | None = None) -> bool:
    """Quantizer filter: False for ops that compute constants or non-float tensors.

    Ops that depend on no model input (e.g. the timestep embedding of a fixed sampler step)
    compute constants; quantizing them hands XNNPACK an int8 weight with a float input.
    Integer tensors (indices for gather, lengths) and float64 tensors (phase accumulators)
    must never get observers. Parameters and
    other inputs of an op (placeholders, get_attr) are always accepted.
    """
    if node.op != "call_function":
        return True
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor) and val.dtype != torch.float32:
        return False  # indices, masks, and float64 DSP accumulators stay as they are
    return depends_on_input(node, memo)


def outside_modules(prefixes: Sequence[str]) -> Callable[[torch.fx.Node], bool]:
    """Node filter: True for nodes that do not come from a module under one of `prefixes`."""
    wanted = tuple(p.strip(".") for p in prefixes if p.strip("."))

    def keep(node: torch.fx.Node) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        for path, _ in stack.values():
            if any(path == p or path.startswith(p + ".") for p in wanted):
                return False
        return True

    return keep


def unshare_get_attr(graph: torch.fx.GraphModule) -> int:
    """Give every user of a parameter its own ``get_attr`` node (same attribute).

    A module called twice in one graph (a decoder unrolled over sampler steps) shares its
    weights; PT2E then quantizes the weight for one of the calls only, and XNNPACK refuses
    the other call ("Weight and Input should both be quantized"). With one ``get_attr`` per
    use every call gets its own weight quantization.
    """
    copies = 0
    for node in list(graph.graph.nodes):
        if node.op != "get_attr" or len(node.users) < 2:
            continue
        try:
            value = functools.reduce(getattr, str(node.target).split("."), graph)
        except AttributeError:
            continue
        if not isinstance(value, torch.nn.Parameter):
            continue  # only weights; buffers and constants keep their single node
        for user in list(node.users)[1:]:
            with graph.graph.inserting_after(node):
                twin = graph.graph.get_attr(node.target)
            twin.meta = dict(node.meta)
            user.replace_input_with(node, twin)
            copies += 1
    if copies:
        graph.recompile()
    return copies


_DQ_NAMES = ("dequantize_per_tensor", "dequantize_per_channel")


def unshare_dequantize(graph: torch.fx.GraphModule) -> int:
    """Copy every dequantize node that has several users so that each user owns one.

    Returns the number of copies made. The program computes the same values; only the
    partitioner's view changes (see :func:`quantize_pt2e_xnnpack`).
    """
    copies = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or not any(k in str(node.target) for k in _DQ_NAMES):
            continue
        users = list(node.users)
        for user in users[1:]:
            with graph.graph.inserting_after(node):
                twin = graph.graph.node_copy(node)
            user.replace_input_with(node, twin)
            copies += 1
    if copies:
        graph.recompile()
    return copies


def lower_to_xnnpack(
    program: torch.export.ExportedProgram,
    metadata: Mapping[str, Any],
    partitioner_configs: Sequence[type] | None = None,
    per_op_mode: bool = False,
) -> tuple[bytes, DelegationReport]:
    """Lower an exported program to XNNPACK with `metadata` as constant methods."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    configs = list(partitioner_configs) if partitioner_configs is not None else None
    partitioner = XnnpackPartitioner(configs=configs, per_op_mode=per_op_mode)
    edge = to_edge_transform_and_lower(
        program, partitioner=[partitioner], constant_methods=constant_methods(metadata)
    )
    report = delegation_report(edge.exported_program().graph_module, backend="xnnpack")
    report.partitioning = "per-op" if per_op_mode else "grouped"
    return bytes(edge.to_executorch().buffer), report


def _lower_with_fallback(
    program: torch.export.ExportedProgram,
    metadata: Mapping[str, Any],
    partitioner_configs: Sequence[type] | None,
    what: str,
) -> tuple[bytes, DelegationReport]:
    """Grouped partitioning; per-op partitioning when the grouped one has a dependency cycle.

    ExecuTorch's group-based partitioner can merge partitions into a cycle on some graphs
    ("Invalid partition, found dependency cycles", fixed upstream after executorch 1.5);
    per-op partitioning delegates the same ops, one XNNPACK call each.
    """
    try:
        return lower_to_xnnpack(program, metadata, partitioner_configs)
    except AssertionError as exc:
        if "dependency cycles" not in str(exc):
            raise ExportError(f"{what}: lowering to XNNPACK failed: {exc}") from exc
        log.warning("%s: grouped XNNPACK partitioning hit a dependency cycle; using per-op", what)
        return lower_to_xnnpack(program, metadata, partitioner_configs, per_op_mode=True)


def export_pte(
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
    allow_fallback_ops: Iterable[str] = (),
    partitioner_configs: Sequence[type] | None = None,
    threads: int | None = None,
    keep_fp32: Sequence[str] = (),
    only_modules: Sequence[str] | None = None,
) -> ExportResult:
    """Export `model` to ``{name}_xnnpack_{precision}.pte`` in `out_dir`, gated on parity.

    Args:
        model: the eager model (put in eval mode; left unchanged).
        example_inputs: positional tensors; their shapes are the export shapes.
        out_dir: output directory, or None to gate without writing.
        name: model name used in the file name and metadata.
        precision: ``fp32`` or ``int8`` (PT2E, XNNPACK quantizer, per-channel).
        calibration: inputs for int8 observers; default: the example inputs (said so in the
            sidecar).
        dynamic_shapes: ``torch.export`` dynamic shapes (bounded ``Dim``), or None for a
            fixed chunk (its length goes to the metadata).
        metadata: base metadata (e.g. :func:`export.metadata.spec_metadata`).
        gate: parity thresholds (default :class:`GateConfig`).
        audio_sample_rate: set for models whose first output is audio (enables STOI).
        allow_fallback_ops: hot ops allowed to run on portable kernels.
        partitioner_configs: restrict the XNNPACK partitioner to these configs (testing).
        keep_fp32: int8 only: submodules (dotted names) left in fp32, e.g. an STFT front end
            whose output goes through a log.
        only_modules: int8 only: quantize nothing outside these submodules (the layer groups
            a sensitivity analysis chose; glue ops between modules stay fp32).
        threads: ExecuTorch threadpool size for the parity run.

    Raises:
        ExportError: export or lowering failed, or a hot op fell back.
        ParityError: the program does not match eager PyTorch (nothing written).
    """
    job = prepare_export(
        model,
        example_inputs,
        name,
        fmt="pte",
        backend="xnnpack",
        precision=precision,
        calibration=calibration,
        dynamic_shapes=dynamic_shapes,
        metadata=metadata,
        gate=gate,
    )
    what, inputs, meta = job.what, job.inputs, job.meta
    with torch.no_grad():
        if precision == "int8":
            assert job.calibration is not None
            graph = quantize_pt2e_xnnpack(
                model, inputs, job.calibration, dynamic_shapes, what, keep_fp32=keep_fp32,
                only_modules=only_modules,
            )
            program = torch_export(graph, inputs, dynamic_shapes, what)
        else:
            program = torch_export(model, inputs, dynamic_shapes, what)
        try:
            data, report = _lower_with_fallback(program, meta, partitioner_configs, what)
        except ExportError:
            raise
        except Exception as exc:  # lowering errors come from many exir passes
            raise ExportError(
                f"{what}: lowering to XNNPACK failed: {type(exc).__name__}: {exc}"
            ) from exc
    log.info("%s: %s", what, report.summary())
    check_fallbacks(report, allow_fallback_ops, what)
    return job.finish(
        data,
        PteRunner(data, threads=threads),
        out_dir=out_dir,
        audio_sample_rate=audio_sample_rate,
        delegation=report.to_dict(),
        extra={
            "allow_fallback_ops": sorted(set(allow_fallback_ops)),
            "keep_fp32": list(keep_fp32) if precision == "int8" else [],
            "only_modules": list(only_modules)
            if precision == "int8" and only_modules is not None else None,
        },
    )
