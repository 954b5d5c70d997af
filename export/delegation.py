"""Delegation report of a lowered ExecuTorch program: which ops run in XNNPACK, which do not.

After ``to_edge_transform_and_lower`` the top graph holds ``executorch_call_delegate`` nodes (one
per XNNPACK subgraph, whose original nodes are kept on the lowered module) and every op the
partitioner did not take, which runs on ExecuTorch's portable CPU kernels. Counting both gives
the report. A **hot op** (convolution, linear / addmm / mm, bmm / matmul, attention) left to
the portable kernels makes the program slow on a phone, so :func:`check_fallbacks` raises
:class:`~export.errors.ExportError` for it unless the op is listed in ``allow_fallback_ops``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from export.errors import ExportError

# Base op names (without namespace and overload) whose fallback is an error by default.
HOT_OPS = frozenset(
    {
        "convolution",
        "conv1d",
        "conv2d",
        "conv_transpose1d",
        "conv_transpose2d",
        "linear",
        "addmm",
        "mm",
        "bmm",
        "baddbmm",
        "matmul",
        "einsum",
        "scaled_dot_product_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
    }
)
# Graph plumbing that is not an operator running on data.
_IGNORED = frozenset(
    {
        "executorch_call_delegate",
        "getitem",
        "sym_size",
        "sym_numel",
        "sym_storage_offset",
        "sym_stride",
    }
)


def op_base_name(target: Any) -> str:
    """``aten.convolution.default`` / EdgeOpOverload / builtin -> ``convolution``."""
    name = getattr(target, "__name__", None) or str(target)
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] in {"aten", "quantized_decomposed", "dim_order_ops", "torchao"}:
        return parts[1]
    if len(parts) == 2:  # "convolution.default"
        return parts[0]
    return parts[-1]


def op_full_name(target: Any) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name


@dataclass
class DelegationReport:
    """Counts of delegated (XNNPACK) and portable-kernel ops of one lowered program."""

    backend: str
    delegated_subgraphs: int
    delegated: dict[str, int]
    portable: dict[str, int]
    partitioning: str = "grouped"

    @property
    def hot_fallbacks(self) -> dict[str, int]:
        return {op: n for op, n in self.portable.items() if op_base_name(op) in HOT_OPS}

    @property
    def n_delegated(self) -> int:
        return sum(self.delegated.values())

    @property
    def n_portable(self) -> int:
        return sum(self.portable.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "partitioning": self.partitioning,
            "delegated_subgraphs": self.delegated_subgraphs,
            "n_delegated_ops": self.n_delegated,
            "n_portable_ops": self.n_portable,
            "delegated": dict(sorted(self.delegated.items())),
            "portable": dict(sorted(self.portable.items())),
            "hot_fallbacks": dict(sorted(self.hot_fallbacks.items())),
        }

    def summary(self) -> str:
        hot = self.hot_fallbacks
        return (
            f"{self.n_delegated} ops in {self.delegated_subgraphs} {self.backend} subgraph(s), "
            f"{self.n_portable} on portable kernels" + (f", HOT FALLBACKS: {hot}" if hot else "")
        )


def delegation_report(
    graph_module: torch.fx.GraphModule, backend: str = "xnnpack"
) -> DelegationReport:
    """Walk a lowered program's graph module (``edge.exported_program().graph_module``)."""
    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    subgraphs = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            subgraphs += 1
            lowered = getattr(graph_module, str(node.target))
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and op_base_name(inner.target) not in _IGNORED:
                    delegated[op_full_name(inner.target)] += 1
        elif node.op == "call_function" and op_base_name(node.target) not in _IGNORED:
            portable[op_full_name(node.target)] += 1
    return DelegationReport(
        backend=backend,
        delegated_subgraphs=subgraphs,
        delegated=dict(delegated),
        portable=dict(portable),
    )


def check_fallbacks(
    report: DelegationReport, allow_fallback_ops: Iterable[str] = (), what: str = "program"
) -> None:
    """Raise :class:`ExportError` when a hot op runs on portable kernels and is not allowed.

    `allow_fallback_ops` holds base names (``bmm``) or full names (``aten.bmm.default``).
    """
    allowed = set(allow_fallback_ops)
    bad = {
        op: n
        for op, n in report.hot_fallbacks.items()
        if op not in allowed and op_base_name(op) not in allowed
    }
    if bad:
        listing = ", ".join(f"{op} ×{n}" for op, n in sorted(bad.items()))
        raise ExportError(
            f"{what}: hot op(s) not delegated to {report.backend}, they would run on portable "
            f"kernels: {listing}. Fix the model (see docs/design.md, 'Known facts of the "
            f"toolchain') or allow them "
            f"with allow_fallback_ops={sorted({op_base_name(o) for o in bad})}"
        )
