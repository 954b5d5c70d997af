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
    o = reference_masks(r, s, "amplitude")
    assert torch.allclose(o, torch.tensor([[[1.0, 0.25, 1.0], [0.2, 0.75, 0.2]]]))
    # the reference masks are the optimum of mMSA; MSA keeps what a mask cannot reach (0.8 > 0.5)
    assert float(mmsa_loss(o, r, s, "amplitude")) == pytest.approx(0.0, abs=1e-12)
    w = reference_masks(r, s)  # §3.4's Wiener-like mask: source powers over their sum
    assert torch.allclose(w[0, 0], torch.tensor([1 / 1.04, 0.25 / 2.5, 0.64 / 0.65]))
    assert torch.allclose(w.sum(dim=1), torch.ones(1, 3))
    assert float(mmsa_loss(w, r, s)) == pytest.approx(0.0, abs=1e-12)
    assert float(mmsa_loss(o, r, s)) > 0.01  # the two references differ
    with pytest.raises(SeparationError, match="reference mask"):
        reference_masks(r, s, "ibm")
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


def _flat(v: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ChimeraNet's ``(B, T, F, D)`` / ``(B, T, F, C)`` → the losses' ``(B, T·F, D)`` /
    ``(B, C, T·F)``."""
    b, t, f, _ = m.shape
    return v.reshape(b, t * f, -1), m.permute(0, 3, 1, 2).reshape(b, -1, t * f)


def test_chimera_heads_and_a_joint_training_that_learns_a_toy_split():
    """Two sources in different frequency halves: the joint objective (alpha 0.5, mMSA) falls,
    and both heads then separate them — the DC head's K-means masks and the MI head's masks."""
    from models.separation.clustering import ChimeraNet

    with torch.device("meta"):
        paper = ChimeraNet(features=300, bins=150)
    lstm = sum(4 * 500 * (i + 500 + 2) * 2 for i in (300, 1000, 1000, 1000))
    assert sum(p.numel() for p in paper.parameters()) == (
        lstm + 1000 * 150 * 20 + 150 * 20 + 150 * 20 * 2 + 150 * 2)
    torch.manual_seed(0)
    f, t = 12, 20
    net = ChimeraNet(features=f, bins=f, hidden=16, layers=2, embedding=4)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.rand(n, 2, t, 1)
        low = torch.cat([torch.ones(f // 2), torch.zeros(f - f // 2)])
        src = torch.stack([g[:, 0] * low, g[:, 1] * (1 - low)], 1) + 0.01  # (n, 2, T, F)
        return src.reshape(n, 2, t * f), torch.log1p(src.sum(1))  # refs, features

    losses = []
    for _ in range(60):
        refs, feats = batch(8)
        mix = refs.sum(1)
        z, m, _ = net(feats)
        v, m = _flat(net.embed(z), m)
        loss = chimera_loss(dc_loss(v, dominant_labels(refs)), mmsa_loss(m, refs, mix),
                            t * f, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    refs, feats = batch(1)
    with torch.no_grad():
        z, m, _ = net(feats)
        v, m = _flat(net.embed(z), m)
    truth = dominant_labels(refs)[0].T  # (2, N)
    assert float(((m[0] > 0.5).float() == truth).float().mean()) > 0.95
    km = kmeans_masks(v[0], 2)
    agree = max(float((km == truth).float().mean()), float((km.flip(0) == truth).float().mean()))
    assert agree > 0.95
    assert torch.allclose(v.norm(dim=-1), torch.ones(1, t * f), atol=1e-5)
