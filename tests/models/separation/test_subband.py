"""CWS front end: PQMF analysis / synthesis banks and the convolutional STFT / iSTFT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.separation import PQMF, ConvSTFT, SeparationError
from models.separation.stft import frame_geometry, hann_window
from models.separation.subband import (
    cosine_modulate,
    default_taps,
    kaiser_prototype,
    optimise_prototype,
    pqmf_prototype,
    reconstruction_snr,
)

SR = 44100


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


def music_like(seconds: float, channels: int, seed: int) -> np.ndarray:
    """Harmonic notes with attack / decay envelopes plus noisy percussion hits, (C, T)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros((channels, n))
    for c in range(channels):
        for _ in range(8):
            f0 = 55.0 * 2 ** (rng.integers(0, 48) / 12)
            start, dur = rng.uniform(0, 0.7 * seconds), rng.uniform(0.1, 0.4 * seconds)
            local = t - start
            env = np.where(local >= 0, np.minimum(local / 0.01, 1) * np.exp(-local / dur), 0)
            harm = np.arange(1, int(SR / 2 / f0))
            tone = (np.sin(2 * np.pi * f0 * np.outer(harm, t) + rng.uniform(0, 6.3, (harm.size, 1)))
                    / harm[:, None] ** 1.5).sum(0)
            out[c] += 0.3 * env * tone
        for hit in rng.uniform(0, seconds - 0.05, 6):  # hi-hat-like: differentiated noise
            i = int(hit * SR)
            burst = np.diff(rng.standard_normal(2206)) * np.exp(-np.arange(2205) / 300)
            out[c, i : i + 2205] += 0.1 * burst[: n - i]
    return out


# ------------------------------------------------------------------------------ filter banks


def test_k1_is_the_identity():
    bank = PQMF(1)
    x = torch.randn(2, 2, 1001)
    y = bank.analysis(x)
    assert y.shape == (2, 2, 1001) and torch.equal(y, x)
    assert torch.equal(bank.synthesis(y, 1001), x)
    assert bank.subband_length(1001) == 1001


@pytest.mark.parametrize("k", [2, 4, 8])
def test_reconstruction_snr(k):
    bank = PQMF(k)
    taps = bank.taps
    assert taps == default_taps(k) == 16 * k
    length = SR + 3  # not a multiple of any K
    noise = np.random.default_rng(k).standard_normal((2, length))
    music = music_like(length / SR, 2, seed=k)[:, :length]
    analytic = reconstruction_snr(pqmf_prototype(k), k)
    print(f"\nK={k}, {taps} taps: white-noise SNR predicted by the design {analytic:.1f} dB")
    for name, sig in (("noise", noise), ("music", music)):
        x = torch.from_numpy(sig).float()[None]  # (1, 2, T)
        y = bank(x)[0].double().numpy()
        assert y.shape == sig.shape
        full = snr_db(sig, y)
        inner = snr_db(sig[:, taps:-taps], y[:, taps:-taps])  # excludes `taps` samples per end
        print(f"K={k} {name}: SNR {full:.1f} dB (all samples), {inner:.1f} dB (interior, "
              f"{taps} samples excluded at each end)")
        assert full >= 60.0 and inner >= 60.0
    # the design's white-noise figure is what the module measures on noise (float64 run)
    x = torch.from_numpy(noise)[None]
    assert abs(snr_db(noise, bank.double()(x)[0].numpy()) - analytic) < 1.0


@pytest.mark.parametrize("length", [1000, 1001, 1003, 1024])
def test_subband_layout_follows_eq6(length):
    k = 4
    bank = PQMF(k)
    x = torch.randn(3, 2, length)
    y = bank.analysis(x)
    n_sub = (length + bank.taps - 2) // k + 1
    assert y.shape == (3, 2 * k, n_sub) == (3, 2 * k, bank.subband_length(length))
    for c in range(2):  # channel c·K + k holds subband k of input channel c
        torch.testing.assert_close(y[:, c * k : (c + 1) * k], bank.analysis(x[:, c : c + 1]))
    assert bank.synthesis(y, length).shape == (3, 2, length)


@pytest.mark.parametrize("k", [2, 4, 8])
def test_subbands_are_ordered_and_selective(k):
    bank = PQMF(k).double()  # float64: a float32 sine of a large phase is itself noisy
    t = torch.arange(SR // 2, dtype=torch.float64) / SR
    ratios = []
    for band in range(k):
        f = (band + 0.5) * SR / (2 * k)  # centre of band `band`
        y = bank.analysis(torch.sin(2 * np.pi * f * t)[None, None])[0]  # (K, L)
        energy = (y[:, 100:-100] ** 2).sum(-1)
        assert int(energy.argmax()) == band
        leak = torch.cat([energy[:band], energy[band + 1 :]]).sum()
        ratios.append(float(10 * torch.log10(energy[band] / leak)))
    print(f"\nK={k}: in-band / out-of-band energy of band-centre sines {min(ratios):.1f} dB "
          f"(worst band)")
    assert min(ratios) > 60.0


@pytest.mark.parametrize("k", [2, 4, 8])
def test_prototype(k):
    p = pqmf_prototype(k)
    assert p.shape == (16 * k,)
    np.testing.assert_array_equal(p, p[::-1])  # linear phase
    w = np.linspace(1.1 * np.pi / k, np.pi, 4000)
    n = np.arange(p.size)
    stop = 20 * np.log10(np.abs(np.exp(-1j * np.outer(w, n)) @ p).max() / abs(p.sum()))
    snr = reconstruction_snr(p, k)
    kaiser = reconstruction_snr(kaiser_prototype(k, 16 * k), k)
    print(f"\nK={k}: stored {16 * k}-tap prototype: {snr:.1f} dB white-noise reconstruction "
          f"(Kaiser start {kaiser:.1f} dB), stopband (>= 1.1 pi/K) {stop:.1f} dB")
    assert snr >= 85.0 and stop < -90.0
    assert cosine_modulate(p, k).shape == (k, 16 * k)


def test_stored_prototype_is_what_the_design_gives():
    ours = optimise_prototype(2, 32)
    stored = pqmf_prototype(2)
    assert abs(reconstruction_snr(ours, 2) - reconstruction_snr(stored, 2)) < 0.5
    assert np.abs(ours - stored).max() < 1e-4 * np.abs(stored).max()


def test_invalid_banks():
    with pytest.raises(SeparationError, match="k must be one of"):
        PQMF(3)
    with pytest.raises(SeparationError, match="even length of at least 16 taps"):
        PQMF(4, taps=10)


# --------------------------------------------------------------------------------------- STFT


@pytest.mark.parametrize("k, geometry", [(1, (1411, 352, 2048)), (2, (705, 176, 1024)),
                                         (4, (352, 88, 512)), (8, (176, 44, 256))])
def test_frame_geometry_scales_with_subband_rate(k, geometry):
    assert frame_geometry(SR / k) == geometry  # 32 ms window, 8 ms hop at sr / K


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("length", [4410, 4411, 9001])
def test_stft_round_trip(k, length):
    stft = ConvSTFT(SR / k)
    x = torch.randn(2, 3, length)
    spec = stft(x)
    assert spec.shape == (2, 3, 2, stft.n_freq, 1 + length // stft.hop_length)
    y = stft.inverse(spec, length)
    rel = float((y - x).norm() / x.norm())
    print(f"\nK={k} T={length}: iSTFT(STFT(x)) relative error {rel:.2e}")
    assert rel <= 1e-4


def test_stft_matches_torch_stft():
    stft = ConvSTFT(SR / 2)
    x = torch.randn(4, 5000)
    window = torch.from_numpy(hann_window(stft.win_length, stft.n_fft)).float()
    ref = torch.stft(x, stft.n_fft, stft.hop_length, window=window, center=True,
                     pad_mode="constant", return_complex=True)
    ours = stft(x[None])[0]  # (4, 2, F, N)
    ours = torch.complex(ours[:, 0], ours[:, 1])
    rel = float((ours - ref).abs().norm() / ref.abs().norm())
    assert rel < 1e-5


def test_stft_exports_without_complex_or_stft_ops():
    stft = ConvSTFT(SR / 4)

    class RoundTrip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stft = stft

        def forward(self, x):
            return self.stft.inverse(self.stft(x), x.shape[-1])

    x = torch.randn(1, 2, 3000)
    ep = torch.export.export(RoundTrip(), (x,))
    names = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("stft" in n or "fft" in n or "complex" in n for n in names), names
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            assert not val.is_complex()
    torch.testing.assert_close(ep.module()(x), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("channels", "width", "hop", "frames"),
                         [(130, 128, 32, 50), (514, 512, 88, 17), (4, 64, 4, 300), (2, 7, 3, 5),
                          (1, 4, 4, 1)])
def test_polyphase_form_is_the_strided_transposed_convolution(channels, width, hop, frames):
    """The iSTFT and the synthesis bank run conv_transpose1d as a conv1d over the output's
    phases (XNNPACK runs the one-channel deconvolution slowly): the same sums, to float64
    rounding, whether or not the kernel is a whole number of hops."""
    import torch.nn.functional as F

    from models.separation.stft import polyphase_weight, transposed_conv1d

    rng = np.random.default_rng(0)
    w = rng.standard_normal((channels, 1, width))
    x = torch.from_numpy(rng.standard_normal((3, channels, frames)))
    ref = F.conv_transpose1d(x, torch.from_numpy(w), stride=hop)[:, 0]
    poly = torch.from_numpy(polyphase_weight(w, hop))
    got = transposed_conv1d(x, poly, ref.shape[-1])
    assert got.shape == ref.shape == (3, (frames - 1) * hop + width)
    assert torch.max(torch.abs(got - ref)).item() < 1e-10


def test_exported_separator_has_no_one_channel_deconvolution():
    """Only the network's own up-samplers remain transposed convolutions in the graph."""
    from models import registry

    m = registry.build("cws-mdensenet-unittest").eval()
    ep = torch.export.export(m, registry.get("cws-mdensenet-unittest").example_inputs(m))
    deconvs = [n for n in ep.graph.nodes if "conv_transpose" in str(n.target)
               or ("convolution" in str(n.target) and n.args[6] is True)]
    assert len(deconvs) == len(m.net.body.upsamplers)


def test_a_checkpoint_without_the_derived_buffers_loads():
    """Checkpoints written before the polyphase buffers existed still load: the model fills
    them in (they follow from its constructor); any other missing key is still an error."""
    from models import registry
    from models.checkpoint import load_into
    from models.errors import CheckpointError

    m = registry.build("cws-mdensenet-unittest").eval()
    old = {k: v for k, v in m.state_dict().items() if not k.endswith("_poly")}
    assert len(old) == len(m.state_dict()) - 3
    fresh = registry.build("cws-mdensenet-unittest").eval()
    load_into(fresh, old)
    x = registry.get("cws-mdensenet-unittest").example_inputs(m)
    with torch.no_grad():
        assert torch.equal(fresh(*x), m(*x))
    del old["stft.forward_basis"]
    with pytest.raises(CheckpointError, match="forward_basis"):
        load_into(fresh, old)
