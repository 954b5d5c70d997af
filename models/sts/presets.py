"""Registry presets of speech-to-singing (family ``sts``; Parekh et al., ICASSP 2020).

* ``sts``, ``sts-demo``, ``sts-unittest`` — the proposed network trained with the MTL loss
  (P-MTL of §3.1: IN before the latent GRUs, skips from E1, a phoneme decoder, λ = 0.015);
* the other systems of §3.1 at the paper and demo sizes: ``sts-b1`` (no melody), ``sts-b2`` (no
  IN, no skips), ``sts-allnorm`` (IN before every layer), ``sts-pmse`` (λ = 0, no phoneme
  decoder) and ``sts-ae`` (the singing autoencoder, the upper bound), each also ``-demo``. At
  the unittest size the systems are overrides of ``sts-unittest``
  (``registry.build("sts-unittest", **SYSTEMS["b1"])``): every ``-unittest`` preset is exported
  by the registry export suite, and one is enough.

The device program (what ``compress export`` ships, :attr:`ModelSpec.program`) is
:class:`models.sts.program.StsDeviceProgram` on a fixed chunk of ``chunk_frames`` frames: speech
log-magnitude ``X`` and melody image ``C``, both ``(1, 513, T)``, and the latent GRU states of
``E1`` / ``E2`` (``(1, 1, gru_hidden)`` each, zeros for the first chunk) in; the singing
log-magnitude and the next states out. P-MTL's phoneme decoder is left out (its logits only
serve the MTL loss). The metadata says ``chunk_frames`` and the states' names and shapes, so an
app (and ``compress sing``) carries the states from chunk to chunk. The STFT front end and
Griffin-Lim stay on the host side (§2.4): Griffin-Lim's iterations are a loop of STFT / iSTFT
pairs on complex spectra whose count is the app's latency knob, and they have no weights to
compress (:mod:`models.sts.program` says more).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from models.registry import AudioMeta, ModelSpec, register
from models.sts.net import SYSTEMS, StsConfig, StsNet, system_config
from models.sts.preprocess import HOP, N_BINS, SAMPLE_RATE
from models.sts.program import StsDeviceProgram, device_program

FAMILY = "sts"
#: (suffix, size, chunk frames of the device program, what)
STS_SIZES: list[tuple[str, str, int, str]] = [
    ("", "paper", 128, "paper-like size (the paper gives no widths; ours: 64-128 channels, "
                       "GRU 256), 16 kHz, chunks of 128 frames (2.05 s)"),
    ("-demo", "demo", 128, "demo size (16-32 channels, GRU 64), trains in minutes on a CPU"),
    ("-unittest", "unittest", 16, "tiny, for tests"),
]
#: preset name stem of each §3.1 system ("sts" itself is P-MTL)
SYSTEM_NAMES = {"p-mtl": "sts", "b1": "sts-b1", "b2": "sts-b2", "allnorm": "sts-allnorm",
                "p-mse": "sts-pmse", "autoencoder": "sts-ae"}


def build(**config: Any) -> StsNet:
    """The registry factory: ``StsNet(StsConfig(**config))`` (``channels`` may be a list)."""
    return StsNet(StsConfig(**config))


def preset_config(system: str, size: str) -> dict[str, Any]:
    """The JSON-serialisable constructor arguments of one system at one size."""
    cfg = asdict(system_config(system, size))
    cfg["channels"] = list(cfg["channels"])
    return cfg


def example_pair(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded stand-in ``(X, C)`` of `frames` frames: the log-magnitude of a harmonic voice
    gliding over a fifth, and its melody image."""
    g = torch.Generator().manual_seed(seed)
    f0 = 220.0 * 2 ** (torch.linspace(0, 7, frames) / 12)
    bins = torch.arange(N_BINS, dtype=torch.float32).unsqueeze(1) * SAMPLE_RATE / 1024
    x = torch.zeros(N_BINS, frames)
    for h in range(1, 9):
        x += (4.0 / h) * torch.exp(-0.5 * ((bins - h * f0) / 12.0) ** 2)
    x = torch.log1p(x + 0.01 * torch.rand(N_BINS, frames, generator=g))
    c = torch.zeros(N_BINS, frames)
    c[torch.round(f0 * 1024 / SAMPLE_RATE).long(), torch.arange(frames)] = 1.0
    return x.unsqueeze(0), c.unsqueeze(0)


def _inputs(frames: int):  # type: ignore[no-untyped-def]
    def make(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        """``(X, C)`` for the network; ``(X, C, *zero states)`` for its device program."""
        pair = example_pair(frames)
        if isinstance(model, StsDeviceProgram):
            return (*pair, *model.initial_state())
        return pair

    return make


def _register() -> None:
    for suffix, size, frames, what in STS_SIZES:
        systems = ["p-mtl"] if size == "unittest" else list(SYSTEMS)
        for system in systems:
            register(ModelSpec(
                name=SYSTEM_NAMES[system] + suffix, family=FAMILY, factory=build,
                defaults=preset_config(system, size), inputs=_inputs(frames),
                audio=AudioMeta(sample_rate=SAMPLE_RATE, hop_length=HOP, channels=1,
                                chunk_seconds=(frames - 1) * HOP / SAMPLE_RATE),
                description=f"speech-to-singing, {system} (§3.1); {what}",
                component="network", program=device_program,
            ))


_register()
