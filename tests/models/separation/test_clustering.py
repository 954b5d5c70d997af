"""Chimera objectives (eqs. 1-4) and the DC head's K-means masks, on constructed cases."""

from __future__ import annotations

import pytest
import torch

from models.separation import SeparationError
from models.separation.clustering import (
    chimera_loss,
    dc_loss,
    dominant_labels,
    kmeans_masks,
    mmsa_loss,
    msa_loss,
    reference_masks,
)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def test_low_rank_dc_loss_equals_the_affinity_form():
    g = torch.Generator().manual_seed(0)
    v = _unit(torch.randn(3, 50, 20, generator=g, dtype=torch.float64))
    y = dominant_labels(torch.rand(3, 2, 50, generator=g, dtype=torch.float64))
    full = torch.stack([(v[b] @ v[b].T - y[b] @ y[b].T).pow(2).sum() for b in range(3)]).mean()
    assert float(dc_loss(v, y)) == pytest.approx(float(full), rel=1e-12)
    # embeddings that are the labels themselves (D = C, one-hot) reach zero
    assert float(dc_loss(y, y)) == pytest.approx(0.0, abs=1e-12)
    # the gradient exists and never builds an N x N matrix: a long input stays cheap
    big = _unit(torch.randn(1, 200_000, 20, dtype=torch.float64)).requires_grad_()
    lab = dominant_labels(torch.rand(1, 2, 200_000, dtype=torch.float64))
    dc_loss(big, lab).backward()
    assert big.grad is not None and torch.isfinite(big.grad).all()


def test_msa_mmsa_and_the_joint_objective():
    s = torch.tensor([[1.0, 2.0, 0.5]])  # mixture magnitude (B=1, N=3)
    r = torch.tensor([[[1.0, 0.5, 0.8], [0.2, 1.5, 0.1]]])  # sources (B, C=2, N)
    o = reference_masks(r, s)
    assert torch.allclose(o, torch.tensor([[[1.0, 0.25, 1.0], [0.2, 0.75, 0.2]]]))
    # the reference masks are the optimum of mMSA; MSA keeps what a mask cannot reach (0.8 > 0.5)
    assert float(mmsa_loss(o, r, s)) == pytest.approx(0.0, abs=1e-12)
    assert float(msa_loss(o, r, s)) == pytest.approx((0.8 - 0.5) ** 2, rel=1e-6)
    m = torch.full_like(r, 0.5)
    want = sum(float(((r[0, c] - 0.5 * s[0]) ** 2).sum()) for c in range(2))
    assert float(msa_loss(m, r, s)) == pytest.approx(want, rel=1e-6)
    assert float(chimera_loss(torch.tensor(30.0), torch.tensor(2.0), 10, 0.25)) == \
        pytest.approx(0.25 * 3.0 + 0.75 * 2.0)
    assert float(chimera_loss(torch.tensor(30.0), torch.tensor(2.0), 10, 1.0)) == 3.0
    with pytest.raises(SeparationError, match="alpha"):
        chimera_loss(torch.tensor(1.0), torch.tensor(1.0), 10, 1.5)
    with pytest.raises(SeparationError, match="masks and references"):
        msa_loss(m, r[:, :1], s)


def test_kmeans_recovers_two_embedding_clusters_as_masks():
    g = torch.Generator().manual_seed(3)
    a = _unit(torch.tensor([1.0, 0.0, 0.0]) + 0.1 * torch.randn(300, 3, generator=g))
    b = _unit(torch.tensor([0.0, 1.0, 0.0]) + 0.1 * torch.randn(200, 3, generator=g))
    v = torch.cat([a, b])
    masks = kmeans_masks(v, 2, seed=1)
    assert masks.shape == (2, 500) and torch.equal(masks.sum(0), torch.ones(500))
    truth = torch.cat([torch.ones(300), torch.zeros(200)])
    agree = max(float((masks[0] == truth).float().mean()), float((masks[1] == truth).float()
                                                                 .mean()))
    assert agree == 1.0
    with pytest.raises(SeparationError, match="N >= k"):
        kmeans_masks(v[:1], 2)
