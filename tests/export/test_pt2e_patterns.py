"""export/pt2e_patterns.py: torchao's conv-BN patterns traced once per process, with the
converted program identical to torchao's own."""

from __future__ import annotations

import torch
from torch import nn

from export import pt2e_patterns
from export.calibration import CalibrationSet
from export.pte import quantize_pt2e_xnnpack


class _PreActBN(nn.Module):
    """A pre-activation BatchNorm on the input (BN -> ReLU -> conv) has no conv before it to
    fold into, so it stays in the graph and convert_pt2e runs its conv-BN fold."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(2)
        self.c1 = nn.Conv1d(2, 3, 3, padding=1)
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c1(torch.relu(self.bn(x)))


def _convert() -> torch.fx.GraphModule:
    model = _PreActBN().eval()
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(1, 2, 64, generator=gen),)
    calib = CalibrationSet([(torch.randn(1, 2, 64, generator=gen),) for _ in range(2)],
                           {"kind": "test"})
    graph = quantize_pt2e_xnnpack(model, x, calib, what="pre-activation BN")
    return graph


def test_the_memo_traces_each_pattern_once_and_converts_the_same_program() -> None:
    """A preparation and conversion asks for 108 patterns: 12 conv-BN(-ReLU) patterns the
    XNNPACK quantizer annotates with, then 12 match / replacement pairs for each of 4 conv kinds
    in torchao's conv-BN fold. The first of the process traces them through the libraries' own
    helper (the memo only stores what it returns), every later one reuses them all and
    converts the same program. The memo is process-wide, so an earlier test of this worker may
    have traced them."""
    pt2e_patterns.install()
    s0 = pt2e_patterns.stats()
    first = _convert()
    s1 = pt2e_patterns.stats()
    assert (s1["traced"] - s0["traced"]) + (s1["reused"] - s0["reused"]) == 108
    assert s1["traced"] >= 108  # every pattern was traced once in this process
    second = _convert()
    s2 = pt2e_patterns.stats()
    assert s2 == {"traced": s1["traced"], "reused": s1["reused"] + 108}
    assert second.code == first.code
    sd_1, sd_2 = first.state_dict(), second.state_dict()
    assert sd_1.keys() == sd_2.keys()
    for k in sd_1:
        assert torch.equal(sd_1[k], sd_2[k]), k
    x = (torch.randn(1, 2, 64),)
    with torch.no_grad():
        assert torch.equal(first(*x), second(*x))
        # the pre-activation BatchNorm is still there, computed in float as before
        assert any("batch_norm" in str(n.target) for n in second.graph.nodes)


def test_a_pattern_it_cannot_key_is_traced_as_torchao_would() -> None:
    assert pt2e_patterns.pattern_key(len, (), False, {}) is None  # a builtin: no code

    def with_object(x: torch.Tensor) -> torch.Tensor:
        return x + obj.value

    obj = type("O", (), {"value": 1.0, "__hash__": None})()
    assert pt2e_patterns.pattern_key(with_object, (torch.zeros(1),), False, {}) is None

    def flags(x: torch.Tensor) -> torch.Tensor:
        return x if per_channel else -x

    per_channel = True
    k1 = pt2e_patterns.pattern_key(flags, (torch.zeros(1, 2),), False, {"b": torch.ones(3)})
    k2 = pt2e_patterns.pattern_key(flags, (torch.ones(1, 2),), False, {"b": torch.zeros(3)})
    assert k1 is not None and k1 == k2  # values are not part of a traced pattern
    k3 = pt2e_patterns.pattern_key(flags, (torch.zeros(1, 3),), False, {"b": torch.ones(3)})
    assert k3 != k1  # shapes are
