"""ChimeraSeparator / ChimeraStream (models.separation.chimera): stems, objectives, the DC output,
streaming parity and a short training, on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

import models.separation.chimera as chim
from models.separation import SeparationError
from models.separation.chimera import ChimeraSeparator, ChimeraStream, stream
from models.separation.tasnet import si_sdr_torch

SR = 8000
TINY = {"sample_rate": SR, "channels": 2, "n_fft": 256, "hop": 64, "n_mels": 24,
        "hidden": 16, "layers": 2, "embedding": 8}


def _tiny(**kw) -> ChimeraSeparator:
    torch.manual_seed(0)
    return ChimeraSeparator(**{**TINY, **kw}).eval()


def _toy(seconds: float = 0.5, seed: int = 0, batch: int = 1
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A harmonic 'voice' with vibrato (mono, both channels) and a noise 'accompaniment'."""
    n = int(seconds * SR)
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    voc, acc = [], []
    for _ in range(batch):
        f0 = 180.0 + 60.0 * float(torch.rand(1, generator=g))
        ph = 2 * math.pi * torch.cumsum(f0 * (1 + 0.02 * torch.sin(2 * math.pi * 5 * t)), 0) / SR
        v = sum(0.15 / h * torch.sin(h * ph) for h in range(1, 8))
        voc.append(torch.stack([v, 0.8 * v]))
        acc.append(0.05 * torch.randn(2, n, generator=g))
    vocals, accompaniment = torch.stack(voc), torch.stack(acc)
    return vocals + accompaniment, vocals, accompaniment


def test_stems_shape_and_they_add_up_to_the_mixture():
    m = _tiny()
    mix, _, _ = _toy(0.4)
    mix = torch.cat([mix, 0.5 * mix.flip(-1)])  # batch of 2
    with torch.no_grad():
        y = m(mix)
    assert y.shape == (2, 2, 2, mix.shape[-1])
    # the softmax masks sum to 1 on every mel bin, the spreading keeps that on every linear bin,
    # so vocals + accompaniment is the iSTFT of the mixture's STFT: the mixture itself
    assert float(m.spread.sum(0).sub(1).abs().max()) < 1e-6
    assert float((y.sum(1) - mix).abs().max()) < 1e-5
    # neither stem is the whole mixture or zero (an untrained net masks about half)
    share = float(y[:, 0].pow(2).sum() / mix.pow(2).sum())
    assert 0.05 < share < 0.95
    # channels are separated independently: a channel's stems do not depend on the other one
    other = mix.clone()
    other[:, 1] = torch.randn_like(other[:, 1])
    with torch.no_grad():
        assert torch.allclose(m(other)[:, :, 0], y[:, :, 0], atol=1e-6)
    with pytest.raises(SeparationError, match="mix must be"):
        m(mix[:, :1])


def test_paper_size_features_and_frames():
    with torch.device("meta"):
        big = ChimeraSeparator()
    assert (big.n_fft, big.hop, big.n_mels, big.hidden, big.layers, big.embedding) == \
        (512, 128, 150, 500, 4, 20)
    assert big.net.body.input_size == 300 and big.net.body.bidirectional  # 150 mels + deltas
    assert big.mel_fb.shape == (257, 150) and big.spread.shape == (150, 257)
    # every frame that overlaps the signal: 1 s at 16 kHz → ceil((16000 + 384) / 128) frames
    assert big.frames(16000) == 128
    m = _tiny()
    spec = m.spectrum(torch.randn(1, 1, 1000))
    assert spec.shape[-1] == m.frames(1000) == math.ceil((1000 + 192) / 64)


def test_config_round_trip_rebuilds_the_same_output():
    m = _tiny(alpha=0.3, mi_loss="msa", bidirectional=False)
    cfg = m.config
    import json

    cfg2 = json.loads(json.dumps(cfg))
    m2 = ChimeraSeparator(**cfg2).eval()
    assert m2.config == cfg
    m2.load_state_dict(m.state_dict())
    mix, _, _ = _toy(0.3)
    with torch.no_grad():
        assert torch.equal(m(mix), m2(mix))


def test_loss_is_finite_with_gradients_and_deltas_are_backward_differences():
    m = _tiny().train()
    mix, voc, acc = _toy(0.3, batch=2)
    loss, info = m.loss(mix, voc, acc)
    assert torch.isfinite(loss) and set(info) == {"dc_per_bin", "mi_per_bin", "si_sdr_vocals"}
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # deltas: x_t - x_{t-1}, first frame 0
    mel = torch.rand(1, 5, 24)
    f = m.features(mel)
    lm = torch.log(mel + chim.LOG_FLOOR)
    assert torch.equal(f[..., :24], lm)
    assert float(f[0, 0, 24:].abs().max()) == 0.0
    assert torch.allclose(f[0, 3, 24:], lm[0, 3] - lm[0, 2])


def _grads(m: ChimeraSeparator, mix, voc, acc) -> dict[str, torch.Tensor]:
    m.zero_grad()
    loss, _ = m.loss(mix, voc, acc)
    loss.backward()
    return {k: p.grad.clone() for k, p in m.named_parameters()}


def test_alpha_zero_ignores_the_dc_head_and_alpha_one_the_mi_head(monkeypatch):
    mix, voc, acc = _toy(0.3)
    # alpha = 0: a DC term made huge changes no gradient
    m0 = _tiny(alpha=0.0).train()
    g0 = _grads(m0, mix, voc, acc)
    monkeypatch.setattr(chim, "dc_loss", lambda v, y: 1e6 * v.pow(3).sum())
    g0b = _grads(m0, mix, voc, acc)
    assert all(torch.equal(g0[k], g0b[k]) for k in g0)
    monkeypatch.undo()
    # alpha = 1: the MI head's own layers get no gradient, and an MI term made huge changes none
    m1 = _tiny(alpha=1.0).train()
    g1 = _grads(m1, mix, voc, acc)
    assert float(g1["net.mi_weight"].abs().max()) == 0.0
    assert float(g1["net.mi_bias"].abs().max()) == 0.0
    assert float(g1["net.to_z.weight"].abs().max()) > 0
    monkeypatch.setattr(chim, "mmsa_loss", lambda mk, r, s: 1e6 * mk.pow(3).sum())
    g1b = _grads(m1, mix, voc, acc)
    assert all(torch.equal(g1[k], g1b[k]) for k in g1)


def test_separate_dc_orders_the_clusters(monkeypatch):
    """Embeddings made to be the ideal binary mask (a constructed case): K-means finds the two
    groups; the order follows the references, else the MI masks."""
    m = _tiny()
    n = 4000
    t = torch.arange(n) / SR
    vocals = (0.3 * torch.sin(2 * math.pi * 300 * t)).expand(2, n).clone()
    accomp = (0.2 * torch.sin(2 * math.pi * 2500 * t)).expand(2, n).clone()
    mix = (vocals + accomp).unsqueeze(0)
    with torch.no_grad():
        ref = m.mel(m.magnitude(m.spectrum(torch.stack([vocals, accomp], 1))))  # (2, 2, N, M)
    voc_dom = (ref[:, 0] >= ref[:, 1]).float()  # (C, N, M)
    real = m._analyse

    def analyse(x, segment_frames=None, flip_mi=False):
        spec, mel, v, _ = real(x, segment_frames)
        v = torch.zeros_like(v)
        v[..., 0] = voc_dom
        v[..., 1] = 1 - voc_dom
        ideal = torch.stack([voc_dom, 1 - voc_dom], -1)
        return spec, mel, v, ideal.flip(-1) if flip_mi else ideal

    monkeypatch.setattr(m, "_analyse", analyse)
    refs = torch.stack([vocals, accomp])

    def sdr(a, b):
        return float(10 * torch.log10(a.pow(2).sum() / (a - b).pow(2).sum()))

    for seed in (0, 1, 2):  # whatever order K-means returns
        out = m.separate_dc(mix, refs, seed=seed)
        assert out.shape == (2, 2, n)
        assert min(sdr(vocals, out[0]), sdr(accomp, out[1])) > 15.0
        swapped = m.separate_dc(mix, refs.flip(0), seed=seed)
        assert torch.equal(swapped, out.flip(0))
        assert torch.equal(m.separate_dc(mix, None, seed=seed), out)  # agrees with MI masks
    monkeypatch.setattr(m, "_analyse", lambda x, s=None: analyse(x, s, flip_mi=True))
    assert torch.equal(m.separate_dc(mix, None), out.flip(0))
    with pytest.raises(SeparationError, match="references"):
        m.separate_dc(mix, refs[:, :1])
    monkeypatch.undo()
    # the paper's test-time segments: one segment as long as the recording is the whole pass
    whole = m.separate_dc(mix, refs)
    assert torch.equal(m.separate_dc(mix, refs, segment_frames=10_000), whole)
    assert float((m.separate_dc(mix, refs, segment_frames=8) - whole).abs().max()) > 0


@pytest.mark.parametrize("chunk_frames", [1, 5])
def test_stream_equals_the_whole_file(chunk_frames):
    m = _tiny(bidirectional=False)
    with torch.no_grad():  # a longer memory than the initialisation's, so the state matters
        for layer in range(2):
            m.net.body.layers[layer].weight_hh_l0.mul_(4.0)
    mix, _, _ = _toy(0.37, seed=3)
    with torch.no_grad():
        whole = m(mix)
    out = stream(m, mix, chunk_frames)
    assert out.shape == whole.shape
    assert float((out - whole).abs().max()) < 1e-4  # every sample, first to last
    # the raw program: output g of the stream is the file's sample g - (n_fft - hop)
    prog = ChimeraStream(m, chunk_frames)
    assert prog.delay == m.delay_samples == 192
    state = prog.initial_state()
    x = torch.nn.functional.pad(mix, (0, 20 * prog.chunk_samples))
    outs = []
    with torch.no_grad():
        for i in range(4):
            y, *state = prog(x[..., i * prog.chunk_samples : (i + 1) * prog.chunk_samples],
                             *state)
            outs.append(y)
    raw = torch.cat(outs, -1)
    d = prog.delay
    assert float((raw[..., d:] - whole[..., : raw.shape[-1] - d]).abs().max()) < 1e-4
    # the LSTM state matters: resetting it at every chunk breaks the parity (the check has teeth)
    state = prog.initial_state()
    outs = []
    with torch.no_grad():
        for i in range(4):
            y, *state = prog(x[..., i * prog.chunk_samples : (i + 1) * prog.chunk_samples],
                             *state)
            state[4:] = prog.initial_state()[4:]
            outs.append(y)
    reset = torch.cat(outs, -1)
    assert float((reset[..., d:] - whole[..., : reset.shape[-1] - d]).abs().max()) > 1e-3


def test_bidirectional_model_cannot_stream():
    with pytest.raises(SeparationError, match="unidirectional"):
        ChimeraStream(_tiny())
    with pytest.raises(SeparationError, match="unidirectional"):
        stream(_tiny(), _toy(0.1)[0])


def test_short_training_raises_the_vocal_si_sdr():
    torch.manual_seed(0)
    m = ChimeraSeparator(**{**TINY, "hidden": 24}).train()
    mix, voc, acc = _toy(0.5, seed=1, batch=2)
    test_mix, test_voc, _ = _toy(0.5, seed=7)

    def score() -> float:
        m.eval()
        with torch.no_grad():
            s = float(si_sdr_torch(test_voc, m(test_mix)[:, 0]).mean())
        m.train()
        return s

    before = score()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(40):
        loss, _ = m.loss(mix, voc, acc)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = score()
    assert after > before + 3.0, (before, after)
