"""Registry presets of the CWS separators (family ``separation``).

Four architectures of the paper (§2, Table 1) — ``cws-unet5``, ``cws-unet6``,
``cws-mdensenet``, ``cws-mmdensenet`` — each in three sizes:

* the paper's: stereo 44.1 kHz, full width (Table 2's parameter counts), K = 4 subbands (the
  best average of Table 2 for every architecture); ``k`` is an override (1 = no CWS, 2, 4, 8);
* ``-demo``: stereo 16 kHz (the synthetic corpus's MUSDB layout), narrower, trains in minutes on
  a 2-core CPU;
* ``-unittest``: stereo 8 kHz, tiny, for tests (and the export acceptance test, which exports
  every ``-unittest`` preset).

The device program is the whole :class:`~models.separation.separator.Separator`: a fixed
chunk of the mixture ``(1, C, T)`` in, the two stems ``(1, 2, C, T)`` out, with the filter
banks and the STFT / iSTFT inside the graph as convolutions.
"""

from __future__ import annotations

from typing import Any

import torch

from models.registry import AudioMeta, ModelSpec, register
from models.separation.separator import Separator

FAMILY = "separation"

#: (arch, description) of the paper's four networks
ARCHITECTURES = {
    "unet5": "UNet with 5 scales (§2.1)",
    "unet6": "UNet with 6 scales (§2.1)",
    "mdensenet": "MDenseNet, scale 5 (Table 1)",
    "mmdensenet": "MMDenseNet: low / high / full-band MDenseNets (Table 1)",
}
#: preset name stem per architecture
STEMS = {"unet5": "cws-unet5", "unet6": "cws-unet6", "mdensenet": "cws-mdensenet",
         "mmdensenet": "cws-mmdensenet"}
#: (suffix, sample rate, chunk seconds, width per architecture, what it is for)
SIZES: list[tuple[str, int, float, dict[str, float], str]] = [
    ("", 44100, 3.0, {"unet5": 1.0, "unet6": 1.0, "mdensenet": 1.0, "mmdensenet": 1.0},
     "paper size, stereo 44.1 kHz"),
    ("-demo", 16000, 2.0,
     {"unet5": 0.125, "unet6": 0.0625, "mdensenet": 0.5, "mmdensenet": 0.5},
     "demo size, stereo 16 kHz, trains in minutes on a CPU"),
    ("-unittest", 8000, 0.5,
     {"unet5": 0.0625, "unet6": 0.03125, "mdensenet": 0.25, "mmdensenet": 0.25},
     "tiny, for tests"),
]


def _mixture(seconds: float, sample_rate: int, channels: int) -> torch.Tensor:
    """A seeded stand-in mixture ``(1, C, T)``: a harmonic 'voice' over a noisy 'band'."""
    n = int(round(seconds * sample_rate))
    g = torch.Generator().manual_seed(0)
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 220.0 * (1 + 0.02 * torch.sin(2 * torch.pi * 5 * t))
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / sample_rate
    voice = sum(0.2 / h * torch.sin(h * phase) for h in range(1, 6))
    band = 0.05 * torch.randn(channels, n, generator=g, dtype=torch.float64)
    mix = voice.unsqueeze(0) + band
    return mix.unsqueeze(0).float()  # (1, C, T)


def _inputs(seconds: float):  # type: ignore[no-untyped-def]
    def make(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        return (_mixture(seconds, int(model.sample_rate), int(model.channels)),)

    return make


def _audio_inputs(model: torch.nn.Module, wav: torch.Tensor, sample_rate: int
                  ) -> tuple[torch.Tensor, ...]:
    """A real mono clip ``(T,)`` as the model's input ``(1, C, T)`` (every channel the same)."""
    if int(sample_rate) != int(model.sample_rate):
        raise ValueError(f"clip at {sample_rate} Hz; the model runs at {model.sample_rate} Hz")
    x = wav.reshape(1, 1, -1).float()
    return (x.expand(1, int(model.channels), x.shape[-1]).contiguous(),)


def preset_config(arch: str, suffix: str) -> dict[str, Any]:
    """The constructor arguments of preset ``STEMS[arch] + suffix``."""
    for suf, sr, _secs, widths, _ in SIZES:
        if suf == suffix:
            return {"arch": arch, "k": 4, "channels": 2, "sample_rate": sr,
                    "width": widths[arch], "dropout": 0.1, "taps": None,
                    "loss_domain": "magnitude", "layers": None, "block_widths": None}
    raise KeyError(suffix)


def _register_all() -> None:
    for arch, what in ARCHITECTURES.items():
        for suffix, sr, secs, _widths, size in SIZES:
            cfg = preset_config(arch, suffix)
            register(ModelSpec(
                name=STEMS[arch] + suffix, family=FAMILY, factory=Separator, defaults=cfg,
                inputs=_inputs(secs),
                audio=AudioMeta(sample_rate=sr, channels=2, chunk_seconds=secs),
                description=f"CWS separator, {what}, K=4; {size}",
                component="separator", tags=("evolvable",),
                audio_inputs=_audio_inputs,
            ))


# ---- Vox-TasNet (issue 25; models.separation.tasnet) ------------------------------------------
#: (suffix, sample rate, chunk seconds, hyper-parameters, what it is for). The paper's size:
#: Conv-TasNet's best configuration of its Table 2 (N 512, L 16, B 128, H 512, P 3, X 8, R 3)
#: on the stacked stereo embedding (2N = 1024 TCN input channels): 5.0 M parameters, the
#: "about 5 M" of the Vox-TasNet paper. -demo: a quarter of N and H, 6 x 2 blocks, 16 kHz
#: (0.35 M parameters; one training step of 4 x 1 s takes 0.7 s on one CPU thread).
TASNET_SIZES: list[tuple[str, int, float, dict[str, int], str]] = [
    ("", 44100, 3.0, {"n": 512, "l": 16, "b": 128, "h": 512, "p": 3, "x": 8, "r": 3},
     "paper size (N 512, L 16, B 128, H 512, P 3, X 8, R 3), stereo 44.1 kHz"),
    ("-demo", 16000, 2.0, {"n": 128, "l": 16, "b": 64, "h": 128, "p": 3, "x": 6, "r": 2},
     "demo size, stereo 16 kHz, trains in minutes on a CPU"),
    ("-unittest", 8000, 0.5, {"n": 16, "l": 8, "b": 8, "h": 16, "p": 3, "x": 2, "r": 2},
     "tiny, for tests"),
]
#: the near-causal model's look-ahead (our choice; the summary of the paper gives none): 20 ms
#: of future frames in the TCN, plus the encoder's window of L samples
CAUSAL_LOOKAHEAD_MS = 20.0


def tasnet_config(suffix: str, causal: bool) -> dict[str, Any]:
    """The constructor arguments of preset ``vox-tasnet[-causal]`` + `suffix`."""
    for suf, sr, _secs, hyper, _ in TASNET_SIZES:
        if suf == suffix:
            return {"sample_rate": sr, "channels": 2, **hyper,
                    "norm": "cln" if causal else "gln",
                    "lookahead_ms": CAUSAL_LOOKAHEAD_MS if causal else None, "blocks": None}
    raise KeyError(suffix)


def _register_tasnet() -> None:
    from models.separation.tasnet import VoxTasNet

    for causal in (False, True):
        stem = "vox-tasnet-causal" if causal else "vox-tasnet"
        kind = (f"near-causal (cLN, {CAUSAL_LOOKAHEAD_MS:g} ms look-ahead)" if causal
                else "offline (gLN)")
        for suffix, sr, secs, _hyper, size in TASNET_SIZES:
            register(ModelSpec(
                name=stem + suffix, family=FAMILY, factory=VoxTasNet,
                defaults=tasnet_config(suffix, causal), inputs=_inputs(secs),
                audio=AudioMeta(sample_rate=sr, channels=2, chunk_seconds=secs),
                description=f"Vox-TasNet stereo singing voice cancellation, {kind}; {size}",
                component="separator", tags=("evolvable",), audio_inputs=_audio_inputs,
            ))


_register_all()
_register_tasnet()
