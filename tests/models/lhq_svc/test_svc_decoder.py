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


_PRIOR_KW = dict(channels=16, cond_dim=24, temb_dim=16, heads=2, res_dilations=[1, 2])


def _prior_pair(prediction):
    """A decoder with the mel prior and the same weights without it."""
    torch.manual_seed(0)
    with_prior = EvolvableDecoder(["res", "xattn"], mel_prior=True, prediction=prediction,
                                  **_PRIOR_KW)
    torch.nn.init.normal_(with_prior.out_proj.weight, std=0.1)
    plain = EvolvableDecoder(["res", "xattn"], **_PRIOR_KW)
    plain.load_state_dict(with_prior.state_dict())
    return with_prior.eval(), plain.eval()


@pytest.mark.parametrize("prediction", ["x", "v"])
def test_mel_prior_is_the_diffusion_of_the_residual(prediction):
    """With μ appended to cond, the blocks see the residual's latent ỹ - βμ = β(x̃ - μ) + γε and
    the output is the prediction of x̃: x̂ = μ + r̂ (x), v̂_x = v̂_r - γμ (v)."""
    from models.lhq_svc.diffusion import alpha_sigma

    dec, plain = _prior_pair(prediction)
    z, t, c = _inputs()
    mu = torch.randn(2, 80, 20, generator=torch.Generator().manual_seed(5))
    a, s = (v.view(-1, 1, 1) for v in alpha_sigma(t))
    with torch.no_grad():
        got = dec(z, t, torch.cat([c, mu], 1))
        r_hat = plain(z - a * mu, t, c)
    want = r_hat + mu if prediction == "x" else r_hat - s * mu
    assert (got - want).abs().max() < 1e-5
    assert dec.cond_channels == 24 + 80 and plain.cond_channels == 24
    with pytest.raises(ValueError, match="cond has 24 channels, expected 104"):
        dec(z, t, c)
    # τ outside [0, 1] (e.g. a benchmark runner's random inputs) gives finite outputs
    with torch.no_grad():
        assert torch.isfinite(dec(z, torch.tensor([-0.7, 1.3]), torch.cat([c, mu], 1))).all()


def test_untrained_residual_decoder_samples_the_prior_mean():
    """x-prediction: a zero-initialised output layer predicts r̂ = 0, so every sampler returns μ
    exactly (the prior alone is the starting point of training)."""
    from models.lhq_svc import diffusion

    prediction = "x"
    torch.manual_seed(0)
    dec = EvolvableDecoder(["res", "xattn"], mel_prior=True, prediction=prediction,
                           **_PRIOR_KW).eval()
    _, _, c = _inputs()
    mu = torch.randn(2, 80, 20, generator=torch.Generator().manual_seed(5))
    cond = torch.cat([c, mu], 1)
    noise = torch.randn(2, 80, 20, generator=torch.Generator().manual_seed(6))
    for steps, sampler in ((1, "ddim"), (4, "ddim"), (8, "ancestral")):
        with torch.no_grad():
            x = diffusion.sample(
                lambda z, t: diffusion.predict_x(dec(z, t, cond), z, t, prediction),
                noise, steps, sampler, 0.5, torch.Generator().manual_seed(1))
        assert (x - mu).abs().max() < 1e-4, (steps, sampler)


def test_conditioner_appends_the_prior_mean():
    from models.lhq_svc.decoder import Conditioner

    torch.manual_seed(0)
    cn = Conditioner(8, 4, 3, dim=32, prior_layers=2, n_mels=80)
    g = torch.Generator().manual_seed(0)
    out = cn(torch.randn(2, 8, 10, generator=g), torch.randn(2, 4, 10, generator=g),
             torch.tensor([0, 2]))
    assert out.shape == (2, 32 + 80, 10) and cn.out_dim == 112
    assert torch.equal(cn.prior_mean(out), out[:, 32:])
    plain = Conditioner(8, 4, 3, dim=32)
    assert plain.out_dim == 32
    with pytest.raises(ValueError, match="no mel prior"):
        plain.prior_mean(out)
    with pytest.raises(ValueError, match="odd kernel"):
        Conditioner(8, 4, 3, prior_layers=1, prior_kernel=4)


def test_source_filter_prior_reads_the_f0_from_the_features():
    """The source-filter head renders μ through the comb of the F0 decoded from F0Features:
    μ equals SourceFilterMel of the head's envelopes at that F0 (normalised), changes with
    the F0 on voiced frames only, and trains (finite gradients into the trunk)."""
    from models.lhq_svc.decoder import Conditioner
    from models.lhq_svc.f0 import F0Features

    torch.manual_seed(0)
    feats = F0Features()
    cn = Conditioner(8, feats.dim, 3, dim=32, prior_layers=2, n_mels=80,
                     prior_kind="source_filter")
    g = torch.Generator().manual_seed(0)
    content = torch.randn(2, 8, 12, generator=g)
    f0 = torch.full((2, 12), 180.0)
    voiced = torch.ones(2, 12)
    voiced[:, :4] = 0
    spk = torch.tensor([0, 2])
    out = cn(content, feats(f0 * voiced, voiced), spk)
    assert out.shape == (2, 32 + 80, 12) and cn.out_dim == 112
    mu = cn.prior_mean(out)
    with torch.no_grad():
        envs = cn.prior_output(cn.hidden(content, feats(f0 * voiced, voiced), spk))
        ref = (cn.render(envs[:, :80], envs[:, 80:], f0, voiced) - cn.mel_mean) / cn.mel_std
    assert (mu - ref).abs().max() < 1e-4
    up = cn.prior_mean(cn(content, feats(f0 * 1.03 * voiced, voiced), spk))
    assert (up - mu)[..., 4:].abs().amax() > 0.05
    mu.abs().mean().backward()
    grads = [p.grad for p in cn.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    with pytest.raises(ValueError, match="prior_kind"):
        Conditioner(8, 4, 3, prior_layers=1, prior_kind="mlp")

