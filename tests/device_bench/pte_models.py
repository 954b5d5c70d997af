"""Test programs for device_bench: small conv stacks exported to .pte with ExecuTorch directly.

`export_pte(path, quantize=False)` writes an XNNPACK-delegated program: fp32, or int8 through
PT2E (XNNPACKQuantizer, per-channel static). The conv stack is sized so one forward takes a few
milliseconds on one host core, so timing noise stays small relative to the latency.
"""

from __future__ import annotations

from pathlib import Path

import torch


class ConvStack(torch.nn.Module):
    def __init__(self, channels: int = 96, layers: int = 4, kernel: int = 5) -> None:
        super().__init__()
        self.inp = torch.nn.Conv1d(16, channels, 1)
        self.body = torch.nn.ModuleList(
            torch.nn.Conv1d(channels, channels, kernel, padding=kernel // 2) for _ in range(layers)
        )
        self.out = torch.nn.Conv1d(channels, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)  # (B, C, T)
        for conv in self.body:
            h = torch.relu(conv(h)) + h  # (B, C, T)
        return self.out(h)  # (B, 16, T)


def export_pte(path: Path, quantize: bool = False, frames: int = 1024, seed: int = 0) -> Path:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(seed)
    model = ConvStack().eval()
    example = (torch.randn(1, 16, frames),)
    if quantize:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        graph = torch.export.export(model, example).module()
        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True)
        )
        prepared = prepare_pt2e(graph, quantizer)
        for _ in range(4):
            prepared(torch.randn(1, 16, frames))
        model = convert_pt2e(prepared)
    exported = torch.export.export(model, example)
    program = to_edge_transform_and_lower(
        exported, partitioner=[XnnpackPartitioner()]
    ).to_executorch()
    path = Path(path)
    path.write_bytes(program.buffer)
    return path
