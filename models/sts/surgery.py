"""Evolvable width units of the speech-to-singing network (:class:`~models.sts.net.StsNet`).

Two kinds of width can be narrowed, in place, with the config following so a checkpoint
rebuilds (``StsNet(net.cfg).load_state_dict(net.state_dict(), strict=True)``):

* ``level0`` … ``level5`` — one entry ``c_k`` of ``cfg.channels`` (:func:`narrow_level`);
* ``gru`` — ``cfg.gru_hidden``, the hidden width of every GRU (:func:`narrow_gru`).

As in :mod:`models.separation` (:mod:`models.units`): each tensor that *produces* ``c_k``
channels keeps the ``keep`` channels whose producing weights have the largest L2 norm
(Torch-Pruning's magnitude criterion), every tensor that *reads* them is sliced with them
(:class:`~models.units.ChannelGroup` / :class:`~models.units.Slot`), and the network is rebuilt
at the new config with the sliced weights (its children replace the old ones).

Channel bookkeeping of level ``k`` (``net.py``: encoder block ``i`` maps ``enc_in[i]`` →
``c_i`` with ``enc_in = (1, c0 … c5)``; decoder block ``j`` mirrors encoder block
``i = 5 − j``, reads ``[previous output, E1 skip i]`` and writes ``enc_in[i]``, but block 5
writes ``c0``). One config width is several independent channel groups, each chosen by its
own producer's norms; no concatenation forces two producers to share a choice, because every
concatenation puts different tensors side by side (separate column ranges of the reader):

* per encoder ``E1`` / ``E2``: block ``k``'s output (conv rows) — read by block ``k+1``'s
  conv (input columns) for ``k < 5``; for ``k = 5`` by the latent GRU's ``weight_ih`` columns
  (feature ``= channel · F/8 + freq``: groups of ``F/8`` columns); ``E1``'s (with skips) also
  by decoder block ``5 − k`` at input offset ``c_k``. ``E2``'s maps other than the latent are
  not used outside ``E2``.
* ``k = 5``, per encoder: the latent map, the rows of ``proj`` (groups of ``F/8`` rows),
  read by decoder block 0 (input ``[z1, z2]``: ``E1`` at offset 0, ``E2`` at ``c5``). This is
  a different tensor from block 5's output, so it has its own choice.
* ``k ≤ 4``: decoder block ``4 − k``'s output, read by decoder block ``5 − k`` at input
  offset 0 and, for ``k = 2`` with a phoneme decoder, by ``Dp``'s transposed conv.
* ``k = 0``: also decoder block 5's output (it "stays ``c0`` wide"), read by the 1×1 output
  conv.

The instance norms (AllNorm's ``InstanceNorm2d`` before every block, the latent
:class:`~models.sts.net.TimeNorm`) have no affine parameters and no running statistics, so
they hold no state: the rebuild gives them their new ``num_features``.

The GRU unit: each of ``E1``'s, ``E2``'s and ``Dp``'s GRUs keeps the ``keep`` hidden units of
largest norm of what they receive and send around the loop (their three gate rows r, z, n of
``weight_hh`` and their column of it, as :meth:`models.separation.lstm.LSTMStack.narrow`), the
gate rows of ``weight_ih`` / ``weight_hh`` / both biases, the ``weight_hh`` columns and the
reader's columns (the encoder's ``proj``; ``Dp``'s output conv).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from models.sts import StsError
from models.sts.net import FACTOR, StsConfig, StsNet, parameter_count
from models.units import (
    ChannelGroup,
    Slot,
    Unit,
    channel_importance,
    narrowed_width,
    select_channels,
    slice_state,
)

#: narrowing never takes a width below this many channels / hidden units (units(): actions)
MIN_WIDTH = 2
#: the number of channel levels (``cfg.channels``)
LEVELS = 6
#: the GRU width unit's name
GRU_UNIT = "gru"
#: a GRU's gate blocks in its stacked rows (r, z, n)
_GATES = 3


def level_unit(level: int) -> str:
    """The name of the width unit of ``cfg.channels[level]``."""
    return f"level{level}"


def _check_level(cfg: StsConfig, level: object) -> int:
    if isinstance(level, bool):
        raise StsError(f"level must be an integer in 0..{LEVELS - 1}, got {level!r}")
    try:
        lvl = operator.index(level)  # type: ignore[arg-type]
    except TypeError:
        raise StsError(f"level must be an integer in 0..{LEVELS - 1}, got {level!r}") from None
    if not 0 <= lvl < len(cfg.channels):
        raise StsError(f"level {lvl} does not exist: the network has levels 0..{LEVELS - 1}")
    return lvl


def _check_keep(keep: object, width: int, what: str) -> int:
    if isinstance(keep, bool):
        raise StsError(f"{what}: keep must be an integer in 1..{width}, got {keep!r}")
    try:
        k = operator.index(keep)  # type: ignore[arg-type]
    except TypeError:
        raise StsError(f"{what}: keep must be an integer in 1..{width}, got {keep!r}") from None
    if not 1 <= k <= width:
        raise StsError(f"{what}: keep={k}; expected 1..{width} (its current width)")
    return k


# ---------------------------------------------------------------------------- channel groups


def _latent_bins(cfg: StsConfig) -> int:
    """``F/8``: frequency bins of the latent map (GRU feature = channel · F/8 + bin)."""
    return cfg.padded_freq // FACTOR


def _encoders(net: StsNet) -> list[str]:
    return ["encoder1"] + (["encoder2"] if net.encoder2 is not None else [])


def level_groups(net: StsNet, level: int, keep: int) -> list[ChannelGroup]:
    """The channel groups (state-dict keys of `net`) that narrow ``cfg.channels[level]`` to
    `keep` (module docstring). At level 5 the latent GRU's ``weight_ih`` columns and ``proj``'s
    rows and bias are addressed per channel: :func:`_channel_views` reshapes them so that
    one channel is one entry of the sliced axis."""
    cfg = net.cfg
    k = _check_level(cfg, level)
    c = cfg.channels[k]
    keep = _check_keep(keep, c, level_unit(k))
    groups = []
    for enc in _encoders(net):
        slots = [Slot(f"{enc}.blocks.{k}.conv.weight", 0, producer=True),
                 Slot(f"{enc}.blocks.{k}.conv.bias", 0)]
        if k < LEVELS - 1:
            slots.append(Slot(f"{enc}.blocks.{k + 1}.conv.weight", 1))
        else:  # the latent GRU's input features, viewed (3H, c5, F/8)
            slots.append(Slot(f"{enc}.gru.weight_ih_l0", 1))
        if enc == "encoder1" and cfg.skips and k < LEVELS - 1:  # the skip into D's block 5-k
            slots.append(Slot(f"decoder.blocks.{5 - k}.conv.weight", 0, c))
        groups.append(ChannelGroup(f"{enc}.blocks.{k}", c, keep, tuple(slots)))
    if k == LEVELS - 1:  # each encoder's latent map (proj's rows), read by D's block 0
        for e, enc in enumerate(_encoders(net)):
            groups.append(ChannelGroup(f"{enc}.proj", c, keep, (
                Slot(f"{enc}.proj.weight", 0, producer=True), Slot(f"{enc}.proj.bias", 0),
                Slot("decoder.blocks.0.conv.weight", 0, e * c))))
    else:  # D's block 4-k writes c_k (ConvTranspose2d weight: (in, out, kh, kw))
        j = 4 - k
        slots = [Slot(f"decoder.blocks.{j}.conv.weight", 1, producer=True),
                 Slot(f"decoder.blocks.{j}.conv.bias", 0),
                 Slot(f"decoder.blocks.{j + 1}.conv.weight", 0, 0)]
        if k == 2 and net.phoneme_decoder is not None:  # Dp reads D's block 2 (the "tap")
            slots.append(Slot("phoneme_decoder.up.weight", 0))
        groups.append(ChannelGroup(f"decoder.blocks.{j}", c, keep, tuple(slots)))
    if k == 0:  # D's last block stays c0 wide; the 1×1 output conv reads it
        groups.append(ChannelGroup("decoder.blocks.5", c, keep, (
            Slot("decoder.blocks.5.conv.weight", 1, producer=True),
            Slot("decoder.blocks.5.conv.bias", 0), Slot("decoder.out.weight", 1))))
    return groups


def _grus(net: StsNet) -> list[tuple[str, str]]:
    """``(GRU path, reader weight key)`` of every GRU of `net`; the reader's axis 1 holds
    the hidden units (``proj``: Linear ``(out, H)``; ``Dp.out``: Conv1d ``(Np, H, 1)``)."""
    out = [(f"{enc}.gru", f"{enc}.proj.weight") for enc in _encoders(net)]
    if net.phoneme_decoder is not None:
        out.append(("phoneme_decoder.gru", "phoneme_decoder.out.weight"))
    return out


def gru_groups(net: StsNet, keep: int) -> list[ChannelGroup]:
    """The channel groups that narrow every GRU of `net` to `keep` hidden units: per GRU, the
    three gate blocks (r, z, n) of ``weight_ih`` / ``weight_hh`` rows and both biases, the
    ``weight_hh`` columns and the reader's columns; a unit's importance is the norm of its
    ``weight_hh`` gate rows and column (what it receives and what it sends)."""
    h = net.cfg.gru_hidden
    keep = _check_keep(keep, h, GRU_UNIT)
    groups = []
    for gru, reader in _grus(net):
        slots = []
        for g in range(_GATES):
            slots += [Slot(f"{gru}.weight_hh_l0", 0, g * h, producer=True),
                      Slot(f"{gru}.weight_ih_l0", 0, g * h),
                      Slot(f"{gru}.bias_ih_l0", 0, g * h),
                      Slot(f"{gru}.bias_hh_l0", 0, g * h)]
        slots += [Slot(f"{gru}.weight_hh_l0", 1, 0, producer=True), Slot(reader, 1)]
        groups.append(ChannelGroup(gru, h, keep, tuple(slots)))
    return groups


def _channel_views(net: StsNet) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """``key: (view, back)``: shapes under which one latent channel is one entry of the axis
    the level-5 groups slice, and the shapes (with -1 for the narrowed part) the sliced
    tensors return to: the latent GRU's ``weight_ih`` ``(3H, c5·F')`` ↔ ``(3H, c5, F')``,
    ``proj``'s weight ``(c5·F', H)`` ↔ ``(c5, F', H)`` and bias ``(c5·F',)`` ↔ ``(c5, F')``;
    a kept channel's ``F'`` entries stay contiguous, in order."""
    c5, bins, h = net.cfg.channels[-1], _latent_bins(net.cfg), net.cfg.gru_hidden
    out = {}
    for enc in _encoders(net):
        out[f"{enc}.gru.weight_ih_l0"] = ((_GATES * h, c5, bins), (_GATES * h, -1))
        out[f"{enc}.proj.weight"] = ((c5, bins, h), (-1, h))
        out[f"{enc}.proj.bias"] = ((c5, bins), (-1,))
    return out


# ---------------------------------------------------------------------------------- surgery


def _rebuild(net: StsNet, cfg: StsConfig, state: Mapping[str, torch.Tensor]) -> None:
    """Replace `net`'s children by those of ``StsNet(cfg)`` holding `state` and set
    ``net.cfg``; training mode and ``requires_grad`` carry over. The new network is built on
    the meta device (no random init, no draw from the global RNG) and takes `state`'s tensors
    (``assign``), so they stay on `net`'s device and dtype."""
    with torch.device("meta"):
        new = StsNet(cfg)
    new.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*new.named_parameters(), *new.named_buffers()] if t.is_meta]
    if left:  # a tensor the state dict does not carry (a non-persistent buffer) was added
        raise StsError(f"narrowing rebuilds StsNet from its state dict, which lacks {left}")
    grads = {n: p.requires_grad for n, p in net.named_parameters()}
    for n, p in new.named_parameters():
        p.requires_grad_(grads.get(n, True))
    new.train(net.training)
    for name, child in new.named_children():
        setattr(net, name, child)
    net.cfg = cfg


@torch.no_grad()
def _narrow(net: StsNet, groups: list[ChannelGroup], cfg: StsConfig,
            views: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]
            ) -> dict[str, torch.Tensor]:
    """Select each group's channels by importance, slice the state (under `views`), rebuild
    `net` at `cfg`; returns the kept indices per group."""
    state = {k: v.detach() for k, v in net.state_dict().items()}
    viewed = {**state, **{k: state[k].reshape(view) for k, (view, _) in views.items()}}
    plan = [(g, select_channels(channel_importance(viewed, g), g.target)) for g in groups]
    new = slice_state(viewed, plan)
    for key, (_, back) in views.items():
        new[key] = new[key].reshape(back)
    _rebuild(net, cfg, {k: v.clone() for k, v in new.items()})
    return {g.name: keep for g, keep in plan}


def narrow_level(net: StsNet, level: int, keep: int) -> dict[str, torch.Tensor]:
    """Narrow ``cfg.channels[level]`` of `net` to `keep` in place (module docstring: every
    encoder's block `level`, the decoder blocks writing that width, every reader). Returns
    the kept channel indices (ascending) per channel group, keyed by the producing module.
    StsError (a ValueError) for a level outside 0..5 or `keep` outside 1..current."""
    cfg = net.cfg
    k = _check_level(cfg, level)
    groups = level_groups(net, k, keep)
    channels = list(cfg.channels)
    channels[k] = groups[0].target
    views = _channel_views(net) if k == LEVELS - 1 else {}
    return _narrow(net, groups, cfg.replace(channels=tuple(channels)), views)


def narrow_gru(net: StsNet, keep: int) -> dict[str, torch.Tensor]:
    """Narrow ``cfg.gru_hidden`` (every GRU of `net`: ``E1``'s, ``E2``'s, ``Dp``'s) to `keep`
    hidden units in place; each GRU keeps its own most important units. Returns the kept
    unit indices per GRU. StsError for `keep` outside 1..current."""
    groups = gru_groups(net, keep)
    return _narrow(net, groups, net.cfg.replace(gru_hidden=groups[0].target), {})


# ------------------------------------------------------------------------------------ units


@dataclass(frozen=True)
class WidthUnit:
    """One width unit of an STS network: ``name`` (``level0`` … ``level5``, ``gru``), its
    current ``width``, the smallest width a search should take it to (``minimum``; the
    surgery itself accepts any width >= 1), and the paths of the modules whose weights
    narrowing it slices (the instance norms in between hold no state and are not listed)."""

    name: str
    width: int
    minimum: int
    modules: tuple[str, ...]
    kind: str = "width"
    position: int = 0

    @property
    def actions(self) -> tuple[str, ...]:
        """``("narrow",)`` while the width is above its minimum, else none."""
        return ("narrow",) if self.width > self.minimum else ()

    def to_unit(self) -> Unit:
        """The pipeline's record (:class:`models.units.Unit`); component ``"net"``."""
        return Unit(self.name, self.kind, "net", self.position, self.actions, self.width, None)


def _modules(groups: list[ChannelGroup]) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for s in g.slots:
            path = s.key.rsplit(".", 1)[0]
            if path not in out:
                out.append(path)
    return tuple(out)


def units(net: StsNet, minimum: int = MIN_WIDTH) -> list[WidthUnit]:
    """The width units of `net`: ``level0`` … ``level5`` then ``gru``."""
    cfg = net.cfg
    out = [WidthUnit(level_unit(k), c, minimum, _modules(level_groups(net, k, c)), position=k)
           for k, c in enumerate(cfg.channels)]
    h = cfg.gru_hidden
    out.append(WidthUnit(GRU_UNIT, h, minimum, _modules(gru_groups(net, h))))
    return out


def _unit_level(name: str) -> int | None:
    """The level of unit `name`, None for the GRU unit; StsError for an unknown name."""
    if name == GRU_UNIT:
        return None
    names = [level_unit(k) for k in range(LEVELS)]
    if name not in names:
        raise StsError(f"unknown STS width unit {name!r}; units: {', '.join(names)}, "
                       f"{GRU_UNIT}")
    return names.index(name)


def narrowed_config(cfg: StsConfig, unit: str, keep: int) -> StsConfig:
    """`cfg` with unit `unit` at width `keep` (what narrowing it gives)."""
    k = _unit_level(unit)
    if k is None:
        return cfg.replace(gru_hidden=_check_keep(keep, cfg.gru_hidden, unit))
    channels = list(cfg.channels)
    channels[k] = _check_keep(keep, channels[k], unit)
    return cfg.replace(channels=tuple(channels))


def narrow_unit(net: StsNet, unit: str, keep: int) -> dict[str, torch.Tensor]:
    """Narrow the width unit named `unit` to `keep` in place (:func:`narrow_level` or
    :func:`narrow_gru`)."""
    k = _unit_level(unit)
    return narrow_gru(net, keep) if k is None else narrow_level(net, k, keep)


def narrow_by_factor(net: StsNet, unit: str, factor: float, minimum: int = MIN_WIDTH
                     ) -> int:
    """Narrow `unit` to ``floor(width · factor)``, at least `minimum`
    (:func:`models.units.narrowed_width`; ValueError if that does not shrink it). Returns the
    new width."""
    _unit_level(unit)  # StsError for an unknown name
    width = next(u.width for u in units(net, minimum) if u.name == unit)
    new = narrowed_width(width, factor, 1, minimum)
    narrow_unit(net, unit, new)
    return new


def param_count(cfg: StsConfig) -> int:
    """Trainable parameters of ``StsNet(cfg)``, counted on the meta device (nothing is
    allocated or initialised)."""
    with torch.device("meta"):
        net: nn.Module = StsNet(cfg)
    return parameter_count(net)


__all__ = [
    "GRU_UNIT",
    "LEVELS",
    "MIN_WIDTH",
    "WidthUnit",
    "gru_groups",
    "level_groups",
    "level_unit",
    "narrow_by_factor",
    "narrow_gru",
    "narrow_level",
    "narrow_unit",
    "narrowed_config",
    "param_count",
    "units",
]
