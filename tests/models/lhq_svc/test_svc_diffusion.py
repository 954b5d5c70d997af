"""Continuous-time diffusion (eqs. 2–10): schedule, parameterisations, samplers."""

from __future__ import annotations

import pytest
import torch

from models.lhq_svc import diffusion


def test_cosine_schedule_endpoints_and_monotone():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    lam = diffusion.logsnr(t)
    assert torch.all(lam[1:] < lam[:-1])
    assert abs(float(lam[0]) - diffusion.LOGSNR_MAX) < 1e-6
    assert abs(float(lam[-1]) - diffusion.LOGSNR_MIN) < 1e-6
    a, s = diffusion.alpha_sigma(t)
    assert torch.allclose(a**2 + s**2, torch.ones_like(a))
    assert float(a[0]) > 0.9999 and float(s[-1]) > 0.9999


def test_v_parameterisation_round_trip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 80, 10, generator=g)
    eps = torch.randn(3, 80, 10, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    z = diffusion.q_sample(x, t, eps)
    v = diffusion.v_target(x, eps, t)
    assert torch.allclose(diffusion.predict_x(v, z, t, "v"), x, atol=1e-5)
    # v-MSE equals the (1 + SNR)-weighted x-MSE of eq. (5)
    v_hat = v + 0.1 * torch.randn(v.shape, generator=g)
    lv = diffusion.training_loss(v_hat, z, x, eps, t, "v", "snr+1")
    lx = diffusion.diffusion_loss(diffusion.predict_x(v_hat, z, t, "v"), x, t, "snr+1")
    assert torch.allclose(lv, lx, rtol=1e-4)


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("steps", [1, 2, 7, 50])
def test_perfect_x_predictor_is_recovered_exactly(sampler, steps):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 80, 12, generator=g)
    calls = []

    def oracle(z, t):
        calls.append(float(t[0]))
        return x

    out = diffusion.sample(oracle, torch.randn(2, 80, 12, generator=g), steps, sampler,
                           kappa=0.5, generator=g)
    assert torch.equal(out, x)
    assert len(calls) == steps and calls[0] == 1.0
    assert calls == sorted(calls, reverse=True)


def test_ddim_step_is_eq10_and_ancestral_kappa_zero_is_posterior():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 4, 5, generator=g)
    xh = torch.randn(1, 4, 5, generator=g)
    t, s = 0.7, 0.4
    a_t, s_t = (float(v) for v in diffusion.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
    a_s, s_s = (float(v) for v in diffusion.alpha_sigma(torch.tensor(s, dtype=torch.float64)))
    expect = a_s * xh + s_s * (z - a_t * xh) / s_t
    assert torch.allclose(diffusion.ddim_step(z, xh, t, s), expect, atol=1e-6)
    # ancestral with zero noise gives the posterior mean of eq. (7)
    zero = torch.zeros_like(z)
    mean = diffusion.ancestral_step(z, xh, t, s, zero, kappa=0.0)
    lt, ls = (float(diffusion.logsnr(torch.tensor(v, dtype=torch.float64))) for v in (t, s))
    r = torch.exp(torch.tensor(lt - ls)).item()
    assert torch.allclose(mean, r * (a_s / a_t) * z + (1 - r) * a_s * xh, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        diffusion.time_grid(0)
    with pytest.raises(ValueError, match="valid"):
        diffusion.sample(lambda z, t: z, torch.zeros(1, 1, 1), 2, "euler")


def test_loss_weights_of_eq5():
    """w(θ) for each weighting at SNR 0.01, 3 and 100 (θ = log SNR); the capped weighting is
    max(SNR, 1) truncated at 5, so a small-τ batch weighs at most 5x a large-τ one."""
    snr = torch.tensor([0.01, 3.0, 100.0], dtype=torch.float64)
    # invert θ(τ) numerically on a fine grid
    grid = torch.linspace(0.0, 1.0, 200001, dtype=torch.float64)
    lam = diffusion.logsnr(grid)
    t = torch.stack([grid[(lam - torch.log(s)).abs().argmin()] for s in snr])
    got = {w: diffusion.loss_weight(t, w) for w in diffusion.WEIGHTINGS}
    expect = {"snr+1": [1.01, 4.0, 101.0], "max(snr,1)": [1.0, 3.0, 100.0],
              "clip(snr,1,5)": [1.0, 3.0, 5.0]}
    for w, e in expect.items():
        assert torch.allclose(got[w], torch.tensor(e, dtype=torch.float64), rtol=1e-3), (w, got[w])
    with pytest.raises(ValueError, match="valid"):
        diffusion.loss_weight(t, "min-snr")
