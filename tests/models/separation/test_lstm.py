"""The layered LSTM of the Chimera body: the exported recurrence equals nn.LSTM's kernel,
the .pte runs it inside XNNPACK, and checkpoints of the multi-layer nn.LSTM still load."""

from __future__ import annotations

import pytest
import torch

from models.separation.lstm import ExportableLSTM, LSTMStack
from models.unrolled import CAT_MAX, cat_tree


@pytest.mark.parametrize("bidirectional", [True, False])
def test_unrolled_recurrence_equals_the_fused_kernel(bidirectional):
    torch.manual_seed(0)
    stack = LSTMStack(12, 8, 3, bidirectional).eval()
    d = 2 if bidirectional else 1
    x = torch.randn(2, 17, 12)
    hx = (torch.randn(3 * d, 2, 8), torch.randn(3 * d, 2, 8))
    with torch.no_grad():
        ref, (h, c) = stack(x, hx)
        y, hs, cs = x, [], []
        for i, layer in enumerate(stack.layers):
            y, (hh, cc) = layer.unrolled(y, (hx[0][i * d : (i + 1) * d],
                                             hx[1][i * d : (i + 1) * d]))
            hs.append(hh)
            cs.append(cc)
    assert ref.shape == (2, 17, d * 8) and h.shape == (3 * d, 2, 8)
    assert float((ref - y).abs().max()) < 1e-6
    assert float((h - torch.cat(hs)).abs().max()) < 1e-6
    assert float((c - torch.cat(cs)).abs().max()) < 1e-6


def test_the_export_sees_the_unrolled_ops_and_they_are_delegated():
    """torch.export takes the unrolled path (no aten.lstm); the .pte's XNNPACK delegates run
    every op of the recurrence (no split / squeeze / flip left on portable kernels) and match
    eager within float rounding."""
    from export.pte import export_pte

    torch.manual_seed(1)
    layer = ExportableLSTM(6, 5, bidirectional=True).eval()
    x = torch.randn(1, 13, 6)
    ep = torch.export.export(layer, (x,), strict=False)
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("lstm" in t for t in targets), targets
    res = export_pte(layer, (x,), None, "lstm", precision="fp32")
    assert res.parity["max_abs"] < 1e-5
    portable = " ".join(res.sidecar["delegation"]["portable"])
    for op in ("split_with_sizes", "squeeze", "flip", "addmm", "mm", "sigmoid", "tanh"):
        assert op not in portable, portable


def test_cat_tree_keeps_order_and_never_joins_more_than_the_limit():
    parts = [torch.full((1, 1), float(i)) for i in range(23)]
    assert torch.equal(cat_tree(parts, 1), torch.arange(23.0).reshape(1, 23))
    assert CAT_MAX == 5


def test_checkpoints_of_a_multi_layer_lstm_load():
    torch.manual_seed(2)
    old = torch.nn.LSTM(4, 3, 2, batch_first=True, bidirectional=True).eval()
    stack = LSTMStack(4, 3, 2, True).eval()
    state = {f"net.body.{k}": v for k, v in old.state_dict().items()}
    state["net.to_z.weight"] = torch.zeros(1)
    up = stack.upgrade_state("net.body.", state)
    assert "net.body.layers.1.weight_hh_l0_reverse" in up and "net.to_z.weight" in up
    stack.load_state_dict({k[len("net.body."):]: v for k, v in up.items()
                           if k.startswith("net.body.")})
    x = torch.randn(2, 7, 4)
    with torch.no_grad():
        assert torch.equal(old(x)[0], stack(x)[0])


def test_remove_and_narrow_refuse_what_would_break_shapes():
    stack = LSTMStack(4, 6, 2, False)
    with pytest.raises(ValueError, match="first reads"):
        stack.remove_layer(0)
    with pytest.raises(ValueError, match="hidden=7"):
        stack.narrow(7)
    keep = stack.narrow(3)
    assert keep.numel() == 3 and stack.layers[1].input_size == 3
    stack.remove_layer(1)
    with pytest.raises(ValueError, match="one layer stays"):
        stack.remove_layer(1)
