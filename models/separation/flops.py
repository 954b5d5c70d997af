"""Multiply-add counts and parameter counts of the separator networks, as Table 2 reports them.

§3.2: "We also use Giga Floating Point Operations (GFLOPs) to weight the computational cost. The
floating operation here is measured by a three-second long stereo input." Table 2's figures are
multiply-accumulates (MACs), not 2 × MACs: the UNet-5 of Table 1 / §2.1 on 3 s of stereo
44.1 kHz (network input 4 × 1025 bins × 376 frames) has 181.86 G MACs against Table 2's
182.81 (2 × MACs would be 364), UNet-6 219.76 against 220.73 and MDenseNet 37.03 against
37.42, and the K = 2 / 4 / 8 figures agree as closely — so ``gflops`` here is MACs / 1e9,
the convention of common counters (e.g. thop). MMDenseNet is the exception: 32.54 against
27.63 (Table 1's MMDenseNet, as read in :mod:`models.separation.nets`, costs more than the
figure Table 2 gives it).

What is counted: the mask network only (``Separator.net``), every ``Conv1d`` / ``Conv2d``
(output elements × input channels per group × kernel size), ``ConvTranspose1d`` / ``2d`` (input
elements × output channels per group × kernel size) and ``Linear`` (output elements × input
features), found with forward hooks. Not counted: biases, batch norm, activations, pooling,
interpolation, the sigmoid, and the fixed DSP around the network — filter-bank and STFT /
iSTFT convolutions (functional convolutions on buffers, not modules), mask multiplication.

Counting at paper size needs no arithmetic: :func:`network_gflops` builds the network on the
``meta`` device (shapes only, no memory, no compute) and walks it with the same hooks; the tests
check that the meta walk equals the walk of a real forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from models.separation.nets import build_net
from models.separation.separator import spectrum_shape

PAPER_SECONDS = 3.0
PAPER_SAMPLE_RATE = 44100
PAPER_CHANNELS = 2

@dataclass(frozen=True)
class PaperFigures:
    """One model's Table 2 figures: parameters (millions) and GFLOPs per K it reports."""

    params_m: float
    gflops: dict[int, float]


# Table 2 (MMDenseNet is reported without CWS only).
PAPER_TABLE2: dict[str, PaperFigures] = {
    "unet5": PaperFigures(13.3, {1: 182.81, 2: 91.90, 4: 46.44, 8: 23.71}),
    "unet6": PaperFigures(53.0, {1: 220.73, 2: 110.86, 4: 55.92, 8: 28.46}),
    "mdensenet": PaperFigures(0.27, {1: 37.42, 2: 19.03, 4: 9.67, 8: 5.07}),
    "mmdensenet": PaperFigures(0.33, {1: 27.63}),
}

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


@dataclass
class MacCount:
    """Multiply-adds of one forward: ``total`` and per module name."""

    total: int = 0
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.total / 1e9


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        per = module.out_channels // module.groups * math.prod(module.kernel_size)
        return inp.numel() * per
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        per = module.in_channels // module.groups * math.prod(module.kernel_size)
        return out.numel() * per
    assert isinstance(module, nn.Linear)
    return out.numel() * module.in_features


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> MacCount:
    """Multiply-adds of ``module(*inputs)`` (module docstring for what is counted).

    Works on real and on ``meta`` tensors; runs the forward under ``torch.no_grad``.
    """
    count = MacCount()
    handles = []

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
            macs = _layer_macs(mod, args[0], out)
            count.by_module[name] = count.by_module.get(name, 0) + macs
            count.total += macs
        return fn

    for name, mod in module.named_modules():
        if isinstance(mod, _COUNTED):
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return count


def network_macs(arch: str, k: int, *, seconds: float = PAPER_SECONDS,
                 sample_rate: int = PAPER_SAMPLE_RATE, channels: int = PAPER_CHANNELS,
                 width: float = 1.0, taps: int | None = None,
                 device: str | torch.device = "meta") -> MacCount:
    """MACs of the mask network of ``Separator(arch, k, channels, sample_rate, width)`` on
    ``seconds`` of audio (batch 1), built and walked on ``device`` (``meta``: shapes only)."""
    shape = spectrum_shape(k, channels, sample_rate, int(round(seconds * sample_rate)), taps)
    with torch.device(device):
        net = build_net(arch, shape[0], shape[0], width).eval()
        x = torch.zeros(1, *shape)
    return count_macs(net, x)


def network_gflops(arch: str, k: int, **kwargs: object) -> float:
    """Table 2's "GFLOPs": :func:`network_macs` / 1e9 (3 s of stereo 44.1 kHz by default)."""
    return network_macs(arch, k, **kwargs).gmacs  # type: ignore[arg-type]


def network_params(arch: str, k: int, channels: int = PAPER_CHANNELS,
                   width: float = 1.0) -> int:
    """Trainable parameters of the mask network (built on ``meta``: no memory)."""
    with torch.device("meta"):
        net = build_net(arch, 2 * channels * k, 2 * channels * k, width)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
