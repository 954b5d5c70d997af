"""Width surgery of the speech-to-singing network (models/sts/surgery.py).

Exactness: the channels (hidden units) a narrowing drops are first made silent — their
producing weights and biases zeroed, so they output ReLU(0) = 0 (a GRU unit with zero
incoming weights and biases keeps h = 0: n = tanh(0) = 0, h' = n + z·(h − n) = z·h) — and the
narrowed network must then give the silenced network's outputs. The silencing below is written
from net.py's layout independently of the surgery's channel groups: only the producers are
named here, every reader is the surgery's business.
"""

from __future__ import annotations

import pytest
import torch

from models.sts import StsError
from models.sts.net import SYSTEMS, StsConfig, StsNet, parameter_count, system_config
from models.sts.surgery import (
    GRU_UNIT,
    MIN_WIDTH,
    level_unit,
    narrow_by_factor,
    narrow_gru,
    narrow_level,
    narrow_unit,
    narrowed_config,
    param_count,
    units,
)
from models.units import Unit

LATENT_BINS = 520 // 8  # F' of the latent map (513 bins padded to 520, / 8)
T_VALUES = (13, 24)  # both leave several latent frames; 13 is not a multiple of 8


def _net(system: str, size: str = "unittest", seed: int = 0) -> StsNet:
    torch.manual_seed(seed)
    return StsNet(system_config(system, size)).eval()


def _pair(t: int, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 513, t, generator=g) * 3
    c = torch.zeros(b, 513, t)
    c.scatter_(1, torch.randint(10, 60, (b, 1, t), generator=g), 1.0)
    return x, c


def _outputs(net: StsNet, t: int) -> tuple[torch.Tensor, ...]:
    """The eval-mode outputs, then the training-mode ones (no dropout or running statistics
    anywhere, so the same function but for Ŷ's clamp at 0: the linear Ŷ, so a narrowing that
    only moved negative bins is still caught); the mode is restored."""
    mode = net.training
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for train in (False, True):
            net.train(train)
            y = net(*_pair(t))
            out += list(y) if isinstance(y, tuple) else [y]
    net.train(mode)
    return tuple(out)


def _assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.shape == v.shape
        assert torch.allclose(u, v, atol=1e-5, rtol=0), float((u - v).abs().max())


def _pick(n: int, drop: int, seed: int) -> list[int]:
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:drop].tolist())


def _producers(net: StsNet, level: int) -> dict[str, tuple[torch.nn.Module, str]]:
    """Every producer of a width-``c_level`` map: name → (module, how its channels sit):
    "conv" (out channels on weight axis 0), "tconv" (ConvTranspose2d: axis 1), "proj"
    (Linear rows, channel-major groups of F' rows)."""
    encs = [("encoder1", net.encoder1)]
    if net.encoder2 is not None:
        encs.append(("encoder2", net.encoder2))
    out = {f"{n}.blocks.{level}": (e.blocks[level].conv, "conv") for n, e in encs}
    if level == 5:
        out.update({f"{n}.proj": (e.proj, "proj") for n, e in encs})
    else:
        out[f"decoder.blocks.{4 - level}"] = (net.decoder.blocks[4 - level].conv, "tconv")
    if level == 0:
        out["decoder.blocks.5"] = (net.decoder.blocks[5].conv, "tconv")
    return out


@torch.no_grad()
def _scale_channels(module: torch.nn.Module, how: str, channels: list[int], s: float) -> None:
    """Multiply the producing weights and bias of `channels` by `s` (0: silence them)."""
    idx = torch.tensor(channels, dtype=torch.long)
    if how == "conv":
        module.weight[idx] *= s
        module.bias[idx] *= s
    elif how == "tconv":
        module.weight[:, idx] *= s
        module.bias[idx] *= s
    else:
        rows = (idx[:, None] * LATENT_BINS + torch.arange(LATENT_BINS)).reshape(-1)
        module.weight[rows] *= s
        module.bias[rows] *= s


def _silence_level(net: StsNet, level: int, drop: int, seed: int) -> dict[str, list[int]]:
    """Silence `drop` random channels of every producer of level `level` (a different choice
    per producer); returns the kept channels per producer."""
    c = net.cfg.channels[level]
    kept = {}
    for i, (name, (module, how)) in enumerate(_producers(net, level).items()):
        dropped = _pick(c, drop, seed + 17 * i)
        _scale_channels(module, how, dropped, 0.0)
        kept[name] = [j for j in range(c) if j not in dropped]
    return kept


def _gru_modules(net: StsNet) -> dict[str, torch.nn.GRU]:
    out = {"encoder1.gru": net.encoder1.gru}
    if net.encoder2 is not None:
        out["encoder2.gru"] = net.encoder2.gru
    if net.phoneme_decoder is not None:
        out["phoneme_decoder.gru"] = net.phoneme_decoder.gru
    return out


@torch.no_grad()
def _silence_gru_units(gru: torch.nn.GRU, units_: list[int]) -> None:
    """Zero every incoming weight and bias of `units_` (3 gate rows r, z, n) and their
    recurrent column: h stays 0 from h0 = 0."""
    h = gru.hidden_size
    rows = torch.tensor([g * h + u for g in range(3) for u in units_], dtype=torch.long)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        getattr(gru, name)[rows] = 0.0
    gru.weight_hh_l0[:, torch.tensor(units_, dtype=torch.long)] = 0.0


def _rebuilt(net: StsNet) -> StsNet:
    """What a checkpoint gives back: the net rebuilt from its JSON config, strict load."""
    new = StsNet(StsConfig(**net.config))
    new.load_state_dict(net.state_dict(), strict=True)
    return new.eval()


# ------------------------------------------------------------------------ exactness: levels


@pytest.mark.parametrize("level", range(6))
@pytest.mark.parametrize("system", list(SYSTEMS))
def test_narrow_level_is_exact_on_silent_channels(system, level):
    net = _net(system)
    c = net.cfg.channels[level]
    expected_kept = _silence_level(net, level, drop=2, seed=level)
    before = [_outputs(net, t) for t in T_VALUES]
    assert all(o[-1].std() > 0 for o in before)  # not a trivially silent network
    kept = narrow_level(net, level, c - 2)
    assert net.cfg.channels[level] == c - 2
    assert net.cfg == system_config(system, "unittest").replace(
        channels=tuple(c - 2 if k == level else w for k, w in enumerate(net.cfg.channels)))
    assert {k: v.tolist() for k, v in kept.items()} == expected_kept
    for t, ref in zip(T_VALUES, before):
        _assert_same(_outputs(net, t), ref)
    rebuilt = _rebuilt(net)
    _assert_same(_outputs(rebuilt, T_VALUES[0]), before[0])


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_narrow_gru_is_exact_on_silent_units(system):
    net = _net(system)
    h = net.cfg.gru_hidden
    expected = {}
    for i, (name, gru) in enumerate(_gru_modules(net).items()):
        dropped = _pick(h, 3, 100 + i)
        _silence_gru_units(gru, dropped)
        expected[name] = [u for u in range(h) if u not in dropped]
    before = [_outputs(net, t) for t in T_VALUES]
    kept = narrow_gru(net, h - 3)
    assert net.cfg.gru_hidden == h - 3
    assert {k: v.tolist() for k, v in kept.items()} == expected
    for gru in _gru_modules(net).values():
        assert gru.hidden_size == h - 3
    for t, ref in zip(T_VALUES, before):
        _assert_same(_outputs(net, t), ref)
    _assert_same(_outputs(_rebuilt(net), T_VALUES[1]), before[1])


def test_every_unit_narrowed_in_turn_at_demo_size():
    """P-MTL (both encoders, skips, Dp) at the demo size: every level and the GRU narrowed one
    after the other, each exact on its silenced channels."""
    net = _net("p-mtl", "demo")
    for step, level in enumerate((5, 2, 0, 3, 1, 4)):
        c = net.cfg.channels[level]
        _silence_level(net, level, drop=c // 4, seed=10 + step)
        ref = _outputs(net, 21)
        narrow_level(net, level, c - c // 4)
        _assert_same(_outputs(net, 21), ref)
    h = net.cfg.gru_hidden
    for i, gru in enumerate(_gru_modules(net).values()):
        _silence_gru_units(gru, _pick(h, h // 2, i))
    ref = _outputs(net, 21)
    narrow_gru(net, h - h // 2)
    _assert_same(_outputs(net, 21), ref)
    assert net.cfg.channels == (12, 12, 24, 24, 24, 24) and net.cfg.gru_hidden == 32
    _assert_same(_outputs(_rebuilt(net), 21), ref)


def test_narrowing_live_channels_changes_the_output():
    """The exactness tests are sensitive: dropping channels that carry signal does change Ŷ."""
    net = _net("p-mse")
    ref = _outputs(net, 24)
    narrow_level(net, 1, 2)
    assert not torch.allclose(_outputs(net, 24)[-1], ref[-1], atol=1e-5)


# ------------------------------------------------------------------------- keep by norm


@pytest.mark.parametrize("level", [0, 2, 5])
def test_narrow_level_keeps_largest_norm_channels(level):
    net = _net("p-mtl")
    c = net.cfg.channels[level]
    wanted = {}
    originals = {}
    for i, (name, (module, how)) in enumerate(_producers(net, level).items()):
        wanted[name] = _pick(c, 2, 50 + i)
        _scale_channels(module, how, wanted[name], 100.0)
        originals[name] = (module.weight.detach().clone(), how)
    kept = narrow_level(net, level, 2)
    assert {k: v.tolist() for k, v in kept.items()} == wanted
    for name, (module, how) in _producers(net, level).items():
        w, idx = originals[name][0], torch.tensor(wanted[name])
        if how == "conv":
            expect = w[idx]
        elif how == "tconv":
            expect = w[:, idx]
            if name == "decoder.blocks.5":  # it also reads level 0: [block 4's map, E1 skip 0]
                reads = [*wanted["decoder.blocks.4"], *(c + j for j in wanted["encoder1.blocks.0"])]
                expect = expect[torch.tensor(reads)]
        else:
            expect = w.reshape(c, LATENT_BINS, -1)[idx].reshape(-1, w.shape[1])
        assert torch.equal(module.weight, expect)


def test_narrow_gru_keeps_largest_norm_units():
    net = _net("p-mtl")
    h = net.cfg.gru_hidden
    wanted, originals = {}, {}
    for i, (name, gru) in enumerate(_gru_modules(net).items()):
        wanted[name] = _pick(h, 3, 70 + i)
        idx = torch.tensor(wanted[name])
        with torch.no_grad():
            gru.weight_hh_l0[:, idx] *= 100.0  # what those units send around the loop
        originals[name] = gru.weight_hh_l0.detach().clone()
    kept = narrow_gru(net, 3)
    assert {k: v.tolist() for k, v in kept.items()} == wanted
    for name, gru in _gru_modules(net).items():
        idx = torch.tensor(wanted[name])
        rows = torch.cat([idx + g * h for g in range(3)])
        assert torch.equal(gru.weight_hh_l0, originals[name][rows][:, idx])


# --------------------------------------------------------------------- config, parameters


def test_parameter_counts_drop_as_expected():
    net = _net("p-mtl")
    cfg = net.cfg
    assert param_count(cfg) == parameter_count(net)
    n0 = parameter_count(net)
    # GRU unit, counted by hand: per GRU 3H(I + H) + 6H, its reader H·out (+ out bias, kept)
    h, new_h = cfg.gru_hidden, 5
    feats = [cfg.channels[5] * LATENT_BINS] * 2 + [cfg.phoneme_channels * 520 // 2]
    readers = [cfg.channels[5] * LATENT_BINS] * 2 + [cfg.phonemes]

    def gru_params(hid: int) -> int:
        return sum(3 * hid * (i + hid) + 6 * hid + hid * r for i, r in zip(feats, readers))

    narrow_gru(net, new_h)
    n1 = parameter_count(net)
    assert n0 - n1 == gru_params(h) - gru_params(new_h)
    for level in range(6):
        before = parameter_count(net)
        narrow_level(net, level, 3)
        after = parameter_count(net)
        assert after < before
        assert after == param_count(net.cfg) == parameter_count(StsNet(net.cfg))


def test_narrowed_config_and_units():
    net = _net("p-mtl")
    us = units(net)
    assert [u.name for u in us] == [*(f"level{k}" for k in range(6)), GRU_UNIT]
    assert [u.width for u in us] == [*net.cfg.channels, net.cfg.gru_hidden]
    assert all(u.kind == "width" and u.minimum == MIN_WIDTH and u.actions == ("narrow",)
               for u in us)
    assert [u.position for u in us[:6]] == list(range(6))
    by = {u.name: u for u in us}
    assert "phoneme_decoder.up" in by["level2"].modules
    assert "phoneme_decoder.up" not in by["level3"].modules
    assert {"decoder.out", "decoder.blocks.5.conv", "decoder.blocks.4.conv"} <= set(
        by["level0"].modules)
    assert {"encoder1.gru", "encoder2.gru", "encoder1.proj", "decoder.blocks.0.conv"} <= set(
        by["level5"].modules)
    assert set(by["gru"].modules) == {"encoder1.gru", "encoder1.proj", "encoder2.gru",
                                      "encoder2.proj", "phoneme_decoder.gru",
                                      "phoneme_decoder.out"}
    unit = by["level3"].to_unit()
    assert isinstance(unit, Unit) and unit.actions == ("narrow",) and unit.width == 4
    assert narrowed_config(net.cfg, "level3", 2).channels == (4, 4, 4, 2, 4, 4)
    assert narrowed_config(net.cfg, GRU_UNIT, 6).gru_hidden == 6
    narrow_unit(net, "level3", 2)
    assert net.cfg.channels[3] == 2
    assert narrow_by_factor(net, GRU_UNIT, 0.5) == 4
    assert net.cfg.gru_hidden == 4
    by = {u.name: u for u in units(net)}
    assert by["level3"].actions == () and by["gru"].actions == ("narrow",)
    with pytest.raises(ValueError):  # already at the minimum
        narrow_by_factor(net, "level3", 0.5)


def test_b1_has_no_melody_encoder_groups():
    net = _net("b1")
    mods = {m for u in units(net) for m in u.modules}
    assert not any(m.startswith(("encoder2", "phoneme_decoder")) for m in mods)
    narrow_level(net, 5, 1)  # keep = 1 is allowed by the surgery (MIN_WIDTH is a search bound)
    assert net.decoder.blocks[0].conv.in_channels == 1
    _rebuilt(net)


def test_state_mode_dtype_and_rng_carry_over():
    net = _net("allnorm").double().train()
    net.encoder1.blocks[0].conv.weight.requires_grad_(False)
    rng = torch.random.get_rng_state()
    narrow_level(net, 0, 3)
    narrow_gru(net, 6)
    assert torch.equal(rng, torch.random.get_rng_state())  # built on meta, no random init
    assert net.training and all(m.training for m in net.modules())
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in net.parameters())
    assert not net.encoder1.blocks[0].conv.weight.requires_grad
    assert net.encoder1.blocks[1].norm.num_features == 3  # AllNorm's IN follows the width
    x, c = _pair(16)
    y = net(x.double(), c.double())
    y.square().mean().backward()
    assert net.decoder.out.weight.grad is not None


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("keep", [0, -1, 5, True, 2.0])
def test_bad_keep(keep):
    net = _net("p-mtl")
    cfg = net.cfg
    with pytest.raises(StsError):
        narrow_level(net, 1, keep)
    with pytest.raises(StsError):
        narrow_gru(net, keep if keep != 5 else 9)
    assert net.cfg == cfg
    assert issubclass(StsError, ValueError)


@pytest.mark.parametrize("level", [-1, 6, "2", None, False])
def test_bad_level(level):
    net = _net("p-mse")
    with pytest.raises(StsError):
        narrow_level(net, level, 2)


def test_unknown_unit():
    net = _net("p-mse")
    with pytest.raises(StsError):
        narrow_unit(net, "level6", 2)
    with pytest.raises(StsError):
        narrowed_config(net.cfg, "decoder", 2)
    assert level_unit(4) == "level4"
