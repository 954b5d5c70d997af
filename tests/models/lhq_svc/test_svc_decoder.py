"""Evolvable decoder (eq. 1): names, skip, remove, duplicate, architecture as data."""

from __future__ import annotations

import pytest
import torch

from models import registry
from models.lhq_svc.decoder import EvolvableDecoder


def _dec(arch=("res", "xattn", "res")):
    torch.manual_seed(0)
    d = EvolvableDecoder(list(arch), channels=16, cond_dim=24, temb_dim=16, heads=2,
                         res_dilations=[1, 2])
    torch.nn.init.normal_(d.out_proj.weight, std=0.1)  # zero-init would hide block effects
    return d.eval()


def _inputs(n=20):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 80, n, generator=g), torch.tensor([0.2, 0.8]),
            torch.randn(2, 24, n, generator=g))


def test_names_kinds_and_shapes():
    d = _dec()
    assert d.block_names() == ["res0", "xattn1", "res2"]
    assert d.block_kinds() == d.architecture == ["res", "xattn", "res"]
    assert d(*_inputs()).shape == (2, 80, 20)


def test_remove_and_duplicate_keep_architecture_in_sync():
    d = _dec()
    d.duplicate_block("xattn1")
    assert d.architecture == ["res", "xattn", "xattn", "res"]
    assert d.block_names() == ["res0", "xattn1", "xattn2", "res3"]
    for a, b in zip(d.blocks[1].parameters(), d.blocks[2].parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    d.remove_block("res0")
    assert d.architecture == ["xattn", "xattn", "res"]
    assert d.config["architecture"] == d.architecture
    rebuilt = EvolvableDecoder(**d.config)
    rebuilt.load_state_dict(d.state_dict())
    x = _inputs()
    assert torch.equal(rebuilt.eval()(*x), d(*x))
    with pytest.raises(KeyError, match="no block 'res9'; blocks"):
        d.remove_block("res9")
    single = _dec(("res",))
    with pytest.raises(ValueError, match="only block"):
        single.remove_block("res0")


def test_removing_a_block_changes_the_output():
    d = _dec()
    x = _inputs()
    before = d(*x)
    d.remove_block("xattn1")
    assert (d(*x) - before).abs().max() > 1e-4


def test_skip_prob_one_is_identity_for_every_block():
    d = _dec()
    x = _inputs()
    d.skip_prob = 1.0
    d.train()
    skipped = d(*x)
    empty = _dec(("res",))
    empty.load_state_dict(d.state_dict(), strict=False)
    del empty.blocks[0]
    assert torch.allclose(skipped, empty.train()(*x))
    # eval mode never skips
    d.eval()
    assert not torch.allclose(d(*x), skipped)


def test_skip_prob_half_skips_some_blocks():
    d = _dec()
    d.skip_prob = 0.5
    d.train()
    x = _inputs()
    outs = {tuple(d(*x).flatten()[:4].tolist()) for _ in range(12)}
    assert len(outs) > 1


def test_bad_architecture():
    with pytest.raises(ValueError, match="non-empty list"):
        EvolvableDecoder(["res", "conv"])
    with pytest.raises(ValueError, match="non-empty list"):
        EvolvableDecoder([])


def test_paper_sized_decoder_matches_table_one():
    """Table I: LHQ-SVC is 67.89 MB; our `lhq-svc` decoder is within 1 % of that in fp32."""
    d = registry.describe("lhq-svc-decoder")
    assert abs(d["fp32_mb"] - 67.89) / 67.89 < 0.01
