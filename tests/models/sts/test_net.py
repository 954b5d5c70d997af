"""The speech-to-singing network (models/sts/net.py): shapes, the §3.1 variants, the MTL loss
of §2.3, export, a short overfit and the parameter counts of the demo and paper sizes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.sts import StsError
from models.sts.net import (
    PAPER_LAMBDA,
    PAPER_PHONEMES,
    SIZES,
    SYSTEMS,
    AxisBlock,
    ExportableGRU,
    StsConfig,
    StsNet,
    TimeNorm,
    mtl_loss,
    parameter_count,
    system_config,
    variants,
)


def _net(system: str, **overrides) -> StsNet:
    torch.manual_seed(0)
    return StsNet(system_config(system, "unittest", **overrides)).eval()


def _pair(t: int, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random log-magnitude X and a melody image C (one 1 per frame)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 513, t, generator=g) * 3
    c = torch.zeros(b, 513, t)
    bins = torch.randint(10, 60, (b, t), generator=g)
    c.scatter_(1, bins.unsqueeze(1), 1.0)
    return x, c


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.InstanceNorm1d, nn.InstanceNorm2d))]


def _grus(model: nn.Module) -> list[nn.GRU]:
    return [m for m in model.modules() if isinstance(m, nn.GRU)]


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("t", [1, 7, 40, 101])
def test_shapes_any_length(t):
    x, c = _pair(t)
    with torch.no_grad():
        y, logits = _net("p-mtl")(x, c)
        y_b1 = _net("b1")(x, c)
    assert y.shape == x.shape and y_b1.shape == x.shape
    assert logits.shape == (2, PAPER_PHONEMES, t)
    assert (y >= 0).all() and torch.isfinite(y).all() and torch.isfinite(logits).all()


def test_forward_returns_y_alone_without_phoneme_decoder():
    x, c = _pair(16)
    with torch.no_grad():
        for name in ("b1", "b2", "allnorm", "p-mse", "autoencoder"):
            out = _net(name)(x, c)
            assert isinstance(out, torch.Tensor), name
        assert isinstance(_net("p-mtl")(x, c), tuple)


def test_bad_inputs_and_configs_raise():
    net = _net("p-mse")
    x, c = _pair(8)
    with pytest.raises(StsError, match="513"):
        net(x[:, :512], c[:, :512])
    with pytest.raises(StsError, match="shape"):
        net(x, c[:, :, :4])
    with pytest.raises(StsError, match="odd"):
        StsConfig(kernel=4)
    with pytest.raises(StsError, match="norm"):
        StsConfig(norm="batch")
    with pytest.raises(StsError, match="phoneme"):
        StsConfig(lam=0.1)
    with pytest.raises(StsError, match="unknown system"):
        system_config("b3")


# ---------------------------------------------------------------- the §3.1 systems


def test_systems_table():
    cfgs = variants("paper")
    assert set(cfgs) == {"b1", "b2", "allnorm", "p-mse", "p-mtl", "autoencoder"} == set(SYSTEMS)
    assert cfgs["b1"].use_melody is False and cfgs["b1"].lam == 0
    assert (cfgs["b2"].norm, cfgs["b2"].skips) == ("none", False)
    assert cfgs["allnorm"].norm == "all"
    assert cfgs["p-mse"].lam == 0 and cfgs["p-mse"].phonemes == 0
    assert cfgs["p-mtl"].lam == PAPER_LAMBDA == 0.015 and cfgs["p-mtl"].phonemes == 41
    # the autoencoder is the proposed network itself; only the training data differ
    assert cfgs["autoencoder"].replace(autoencoder=False) == cfgs["p-mse"]
    assert all(c.lam == 0 for n, c in cfgs.items() if n != "p-mtl")


def test_b2_has_no_instance_norm_and_no_skips():
    b2, prop = _net("b2"), _net("p-mse")
    assert _norms(b2) == []
    c = SIZES["unittest"]["channels"]
    # the first decoder layer reads the two latents (2·c5) in both ...
    assert b2.decoder.blocks[0].in_channels == prop.decoder.blocks[0].in_channels == 2 * c[5]
    # ... every later one reads one map in B2, that map ⊕ the E1 skip in the proposed net
    for j in range(1, 6):
        i = 5 - j
        assert b2.decoder.blocks[j].in_channels == c[i]
        assert prop.decoder.blocks[j].in_channels == 2 * c[i]


def test_allnorm_has_an_instance_norm_before_every_down_and_up_block():
    net = _net("allnorm")
    blocks = [m for m in net.modules() if isinstance(m, AxisBlock)]
    assert len(blocks) == 2 * 6 + 6  # E1, E2, D
    assert all(isinstance(b.norm, nn.InstanceNorm2d) for b in blocks)
    # 18 block INs + the two latent INs before the encoders' GRUs
    assert len(_norms(net)) == 20
    assert sum(isinstance(m, TimeNorm) for m in net.modules()) == 2


def test_proposed_has_exactly_the_two_instance_norms_before_the_grus():
    net = _net("p-mse")
    norms = _norms(net)
    assert len(norms) == 2
    assert norms[0] is net.encoder1.norm and norms[1] is net.encoder2.norm
    assert all(isinstance(b.norm, nn.Identity) for b in net.modules() if isinstance(b, AxisBlock))
    # P-MTL adds one more, before Dp's GRU (§2.2: IN before the recurrent layers)
    mtl = _net("p-mtl")
    assert len(_norms(mtl)) == 3 and mtl.phoneme_decoder.norm in _norms(mtl)
    assert isinstance(mtl.phoneme_decoder.norm_up, nn.Identity)


def test_b1_ignores_the_melody_and_p_mse_does_not():
    x, c = _pair(24)
    _, c2 = _pair(24, seed=1)
    b1, prop = _net("b1"), _net("p-mse")
    assert b1.encoder2 is None
    with torch.no_grad():
        assert torch.equal(b1(x, c), b1(x, c2))
        assert (prop(x, c) - prop(x, c2)).abs().max() > 1e-6


def test_every_gru_is_unidirectional():
    counts = {"b1": 1, "b2": 2, "allnorm": 2, "p-mse": 2, "p-mtl": 3, "autoencoder": 2}
    for name, n in counts.items():
        grus = _grus(_net(name))
        assert len(grus) == n, name
        assert all(g.bidirectional is False and g.num_layers == 1 for g in grus), name


def test_single_latent_frame_normalizes_to_zero_without_error():
    norm = TimeNorm(3)
    assert torch.equal(norm(torch.randn(2, 3, 1)), torch.zeros(2, 3, 1))
    z = torch.randn(2, 3, 9)
    ref = nn.functional.instance_norm(z)
    assert torch.allclose(norm(z), ref, atol=1e-5)


# ---------------------------------------------------------------- loss (§2.3)


def test_mtl_loss_is_mse_when_lam_is_zero_or_no_logits():
    g = torch.Generator().manual_seed(0)
    y_hat, y = torch.rand(2, 513, 10, generator=g), torch.rand(2, 513, 10, generator=g)
    logits = torch.randn(2, 41, 10, generator=g)
    labels = torch.randint(0, 41, (2, 10), generator=g)
    mse = ((y_hat - y) ** 2).mean()
    frame_sq = ((y_hat - y) ** 2).sum(dim=1).mean()  # each frame's squared norm, averaged
    loss, parts = mtl_loss(y_hat, y, logits, labels, 0.0)
    assert torch.allclose(loss, frame_sq) and set(parts) == {"mse"}
    assert torch.allclose(parts["mse"], mse)
    loss, _ = mtl_loss(y_hat, y, None, None, 0.015)
    assert torch.allclose(loss, frame_sq)


def test_mtl_loss_by_hand():
    g = torch.Generator().manual_seed(1)
    b, t, npho, lam = 2, 6, 5, 0.3
    y_hat, y = torch.rand(b, 513, t, generator=g), torch.rand(b, 513, t, generator=g)
    logits = torch.randn(b, npho, t, generator=g)
    labels = torch.randint(0, npho, (b, t), generator=g)
    labels[1, 2] = -1  # unlabelled frame: left out
    ces = []
    for i in range(b):
        for k in range(t):
            if labels[i, k] < 0:
                continue
            z = logits[i, :, k]
            ces.append(-z[labels[i, k]] + math.log(sum(math.exp(v) for v in z.tolist())))
    ce = sum(ces) / len(ces)
    frame_sq = ((y - y_hat) ** 2).sum(dim=1).mean()
    loss, parts = mtl_loss(y_hat, y, logits, labels, lam)
    assert len(ces) == b * t - 1
    assert torch.allclose(parts["ce"], torch.tensor(float(ce)), atol=1e-5)
    assert torch.allclose(loss, frame_sq + lam * ce, atol=1e-4)
    with pytest.raises(StsError, match="labels"):
        mtl_loss(y_hat, y, logits, labels[:, :3], lam)


# ---------------------------------------------------------------- export, GRU parity


def test_exportable_gru_unrolled_matches_the_kernel():
    torch.manual_seed(0)
    gru = ExportableGRU(7, 5)
    x, h0 = torch.randn(3, 4, 7), torch.randn(1, 3, 5)
    with torch.no_grad():
        for hx in (None, h0):
            ref_out, ref_h = nn.GRU.forward(gru, x, hx)
            out, h = gru.unrolled(x, hx)
            assert torch.allclose(out, ref_out, atol=1e-6)
            assert torch.allclose(h, ref_h, atol=1e-6)


@pytest.mark.parametrize("system", ["p-mtl", "b1"])
def test_torch_export(system):
    net = _net(system)
    x, c = _pair(40, b=1)
    ep = torch.export.export(net, (x, c), strict=False)
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("gru" in op for op in ops)  # unrolled
    with torch.no_grad():
        ref, got = net(x, c), ep.module()(x, c)
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(ref) == (2 if system == "p-mtl" else 1)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------- training


def test_p_mtl_overfits_one_pair():
    """60 Adam steps on one fixed random pair. The target is a random rank-3 spectrogram on
    the scale of real log-magnitudes (0 … ~4): white noise is out of reach of a 32 k-parameter
    net, and the loss must also end below the clip's variance (it learns more than the mean)."""
    torch.manual_seed(0)
    net = StsNet(system_config("p-mtl", "unittest")).train()
    x, c = _pair(40, b=1)
    g = torch.Generator().manual_seed(5)
    y = 3 * torch.rand(1, 513, 3, generator=g) @ torch.rand(1, 3, 40, generator=g)
    labels = torch.randint(0, PAPER_PHONEMES, (1, 40), generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses, mse = [], torch.tensor(0.0)
    for _ in range(60):
        y_hat, logits = net(x, c)
        loss, parts = mtl_loss(y_hat, y, logits, labels, net.cfg.lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        mse = parts["mse"]
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert mse < ((y - y.mean()) ** 2).mean(), (mse, losses[::10])


# ---------------------------------------------------------------- parameter counts


def _expected_params(cfg: StsConfig) -> int:
    """The count written out: convs ``cin·cout·k + cout``, GRU ``3H(in + H) + 6H``, linear
    ``in·out + out``."""
    c, k, h = cfg.channels, cfg.kernel, cfg.gru_hidden
    fp = -(-cfg.n_freq // 8) * 8
    enc_in = (1, *c)

    def gru(n_in: int) -> int:
        return 3 * h * (n_in + h) + 6 * h

    lat = c[5] * fp // 8
    enc = sum(enc_in[i] * c[i] * k + c[i] for i in range(6)) + gru(lat) + h * lat + lat
    dec = 0
    for j in range(6):
        i = 5 - j
        cin = c[5] * (2 if cfg.use_melody else 1) if j == 0 else c[i] * (2 if cfg.skips else 1)
        cout = enc_in[i] if i else c[0]
        dec += cin * cout * k + cout
    dec += c[0] + 1
    dp = 0
    if cfg.phonemes:
        cp = cfg.phoneme_channels
        dp = c[2] * cp * 8 + cp + gru(cp * fp // 2) + h * cfg.phonemes + cfg.phonemes
    return enc * (2 if cfg.use_melody else 1) + dec + dp


#: the stated ranges (millions of parameters) of P-MTL, which is the largest system
_RANGES = {"demo": (1.0, 2.0), "paper": (15.0, 25.0)}


@pytest.mark.parametrize("size", ["unittest", "demo", "paper"])
def test_parameter_counts(size, capsys):
    counts = {}
    for name, cfg in variants(size).items():
        with torch.device("meta"):
            net = StsNet(cfg)
        counts[name] = parameter_count(net)
        assert counts[name] == _expected_params(cfg), name
    with capsys.disabled():
        print(f"\nSTS parameters, {size}: "
              + ", ".join(f"{n} {v / 1e6:.3f} M" for n, v in counts.items()))
    if size in _RANGES:
        lo, hi = _RANGES[size]
        assert lo * 1e6 < counts["p-mtl"] < hi * 1e6
    assert counts["b1"] < counts["b2"] < counts["p-mse"] == counts["allnorm"] < counts["p-mtl"]


def test_output_is_linear_in_training_and_clamped_at_zero_in_eval():
    """Training sees the raw 1x1-conv output (a bin predicted below 0 still has a gradient);
    eval mode returns it clamped at 0, a valid log(1 + |S|)."""
    net = _net("p-mse")
    with torch.no_grad():
        net.decoder.out.bias.fill_(-3.0)
    x, c = _pair(16)
    net.train()
    y_train = net(x, c)
    assert (y_train < 0).float().mean() > 0.5
    y_train.sum().backward()
    assert net.decoder.out.bias.grad.abs().item() > 0
    net.eval()
    with torch.no_grad():
        y_eval = net(x, c)
    torch.testing.assert_close(y_eval, y_train.detach().clamp_min(0.0))
