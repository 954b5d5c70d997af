"""Vocoders: MelGAN shapes, harmonic-plus-noise pitch and phase continuity, STFT loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.data.features import dio_f0
from models.lhq_svc.mel import LogMel
from models.lhq_svc.vocoder import HNVocoder, MelGANGenerator, multi_resolution_stft_loss

SR = 16000


def test_melgan_upsamples_by_the_hop():
    g = MelGANGenerator(channels=16, ratios=(8, 4, 4))
    assert g.hop == 128
    assert g(torch.randn(2, 80, 7)).shape == (2, 7 * 128)


SYNTH = [{"synthesis": "harmonic"}, {"synthesis": "stft", "phase_iters": 0},
         {"synthesis": "stft", "phase_iters": 2}]
SYNTH_IDS = ["harmonic", "stft", "stft-gl2"]


@pytest.mark.parametrize("kw", SYNTH, ids=SYNTH_IDS)
def test_hn_vocoder_untrained_reproduces_pitch_and_level(kw):
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 196 * t) + 0.1 * np.sin(2 * np.pi * 392 * t)).astype(np.float32)
    mel = LogMel(SR)(torch.from_numpy(x)[None])
    f0 = torch.full((1, mel.shape[-1]), 196.0)
    y = HNVocoder(channels=16, **kw).eval()(mel, f0)[0].detach().numpy()
    assert y.shape == (mel.shape[-1] * 128,)
    est, voiced = dio_f0(y[: x.shape[0]], SR)
    mid = est[10:-10][voiced[10:-10]]
    assert mid.size > 50 and np.median(np.abs(1200 * np.log2(mid / 196.0))) < 20
    assert 0.5 < y.std() / x.std() < 2.0


@pytest.mark.parametrize("kw", SYNTH, ids=SYNTH_IDS)
def test_hn_phase_continues_across_chunks(kw):
    torch.manual_seed(0)
    v = HNVocoder(channels=16, **kw).eval()
    n = 120
    mel = -5 + 0.5 * torch.randn(1, 80, n)
    f0 = 200 + 2 * torch.randn(1, n).cumsum(-1)
    full = v(mel, f0)[0]
    off = 50
    part = v(mel[:, :, off:], f0[:, off:], v.cycles(f0, off * 128), off)[0]
    # STFT synthesis: frames within n_fft / 2 of the chunk's start see zero padding, and each
    # Griffin-Lim iteration spreads that by up to n_fft (convert_long crossfades over 0.5 s)
    edge = 0 if kw["synthesis"] == "harmonic" else 512 * (1 + kw["phase_iters"])
    seg = slice(off * 128 + edge, off * 128 + edge + 4000)
    assert (part[edge : edge + 4000] - full[seg]).abs().max() < 1e-2 * full.abs().max()
    restart = v(mel[:, :, off:], f0[:, off:])[0]
    assert (restart[edge : edge + 4000] - full[seg]).abs().max() > 0.1 * full.abs().max()


def _old_upsample(v: HNVocoder, x: torch.Tensor) -> torch.Tensor:
    b, c, f = x.shape
    nxt = torch.cat([x[:, :, 1:], x[:, :, :1] * 0.0], dim=-1)
    y = x.unsqueeze(-1) * (1.0 - v.ramp) + nxt.unsqueeze(-1) * v.ramp
    return y.reshape(b, c, f * v.hop)


def _old_hn_forward(v: HNVocoder, mel, f0, phase0=None, frame_offset=0):  # type: ignore[no-untyped-def]
    """The HN vocoder as first written (elementwise upsampling, float64 cumsum over samples,
    sum over a (B, H, T) product, conv_transpose1d noise): the reference for the rewrite."""
    n_frames = mel.shape[-1]
    f0 = f0[:, :n_frames]
    voiced = (f0 > 0).to(mel.dtype).unsqueeze(1)
    x = torch.cat([(mel - v.mel_mean) / v.mel_std, voiced], dim=1)
    h = F.leaky_relu(v.pre(x), 0.2)
    for stack in v.stacks:
        h = stack(h)
    d = v.head(F.leaky_relu(h, 0.2))
    k = v.n_bins
    base = torch.log(torch.clamp(torch.matmul(v.mel_pinv, torch.exp(mel)), min=1e-5))
    env_h = torch.exp(torch.clamp(base + d[:, :k], max=8.0))
    noise_gain = torch.sigmoid(d[:, 2 * k :] - 4.0 * voiced)
    env_n = torch.exp(torch.clamp(base + d[:, k : 2 * k], max=8.0)) * noise_gain
    pos = v.harmonic_index * (f0.unsqueeze(1) / (v.sample_rate / v.n_fft))
    valid = (pos < (k - 2)).to(mel.dtype) * voiced
    pos = torch.clamp(pos, max=float(k - 2))
    lo = torch.floor(pos)
    frac = pos - lo
    lo_i = lo.to(torch.int64)
    a_lo = torch.gather(env_h, 1, lo_i)
    a_hi = torch.gather(env_h, 1, lo_i + 1)
    amp = (a_lo + frac * (a_hi - a_lo)) * valid * v.amp_scale
    amp_s = _old_upsample(v, amp)
    f0_s = _old_upsample(v, f0.unsqueeze(1))
    cyc = torch.cumsum(f0_s.to(torch.float64) / v.sample_rate, dim=-1)
    if phase0 is not None:
        p0 = phase0.reshape(-1, 1, 1).to(torch.float64)
        cyc = cyc + (p0 - torch.floor(p0))
    cyc = (cyc - torch.floor(cyc)).to(mel.dtype)
    harm = torch.sum(amp_s * torch.sin(2 * torch.pi * v.harmonic_index * cyc), dim=1)
    idx = (torch.arange(n_frames) + frame_offset) % v.noise_cos.shape[1]
    spec = torch.cat([env_n * v.noise_cos[:, idx], env_n * v.noise_sin[:, idx]], dim=1)
    noise = F.conv_transpose1d(spec, v.inverse_basis, stride=v.hop)
    start = v.n_fft // 2
    return harm + noise[:, 0, start : start + n_frames * v.hop]


def _trained_like_vocoder(seed: int = 0) -> HNVocoder:
    torch.manual_seed(seed)
    v = HNVocoder(channels=16).eval()
    with torch.no_grad():
        for p in v.parameters():
            p.normal_(0.0, 0.05)
    return v


def _hard_f0(frames: int, batch: int = 2) -> torch.Tensor:
    """Slow drift, unvoiced stretches, an octave jump, very low and high F0, seeded."""
    g = torch.Generator().manual_seed(3)
    f0 = 150 + 3 * torch.randn(batch, frames, generator=g).cumsum(-1)
    f0 = f0.clamp(70.0, 700.0)
    f0[:, 20:60] = 0.0  # unvoiced stretch
    f0[0, frames // 2 :] *= 2.0  # octave jump
    f0[-1, -30:-20] = 0.0
    f0[-1, :10] = 55.0  # low: every harmonic below Nyquist
    f0[0, -5:] = 0.0  # ends unvoiced
    return f0


@pytest.mark.parametrize(
    ("phase0", "frame_offset"),
    [(None, 0), ((0.3, 7.9), 0), ((-2.25, 0.5), 77), (None, 4090)],
    ids=["plain", "phase0", "phase0-offset", "offset-wraps-noise-table"],
)
def test_hn_rewrite_matches_the_original_formula(phase0, frame_offset):
    v = _trained_like_vocoder()
    frames = 400  # 3.2 s: the phase has accumulated ~1000 cycles by the end
    g = torch.Generator().manual_seed(1)
    mel = -5 + 0.7 * torch.randn(2, 80, frames, generator=g)
    f0 = _hard_f0(frames)
    p0 = None if phase0 is None else torch.tensor(phase0)
    with torch.no_grad():
        ref = _old_hn_forward(v, mel, f0, p0, frame_offset)
        out = v(mel, f0, p0, frame_offset)
    assert out.shape == ref.shape == (2, frames * 128)
    scale = float(ref.abs().max())
    assert scale > 0.05
    assert float((out - ref).abs().max()) <= 1e-4 * scale


def test_hn_cycles_is_the_phase_reached_by_the_source():
    v = _trained_like_vocoder()
    f0 = _hard_f0(300)
    cyc = v.source.phase(f0)[:, 0]  # wrapped source phase (B, T)
    for n in (1, 127, 128, 129, 5000, 300 * 128):
        f0_s = _old_upsample(v, f0.unsqueeze(1).double())[:, 0, :n]
        ref = f0_s.sum(-1) / v.sample_rate  # float64
        assert torch.allclose(v.cycles(f0, n).double(), ref, rtol=1e-6, atol=1e-6)
        # the phase the source reaches at sample n - 1 is cycles(f0, n) mod 1
        diff = (cyc[:, n - 1].double() - ref % 1.0).abs()
        assert float(torch.minimum(diff, 1 - diff).max()) < 2e-6


def test_hn_fixed_weights_stay_out_of_the_checkpoint():
    v = HNVocoder(channels=16)
    keys = set(v.state_dict())
    assert {"mel_pinv", "inverse_basis", "noise_cos", "noise_sin", "ramp",
            "harmonic_index"} <= keys
    assert not any(k.startswith("source.") for k in keys)
    assert HNVocoder.export_keep_fp32 == ("source",)
    w = HNVocoder(channels=16).eval()
    w.load_state_dict(v.state_dict(), strict=True)
    # the fixed source weights (plain tensors, not buffers) follow .double() / .to()
    mel = -5 + torch.randn(1, 80, 30, generator=torch.Generator().manual_seed(0))
    f0 = torch.full((1, 30), 200.0)
    with torch.no_grad():
        y32 = w(mel, f0)
        y64 = w.double()(mel.double(), f0.double())
    assert y64.dtype == torch.float64
    assert float((y64 - y32.double()).abs().max()) < 1e-4 * float(y32.abs().max())


def test_stft_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4096, generator=g)
    assert float(multi_resolution_stft_loss(x, x)) < 1e-5
    assert float(multi_resolution_stft_loss(0.5 * x, x)) > 0.1


def test_stft_analysis_matches_torch_stft_and_synthesis_inverts_it():
    src = HNVocoder(channels=16, synthesis="stft").source
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64 * 128, generator=g)
    re, im = src.analyse(x, 64)
    win = torch.hann_window(512)
    ref = torch.stft(F.pad(x, (256, 256)), 512, 128, 512, win, center=False,
                     return_complex=True)[:, :, :64]
    assert re.shape == (2, 257, 64)
    assert float((re - ref.real).abs().max()) < 1e-3 and float((im - ref.imag).abs().max()) < 1e-3
    # |X| with X's own phase comes back as x (Hann^2 overlap-add at hop n_fft / 4)
    y = src.synthesise(torch.sqrt(re * re + im * im), re, im)
    assert y.shape == x.shape
    inner = slice(512, -512)  # the last frames miss the overlap of frames past the end
    assert float((y - x)[:, inner].abs().max()) < 1e-4


def test_stft_griffin_lim_iterations_make_the_spectrum_consistent():
    """With more iterations the output's STFT magnitude is closer to the envelope-built one."""
    g = torch.Generator().manual_seed(2)
    mel = -5 + 0.8 * torch.randn(1, 80, 120, generator=g)
    f0 = 180 + 2 * torch.randn(1, 120, generator=g).cumsum(-1)
    f0[:, 40:60] = 0.0
    errs = []
    for iters in (0, 1, 4):
        v = HNVocoder(channels=16, synthesis="stft", phase_iters=iters).eval()
        src = v.source
        with torch.no_grad():
            y = v(mel, f0)
            # the magnitude the vocoder imposed: rebuild it as forward() does with d = 0
            base = torch.log(torch.clamp(v.mel_pinv @ torch.exp(mel), min=1e-5)).exp()
            voiced = (f0 > 0).float().unsqueeze(1)
            pos = v.harmonic_index * (f0.unsqueeze(1) / (SR / 512))
            valid = (pos < 255).float() * voiced
            er, ei = src.analyse(src.harmonic_sum(valid, f0), 120)
            mag = base * torch.sqrt(er * er + ei * ei + 1e-12) / 128.0 + base * torch.sigmoid(
                -2.0 * voiced)
            yr, yi = src.analyse(y, 120)
        inner = slice(4, -4)
        got = torch.sqrt(yr * yr + yi * yi)[..., inner]
        errs.append(float(torch.linalg.norm(got - mag[..., inner]) / torch.linalg.norm(mag)))
    assert errs[0] < 0.6
    assert errs[2] < errs[1] < errs[0]


def test_hn_synthesis_options_are_checked():
    with pytest.raises(ValueError, match="synthesis"):
        HNVocoder(channels=16, synthesis="griffin")
    with pytest.raises(ValueError, match="phase_iters"):
        HNVocoder(channels=16, synthesis="harmonic", phase_iters=2)
    v = HNVocoder(channels=16, synthesis="stft", phase_iters=2)
    assert v.config["synthesis"] == "stft" and v.config["phase_iters"] == 2
    # the synthesis changes no tensor: a harmonic-synthesis state dict loads strictly
    v.load_state_dict(HNVocoder(channels=16).state_dict(), strict=True)
