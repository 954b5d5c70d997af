"""Mask networks of the CWS paper: UNet (§2.1, Fig. 2), MDenseNet and MMDenseNet (§2.2, Table 1).

Every network maps ``(B, in_channels, F, N)`` — the real and imaginary parts of the C·K
subband spectra, stacked channel-wise (eq. 6) — to ``(B, out_channels, F, N)`` sigmoid masks
in [0, 1] (2 sources × C·K subband channels, Table 1's ``Conv2d(32 → 2·C·K)``). Any F and N
work (pooling floors, upsampled maps are resized / padded to their skip's size) as long as
every pooling level keeps at least one row and column (``min_size``: smallest (F, N)).

Paper sizes (``width = 1``), stereo, K = 1, counted by the tests against Table 2:

* **UNet-5** (s = 5): encoder widths 64, 128, 256, 512, 512; up blocks 1024 → 256, 512 → 128,
  256 → 64, 128 → 64 (input: skip ⊕ upsampled), each a conv block of 2 × (conv 3×3, BN, ReLU),
  max-pool down, bilinear ("linear interpolation") up, dropout after each up block, 1×1 out
  conv: 13.40 M parameters (Table 2: 13.3 M). **UNet-6** adds a 1024-wide level (64 … 1024,
  1024; up 2048 → 512 …): 53.52 M (53 M). The bottom level keeps the width of the one above
  it, the bilinear-upsampling U-Net of Ronneberger et al. as commonly implemented.
* **MDenseNet** (scale 5): conv 3×3 → 32, dense blocks (growth k, L layers) (14, 4) then eight
  (16, 4); 1×1 conv + 2×2 max-pool before blocks 2–5, 2×2 transposed conv (stride 2) before
  blocks 6–9 whose input is the upsampled map ⊕ the skip from the same scale; out block
  DenseBlock(k = 32, L = 2) and a 1×1 conv to the masks: 0.274 M (0.27 M).
* **MMDenseNet**: three scale-4 MDenseNets (3 pools) for the low half of the bins
  (conv (t, f) = (3, 4), blocks (14, 4), (16, 4) × 6), the high half (conv 3×3, (10, 3) × 6,
  (16, 3)) and the full band (conv 3×3, (6, 2) × 7); low ⊕ high along frequency, ⊕ full along
  channels, then DenseBlock(k = 32, L = 2) and a 1×1 conv: 0.298 M (Table 2: 0.33 M; this is
  what Table 1's rows add up to).

A dense layer is BN → ReLU → conv 3×3 (no bias) → dropout; a dense block's layers each see the
concatenation of the block input and all earlier layers' outputs, and the block outputs its last
layer's k maps (this reading is what reproduces Table 2's parameter counts). ``width`` scales
every channel count (UNet widths, growth rates, the 32-channel stem and out block) for small
presets.

Evolvable units (``compress run``): every layer of a dense block can be removed while the
shapes around it stay what they were (:func:`remove_dense_layer`: a block outputs its last
layer's k maps, and a later layer only loses the input channels the removed one wrote, whose
weights are sliced out). ``layers`` (one count per dense block, :attr:`MaskNet.dense_layers`,
in the order of :meth:`MaskNet.dense_blocks`) rebuilds such a network. The UNets have no
removable unit (a level is not shape-preserving to drop). Every net narrows: ``widths`` (one per
block, :attr:`MaskNet.block_widths`: dense growth rates, UNet conv-block channels) rebuilds it
and :meth:`MaskNet.width_groups` says which weights each kept channel lives in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.separation import SeparationError
from models.units import ChannelGroup, Slot

ARCHS = ("unet5", "unet6", "mdensenet", "mmdensenet")

# Table 1: (growth rate k, layers L) per dense block, down path then up path.
MDN_BLOCKS: tuple[tuple[int, int], ...] = ((14, 4),) + ((16, 4),) * 8
MMDN_LOW_BLOCKS: tuple[tuple[int, int], ...] = ((14, 4),) + ((16, 4),) * 6
MMDN_HIGH_BLOCKS: tuple[tuple[int, int], ...] = ((10, 3),) * 6 + ((16, 3),)
MMDN_FULL_BLOCKS: tuple[tuple[int, int], ...] = ((6, 2),) * 7
STEM_CHANNELS = 32
OUT_GROWTH = 32
UNET_BASE = 64


def scaled(channels: int, width: float) -> int:
    """``channels × width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))


def _match(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Zero-pad (or crop) the last two dims of ``x`` at their end to ``ref``'s sizes.

    Padding is a concatenation with zeros, not ``F.pad``: when the int8 groups quantize the
    up-sampler but not the skip concatenation (``compress run`` quantizes group by group), the
    pad gets an int8 input and a float output, and XNNPACK refuses the program when it loads
    ("Failed to create StaticConstantPad ... invalid parameter"; the evolved demo MDenseNet,
    2026-12-06; with the concatenation its int8 program loads and measures 32.8 dB SQNR).
    Zero is exact either way.
    """
    dh = ref.shape[-2] - x.shape[-2]
    dw = ref.shape[-1] - x.shape[-1]
    if dh < 0 or dw < 0:
        x = x[..., : ref.shape[-2], : ref.shape[-1]]
        dh, dw = max(dh, 0), max(dw, 0)
    if dh > 0:
        x = torch.cat([x, x.new_zeros(*x.shape[:-2], dh, x.shape[-1])], dim=-2)
    if dw > 0:
        x = torch.cat([x, x.new_zeros(*x.shape[:-1], dw)], dim=-1)
    return x


class MaskNet(nn.Module, ABC):
    """Base of the mask networks: ``(B, in, F, N)`` spectra → ``(B, out, F, N)`` masks."""

    @property
    @abstractmethod
    def min_size(self) -> tuple[int, int]:
        """Smallest (F, N) the network takes (every pooling level keeps a row and a column)."""

    def dense_blocks(self) -> list[tuple[str, DenseBlock, str]]:
        """``(module path, block, scale tag)`` of every dense block in program order (none
        for the UNets). The tag names the block's band and pooling depth (``s2``,
        ``low_s1``...): layers with the same tag run at the same spectrogram size."""
        return []

    @property
    def dense_layers(self) -> list[int]:
        """Layers per dense block, in the order of :meth:`dense_blocks`."""
        return [len(b.layers) for _, b, _ in self.dense_blocks()]

    @property
    def dense_growths(self) -> list[int]:
        """Growth rate (channels each layer adds) per dense block, in the same order."""
        return [int(b.growth) for _, b, _ in self.dense_blocks()]

    @property
    def block_widths(self) -> list[int]:
        """The widths a narrowing sets, one per block: a dense net's growth rates, a UNet's
        conv-block output channels (what ``build_net(..., widths=)`` takes)."""
        return self.dense_growths

    @abstractmethod
    def width_groups(self, widths: Sequence[int]) -> list[ChannelGroup]:
        """The channel groups (:mod:`models.units`) that narrow this net to `widths` (one per
        block, :attr:`block_widths`): keys relative to the net."""


# --------------------------------------------------------------------------------------- UNet


class ConvBlock(nn.Sequential):
    """2 × (conv 3×3, BN, ReLU) (§2.1)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class UNet(MaskNet):
    """UNet of ``scales`` resolutions (§2.1, Fig. 2): ``(B, in, F, N)`` → ``(B, out, F, N)``."""

    def __init__(self, in_channels: int, out_channels: int, scales: int = 5, width: float = 1.0,
                 dropout: float = 0.1, channels: Sequence[int] | None = None):
        super().__init__()
        if scales < 2:
            raise SeparationError(f"a UNet needs at least 2 scales, got {scales}")
        ch = unet_channels(scales, width) if channels is None else [int(c) for c in channels]
        if len(ch) != 2 * scales - 1 or min(ch) < 1:
            raise SeparationError(f"channels={list(ch)}: a {scales}-scale UNet has "
                                  f"{2 * scales - 1} conv blocks (in, {scales - 1} down, "
                                  f"{scales - 1} up), each >= 1 channel")
        enc = ch[:scales]  # in-conv, then each down block: the levels' widths
        self.scales = scales
        self.encoder_widths = tuple(enc)
        self.inc = ConvBlock(in_channels, enc[0])  # in-conv: expands to 64 channels
        self.down = nn.ModuleList(ConvBlock(enc[i - 1], enc[i]) for i in range(1, scales))
        ups = []
        below = enc[-1]
        for j, i in enumerate(range(scales - 2, -1, -1)):
            out = ch[scales + j]
            ups.append(ConvBlock(enc[i] + below, out))  # skip of level i ⊕ upsampled
            below = out
        self.up = nn.ModuleList(ups)
        self.drop = nn.Dropout(dropout)
        self.outc = nn.Conv2d(below, out_channels, 1)

    @property
    def block_widths(self) -> list[int]:
        return [int(b[0].out_channels) for b in (self.inc, *self.down, *self.up)]

    def width_groups(self, widths: Sequence[int]) -> list[ChannelGroup]:
        """Each conv block's two convs narrowed to its width in `widths` (in, down, up order):
        the first conv's output is read by the second; the block's output by the next level
        (after pooling or upsampling), by the skip into the up block of its level (first in
        that block's input) and, for the last up block, by the 1×1 out conv."""
        names = ["inc", *[f"down.{i}" for i in range(len(self.down))],
                 *[f"up.{j}" for j in range(len(self.up))]]
        blocks = [self.inc, *self.down, *self.up]
        if len(widths) != len(blocks):
            raise SeparationError(f"widths={list(widths)}: this UNet has {len(blocks)} blocks")
        s = self.scales
        readers: dict[int, list[Slot]] = {b: [] for b in range(len(blocks))}
        # level l's output (l = 0: inc, l >= 1: down l-1) goes down to the next level ...
        for lvl in range(s - 1):
            readers[lvl].append(Slot(f"down.{lvl}.0.weight", 1))
        # ... and, but for the bottom, as the skip into up block j = s - 2 - lvl (offset 0)
        for lvl in range(s - 1):
            readers[lvl].append(Slot(f"up.{s - 2 - lvl}.0.weight", 1, 0))
        # the bottom and every up block but the last feed the next up block after its skip
        for j in range(len(self.up)):
            below = s - 1 if j == 0 else s + j - 1
            skip = int(blocks[s - 2 - j][0].out_channels)
            readers[below].append(Slot(f"up.{j}.0.weight", 1, skip))
        readers[len(blocks) - 1].append(Slot("outc.weight", 1))
        groups = []
        for b, (name, block) in enumerate(zip(names, blocks)):
            c, t = int(block[0].out_channels), int(widths[b])
            bn1 = [Slot(f"{name}.1.{k}", 0) for k in _BN]
            bn2 = [Slot(f"{name}.4.{k}", 0) for k in _BN]
            groups.append(ChannelGroup(f"{name}.0", c, t, (
                Slot(f"{name}.0.weight", 0, 0, producer=True), Slot(f"{name}.0.bias", 0),
                *bn1, Slot(f"{name}.3.weight", 1))))
            groups.append(ChannelGroup(f"{name}.3", c, t, (
                Slot(f"{name}.3.weight", 0, 0, producer=True), Slot(f"{name}.3.bias", 0),
                *bn2, *readers[b])))
        return groups

    @property
    def min_size(self) -> tuple[int, int]:
        return 2 ** (self.scales - 1), 2 ** (self.scales - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inc(x)  # (B, 64, F, N)
        skips = [h]
        for block in self.down:
            h = block(F.max_pool2d(h, 2))  # (B, w_i, F / 2^i, N / 2^i)
            skips.append(h)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=(skip.shape[-2], skip.shape[-1]), mode="bilinear",
                              align_corners=False)
            h = self.drop(block(torch.cat([skip, h], dim=1)))  # (B, w, F', N')
        return torch.sigmoid(self.outc(h))  # (B, out, F, N)


# ---------------------------------------------------------------------------------- DenseNets


class DenseLayer(nn.Sequential):
    """BN → ReLU → conv 3×3 (no bias) → dropout."""

    def __init__(self, in_channels: int, growth: int, dropout: float):
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(),
            nn.Conv2d(in_channels, growth, 3, padding=1, bias=False),
            nn.Dropout(dropout),
        )


class DenseBlock(nn.Module):
    """L dense layers of growth k; each sees the block input ⊕ all earlier outputs.

    Returns the last layer's ``k`` maps (module docstring).
    """

    def __init__(self, in_channels: int, growth: int, layers: int, dropout: float):
        super().__init__()
        if layers < 1:
            raise SeparationError(f"a dense block needs at least one layer, got {layers}")
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth, dropout) for i in range(layers))
        self.in_channels = in_channels
        self.growth = growth
        self.out_channels = growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1) if len(feats) > 1 else x))
        return feats[-1]  # (B, k, F, N)


def _drop_input_channels(layer: DenseLayer, lo: int, hi: int) -> None:
    """Remove input channels ``[lo, hi)`` of a dense layer (its BN and conv) in place."""
    bn, conv = layer[0], layer[2]
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d)
    n = bn.num_features
    idx = torch.cat([torch.arange(0, lo), torch.arange(hi, n)])
    new_bn = nn.BatchNorm2d(n - (hi - lo), eps=bn.eps, momentum=bn.momentum)
    new_conv = nn.Conv2d(n - (hi - lo), conv.out_channels, 3, padding=1, bias=False)
    if new_conv.weight.shape[2:] != conv.weight.shape[2:] or conv.padding != (1, 1):
        raise SeparationError("a dense layer's conv is 3x3 with padding 1")
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new_bn, name).copy_(getattr(bn, name)[idx])
        new_bn.load_state_dict({**new_bn.state_dict(),
                                "num_batches_tracked": bn.state_dict()["num_batches_tracked"]})
        new_conv.weight.copy_(conv.weight[:, idx])
    new_bn.train(bn.training)
    new_conv.train(conv.training)
    layer[0] = new_bn
    layer[2] = new_conv


def remove_dense_layer(block: DenseBlock, index: int) -> None:
    """Remove layer `index` of `block` in place, keeping the block's input and output shapes.

    The block outputs its last layer's k maps, so removing the last layer makes the one before
    it the output (same k channels); a later layer loses the k input channels the removed
    layer wrote (their BN entries and conv weights are sliced out), which is exactly the
    layer a block built with one layer fewer has at that position.
    """
    n = len(block.layers)
    if n < 2:
        raise SeparationError("a dense block keeps at least one layer; this one has "
                              f"{n}")
    if not 0 <= index < n:
        raise SeparationError(f"dense layer {index} does not exist (the block has {n})")
    lo = block.in_channels + index * block.growth
    kept = []
    for j, layer in enumerate(block.layers):
        if j == index:
            continue
        if j > index:
            assert isinstance(layer, DenseLayer)
            _drop_input_channels(layer, lo, lo + block.growth)
        kept.append(layer)
    block.layers = nn.ModuleList(kept)


# ---- narrowing: block widths, dense growth rates or UNet channels (compress run's width unit) --
#: narrowing never takes a block below this many channels
MIN_WIDTH = 2
_BN = ("weight", "bias", "running_mean", "running_var")


def narrow_widths(growths: Sequence[int], factor: float, minimum: int = MIN_WIDTH
                   ) -> list[int]:
    """Every width (growth rate, block channels) times `factor`, rounded down, at least
    `minimum` (widths already at or below it stay); SeparationError when nothing would
    shrink."""
    if not 0.0 < factor < 1.0:
        raise SeparationError(f"narrow factor {factor!r}; expected 0 < factor < 1")
    new = [max(minimum, int(g * factor)) if g > minimum else int(g) for g in growths]
    if new == [int(g) for g in growths]:
        raise SeparationError(f"cannot narrow growth rates {list(growths)} by {factor}: each "
                              f"is at its minimum ({minimum})")
    return new


def _input_slots(path: str, block: DenseBlock, offset: int) -> list[Slot]:
    """Readers of channels entering `block` at `offset` of its input: every layer's BN and
    conv (each layer sees the block input first, then the earlier layers' maps)."""
    out = []
    for m in range(len(block.layers)):
        out += [Slot(f"{path}.layers.{m}.0.{k}", 0, offset) for k in _BN]
        out.append(Slot(f"{path}.layers.{m}.2.weight", 1, offset))
    return out


def _block_groups(path: str, block: DenseBlock, target: int
                  ) -> tuple[list[ChannelGroup], list[Slot]]:
    """Groups of `block`'s layers but its last (each layer's `growth` maps, read by every later
    layer at ``in + j·growth``), narrowed to `target`; and the producer slot of the last
    layer, the block's output, whose readers are outside the block."""
    g, base, n = int(block.growth), int(block.in_channels), len(block.layers)
    groups = []
    for j in range(n - 1):
        slots = [Slot(f"{path}.layers.{j}.2.weight", 0, 0, producer=True)]
        for m in range(j + 1, n):
            slots += [Slot(f"{path}.layers.{m}.0.{k}", 0, base + j * g) for k in _BN]
            slots.append(Slot(f"{path}.layers.{m}.2.weight", 1, base + j * g))
        groups.append(ChannelGroup(f"{path}.layers.{j}", g, target, tuple(slots)))
    return groups, [Slot(f"{path}.layers.{n - 1}.2.weight", 0, 0, producer=True)]


def _head_groups(head: MaskHead, growth: int) -> list[ChannelGroup]:
    """The mask head's dense block (its input handled by the caller) and its output, read by
    the 1×1 mask conv."""
    block = head[0]
    assert isinstance(block, DenseBlock)
    groups, out = _block_groups("head.0", block, growth)
    groups.append(ChannelGroup("head.0.out", int(block.growth), growth,
                               (*out, Slot("head.1.weight", 1))))
    return groups


def _with_layers(blocks: Sequence[tuple[int, int]], layers: Sequence[int] | None
                 ) -> list[tuple[int, int]]:
    if layers is None:
        return list(blocks)
    if len(layers) != len(blocks):
        raise SeparationError(f"layers={list(layers)}: expected {len(blocks)} counts, one per "
                              "dense block")
    return [(k, int(n)) for (k, _), n in zip(blocks, layers)]


def _split(values: Sequence[int] | None, sizes: Sequence[int], what: str, total: str
           ) -> list[list[int] | None]:
    """`values` (one per dense block of the whole net) cut into runs of `sizes`."""
    if values is None:
        return [None] * len(sizes)
    if len(values) != sum(sizes):
        raise SeparationError(f"{what}={list(values)}: expected {sum(sizes)} values ({total})")
    out: list[list[int] | None] = []
    a = 0
    for n in sizes:
        out.append([int(v) for v in values[a : a + n]])
        a += n
    return out


class MDenseNetBody(nn.Module):
    """Multi-scale DenseNet without its out block (Table 1, one column).

    ``blocks`` lists ``(k, L)`` for the ``pools + 1`` down-path blocks then the ``pools``
    up-path blocks; a 1×1 conv + 2×2 max-pool precedes each down-path block after the first,
    a 2×2 stride-2 transposed conv each up-path block (whose input also takes the skip).
    ``stem_kernel`` is the first conv's (f, t) size, zero-padded to keep F and N.
    ``growths`` (one per block) replaces the blocks' scaled growth rates (a narrowed net).
    """

    def __init__(self, in_channels: int, blocks: Sequence[tuple[int, int]], pools: int,
                 stem_kernel: tuple[int, int] = (3, 3), width: float = 1.0,
                 dropout: float = 0.1, growths: Sequence[int] | None = None):
        super().__init__()
        if len(blocks) != 2 * pools + 1:
            raise SeparationError(f"{pools} pools need {2 * pools + 1} dense blocks, "
                                  f"got {len(blocks)}")
        kf, kt = stem_kernel
        # "same" zero padding, the extra row / column of an even kernel at the end
        self.stem_pad = ((kt - 1) // 2, kt // 2, (kf - 1) // 2, kf // 2)
        stem = scaled(STEM_CHANNELS, width)
        self.stem = nn.Conv2d(in_channels, stem, (kf, kt))
        self.pools = pools
        grow = [(scaled(k, width), n) for k, n in blocks]
        if growths is not None:
            if len(growths) != len(blocks) or min(growths) < 1:
                raise SeparationError(f"growths={list(growths)}: expected {len(blocks)} "
                                      "growth rates >= 1")
            grow = [(int(g), n) for g, (_, n) in zip(growths, grow)]
        self.transitions = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        chans = stem
        skips = []
        for i in range(pools + 1):
            if i > 0:
                self.transitions.append(nn.Conv2d(chans, chans, 1))
            k, n = grow[i]
            self.down_blocks.append(DenseBlock(chans, k, n, dropout))
            chans = k
            skips.append(k)
        skips.pop()
        self.upsamplers = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in range(pools):
            k, n = grow[pools + 1 + i]
            self.upsamplers.append(nn.ConvTranspose2d(chans, chans, 2, stride=2))
            self.up_blocks.append(DenseBlock(chans + skips.pop(), k, n, dropout))
            chans = k
        self.out_channels = chans

    @property
    def min_size(self) -> tuple[int, int]:
        return 2**self.pools, 2**self.pools

    def dense_blocks(self, prefix: str, band: str = "") -> list[tuple[str, DenseBlock, str]]:
        """The body's dense blocks in program order (see :meth:`MaskNet.dense_blocks`)."""
        out: list[tuple[str, DenseBlock, str]] = []
        for i, b in enumerate(self.down_blocks):
            assert isinstance(b, DenseBlock)
            out.append((f"{prefix}.down_blocks.{i}", b, f"{band}s{i}"))
        for i, b in enumerate(self.up_blocks):
            assert isinstance(b, DenseBlock)
            out.append((f"{prefix}.up_blocks.{i}", b, f"{band}s{self.pools - 1 - i}"))
        return out

    def growth_groups(self, prefix: str, growths: Sequence[int]
                      ) -> tuple[list[ChannelGroup], list[Slot]]:
        """Channel groups narrowing the body's blocks to `growths` (down path then up path),
        keys under `prefix`; and the producer slot of the body's output (its readers are the
        caller's). A transition (1×1, k → k) and an up-sampler (k → k) follow the block
        before them: their outputs are groups of their own with the same target."""
        downs = [b for b in self.down_blocks if isinstance(b, DenseBlock)]
        ups = [b for b in self.up_blocks if isinstance(b, DenseBlock)]
        if len(growths) != len(downs) + len(ups):
            raise SeparationError(f"growths={list(growths)}: expected "
                                  f"{len(downs) + len(ups)} values for {prefix}")
        down_new, up_new = list(growths[: len(downs)]), list(growths[len(downs):])
        groups: list[ChannelGroup] = []
        outs: list[list[Slot]] = []
        for i, b in enumerate(downs):
            gs, out = _block_groups(f"{prefix}.down_blocks.{i}", b, down_new[i])
            groups += gs
            outs.append(out)
        for u, b in enumerate(ups):
            gs, out = _block_groups(f"{prefix}.up_blocks.{u}", b, up_new[u])
            groups += gs
            outs.append(out)
        for i, b in enumerate(downs):
            path, g, t = f"{prefix}.down_blocks.{i}", int(b.growth), down_new[i]
            readers: list[Slot]
            if i < self.pools:  # the transition before the next block, and the skip
                tr = f"{prefix}.transitions.{i}"
                u = self.pools - 1 - i
                readers = [Slot(f"{tr}.weight", 1),
                           *_input_slots(f"{prefix}.up_blocks.{u}", ups[u],
                                         int(ups[u].in_channels) - g)]
                groups.append(ChannelGroup(tr, g, t, (
                    Slot(f"{tr}.weight", 0, 0, producer=True), Slot(f"{tr}.bias", 0),
                    *_input_slots(f"{prefix}.down_blocks.{i + 1}", downs[i + 1], 0))))
            else:  # the bottom block feeds the first up-sampler
                readers = [Slot(f"{prefix}.upsamplers.0.weight", 0)]
            groups.append(ChannelGroup(f"{path}.out", g, t, (*outs[i], *readers)))
        for u, b in enumerate(ups):
            before = downs[-1] if u == 0 else ups[u - 1]
            t_before = down_new[-1] if u == 0 else up_new[u - 1]
            up = f"{prefix}.upsamplers.{u}"
            groups.append(ChannelGroup(up, int(before.growth), t_before, (
                Slot(f"{up}.weight", 1, 0, producer=True), Slot(f"{up}.bias", 0),
                *_input_slots(f"{prefix}.up_blocks.{u}", b, 0))))
            if u < len(ups) - 1:
                groups.append(ChannelGroup(f"{prefix}.up_blocks.{u}.out", int(b.growth),
                                           up_new[u], (*outs[len(downs) + u],
                                                       Slot(f"{prefix}.upsamplers.{u + 1}"
                                                            ".weight", 0))))
        return groups, outs[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(F.pad(x, self.stem_pad))  # (B, 32, F, N)
        skips = []
        for i, block in enumerate(self.down_blocks):
            if i > 0:
                h = F.max_pool2d(self.transitions[i - 1](h), 2)  # (B, k, F / 2^i, N / 2^i)
            h = block(h)
            skips.append(h)
        skips.pop()
        for up, block in zip(self.upsamplers, self.up_blocks):
            skip = skips.pop()
            h = block(torch.cat([_match(up(h), skip), skip], dim=1))
        return h  # (B, k_last, F, N)


class MaskHead(nn.Sequential):
    """Table 1's out rows: DenseBlock(k = 32, L = 2), Conv2d(32 → masks), sigmoid."""

    def __init__(self, in_channels: int, out_channels: int, width: float, dropout: float,
                 layers: int = 2, growth: int | None = None):
        growth = scaled(OUT_GROWTH, width) if growth is None else int(growth)
        if growth < 1:
            raise SeparationError(f"head growth {growth}: expected >= 1")
        super().__init__(DenseBlock(in_channels, growth, layers, dropout),
                         nn.Conv2d(growth, out_channels, 1), nn.Sigmoid())


class MDenseNet(MaskNet):
    """MDenseNet of scale 5 (Table 1, right column): ``(B, in, F, N) -> (B, out, F, N)``."""

    def __init__(self, in_channels: int, out_channels: int, width: float = 1.0,
                 dropout: float = 0.1, layers: Sequence[int] | None = None,
                 growths: Sequence[int] | None = None):
        super().__init__()
        n = len(MDN_BLOCKS)
        total = f"MDenseNet has {n + 1} dense blocks, {n} in the body, 1 in the head"
        lay = _split(layers, (n, 1), "layers", total)
        grow = _split(growths, (n, 1), "growths", total)
        self.body = MDenseNetBody(in_channels, _with_layers(MDN_BLOCKS, lay[0]), pools=4,
                                  width=width, dropout=dropout, growths=grow[0])
        self.head = MaskHead(self.body.out_channels, out_channels, width, dropout,
                             lay[1][0] if lay[1] else 2, grow[1][0] if grow[1] else None)

    @property
    def min_size(self) -> tuple[int, int]:
        return self.body.min_size

    def dense_blocks(self) -> list[tuple[str, DenseBlock, str]]:
        head = self.head[0]
        assert isinstance(head, DenseBlock)
        return [*self.body.dense_blocks("body"), ("head.0", head, "s0")]

    def width_groups(self, growths: Sequence[int]) -> list[ChannelGroup]:
        n = len(self.dense_blocks()) - 1
        if len(growths) != n + 1:
            raise SeparationError(f"growths={list(growths)}: MDenseNet has {n + 1} dense blocks")
        groups, out = self.body.growth_groups("body", growths[:n])
        head = self.head[0]
        assert isinstance(head, DenseBlock) and isinstance(self.head, MaskHead)
        groups.append(ChannelGroup("body.out", int(self.body.out_channels), int(growths[n - 1]),
                                   (*out, *_input_slots("head.0", head, 0))))
        return groups + _head_groups(self.head, int(growths[n]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MMDenseNet(MaskNet):
    """MMDenseNet (§2.2, Table 1): band MDenseNets for the low and high halves of the bins and
    the full band; low ⊕ high along frequency, ⊕ full along channels, then the mask head."""

    def __init__(self, in_channels: int, out_channels: int, width: float = 1.0,
                 dropout: float = 0.1, layers: Sequence[int] | None = None,
                 growths: Sequence[int] | None = None):
        super().__init__()
        tables = (MMDN_LOW_BLOCKS, MMDN_HIGH_BLOCKS, MMDN_FULL_BLOCKS)
        sizes = (*map(len, tables), 1)
        total = (f"MMDenseNet has {sum(sizes)} dense blocks: 7 low, 7 high, 7 full band, 1 in "
                 "the head")
        lay = _split(layers, sizes, "layers", total)
        grow = _split(growths, sizes, "growths", total)
        self.low = MDenseNetBody(in_channels, _with_layers(MMDN_LOW_BLOCKS, lay[0]), pools=3,
                                 stem_kernel=(4, 3), width=width, dropout=dropout,
                                 growths=grow[0])
        self.high = MDenseNetBody(in_channels, _with_layers(MMDN_HIGH_BLOCKS, lay[1]),
                                  pools=3, width=width, dropout=dropout, growths=grow[1])
        self.full = MDenseNetBody(in_channels, _with_layers(MMDN_FULL_BLOCKS, lay[2]),
                                  pools=3, width=width, dropout=dropout, growths=grow[2])
        if self.low.out_channels != self.high.out_channels:
            raise SeparationError("the low and high band nets must end with the same width "
                                  f"(growths {self.low.out_channels} and "
                                  f"{self.high.out_channels})")
        self.head = MaskHead(self.low.out_channels + self.full.out_channels, out_channels,
                             width, dropout, lay[3][0] if lay[3] else 2,
                             grow[3][0] if grow[3] else None)

    def dense_blocks(self) -> list[tuple[str, DenseBlock, str]]:
        head = self.head[0]
        assert isinstance(head, DenseBlock)
        return [*self.low.dense_blocks("low", "low_"), *self.high.dense_blocks("high", "high_"),
                *self.full.dense_blocks("full", "full_"), ("head.0", head, "s0")]

    @property
    def min_size(self) -> tuple[int, int]:
        f, n = self.full.min_size
        return 2 * f, n  # each band net sees half of the bins

    def width_groups(self, growths: Sequence[int]) -> list[ChannelGroup]:
        if len(growths) != len(self.dense_blocks()):
            raise SeparationError(f"growths={list(growths)}: MMDenseNet has "
                                  f"{len(self.dense_blocks())} dense blocks")
        groups: list[ChannelGroup] = []
        outs = []
        a = 0
        for name in ("low", "high", "full"):
            body = getattr(self, name)
            n = len(body.down_blocks) + len(body.up_blocks)
            gs, out = body.growth_groups(name, growths[a : a + n])
            groups += gs
            outs.append((out, int(growths[a + n - 1]), int(body.out_channels)))
            a += n
        (low, t_low, c_low), (high, t_high, _), (full, t_full, c_full) = outs
        if t_low != t_high:
            raise SeparationError(f"growths={list(growths)}: the low and high band nets must "
                                  f"end with the same width ({t_low} vs {t_high})")
        head = self.head[0]
        assert isinstance(head, DenseBlock) and isinstance(self.head, MaskHead)
        # low and high are stacked along frequency: one set of channels, read once by the head
        groups.append(ChannelGroup("low_high.out", c_low, t_low,
                                   (*low, *high, *_input_slots("head.0", head, 0))))
        groups.append(ChannelGroup("full.out", c_full, t_full,
                                   (*full, *_input_slots("head.0", head, c_low))))
        return groups + _head_groups(self.head, int(growths[a]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-2] // 2
        sub = torch.cat([self.low(x[:, :, :half]), self.high(x[:, :, half:])], dim=2)
        return self.head(torch.cat([sub, self.full(x)], dim=1))  # (B, out, F, N)


def unet_channels(scales: int, width: float = 1.0) -> list[int]:
    """Output channels of a UNet's conv blocks (in, down, up) at `width` (§2.1): levels
    ``64 · 2^i`` (the bottom keeps the width of the one above), each up block the width of
    the level it returns to (the last one 64)."""
    base = scaled(UNET_BASE, width)
    enc = [base * 2**i for i in range(scales - 1)] + [base * 2 ** (scales - 2)]
    return enc + [enc[i - 1] if i > 0 else enc[0] for i in range(scales - 2, -1, -1)]


def paper_blocks(arch: str, width: float = 1.0) -> tuple[list[int], list[int]]:
    """``(layers, widths)`` of ``arch`` at `width` as Table 1 builds it: layers per dense block
    (none for the UNets) and :attr:`MaskNet.block_widths`, before any removal or narrowing."""
    if arch in ("unet5", "unet6"):
        return [], unet_channels(5 if arch == "unet5" else 6, width)
    tables = {"mdensenet": (MDN_BLOCKS,),
              "mmdensenet": (MMDN_LOW_BLOCKS, MMDN_HIGH_BLOCKS, MMDN_FULL_BLOCKS)}[arch]
    rows = [r for t in tables for r in t] + [(OUT_GROWTH, 2)]
    return [n for _, n in rows], [scaled(k, width) for k, _ in rows]


def build_net(arch: str, in_channels: int, out_channels: int, width: float = 1.0,
              dropout: float = 0.1, layers: Sequence[int] | None = None,
              widths: Sequence[int] | None = None) -> MaskNet:
    """The mask network ``arch`` (one of :data:`ARCHS`); `layers` (dense nets only) gives the
    layer count of each dense block (:attr:`MaskNet.dense_layers`), `widths` the width of
    each block (:attr:`MaskNet.block_widths`: growth rates, or a UNet's conv-block channels);
    None the paper's."""
    if layers is not None and arch not in ("mdensenet", "mmdensenet"):
        raise SeparationError(f"layers={list(layers)}: only the dense nets have dense blocks, "
                              f"not {arch!r}")
    if arch == "unet5":
        return UNet(in_channels, out_channels, 5, width, dropout, widths)
    if arch == "unet6":
        return UNet(in_channels, out_channels, 6, width, dropout, widths)
    if arch == "mdensenet":
        return MDenseNet(in_channels, out_channels, width, dropout, layers, widths)
    if arch == "mmdensenet":
        return MMDenseNet(in_channels, out_channels, width, dropout, layers, widths)
    raise SeparationError(f"unknown separator architecture {arch!r}; valid: {', '.join(ARCHS)}")
