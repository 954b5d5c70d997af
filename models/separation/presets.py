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


# ---- Chimera network (issue 25; models.separation.chimera) -------------------------------------
#: (suffix, sample rate, chunk seconds, hyper-parameters, what it is for). The paper's size
#: (§3.1-3.2): 16 kHz (the paper downsamples DSD100 to 16 kHz), STFT 512 / hop 128, 150 mel
#: bands + deltas, 4 x 500 BLSTM, D = 20 (24.2 M parameters); its chunk is 100 hops (0.8 s;
#: 103 frames with the edge frames), the paper's training segments of "100 frames of input
#: features" (§3.4); it runs fixed-length segments at test time too (§3.2).
#: -demo: 2 x 128 units, the paper's features, 16 kHz stereo; -unittest: 8 kHz, tiny, a chunk of
#: 0.125 s (19 frames): torch.export unrolls the LSTM over the frames, and the .pte lowering of
#: 35 frames (0.25 s) took 2-4.5 min per program on the loaded 2-core machine.
CHIMERA_SIZES: list[tuple[str, int, float, dict[str, Any], str]] = [
    ("", 16000, 0.8, {"n_fft": 512, "hop": 128, "n_mels": 150, "hidden": 500, "layers": 4,
                      "embedding": 20},
     "paper size (4 x 500 BLSTM, D 20, 150 mels + deltas, STFT 512 / 128), stereo 16 kHz"),
    ("-demo", 16000, 1.0, {"n_fft": 512, "hop": 128, "n_mels": 150, "hidden": 128,
                           "layers": 2, "embedding": 20},
     "demo size (2 x 128), stereo 16 kHz, trains in minutes on a CPU"),
    ("-unittest", 8000, 0.125, {"n_fft": 256, "hop": 64, "n_mels": 24, "hidden": 16,
                               "layers": 2, "embedding": 8},
     "tiny, for tests"),
]
#: frames of one call of the streaming program (ChimeraStream): 8 hops (64 ms at 16 kHz)
CHIMERA_STREAM_FRAMES = 8
#: (name stem, alpha, bidirectional, what): Chimera (the paper's best alpha, 0.1), the plain
#: mask-inference network (alpha 0), the unidirectional (causal, streamable) Chimera
CHIMERA_VARIANTS = [("chimera", 0.1, True, "Chimera (alpha 0.1, BLSTM)"),
                    ("chimera-mi", 0.0, True, "mask-inference network (alpha 0, BLSTM)"),
                    ("chimera-causal", 0.1, False, "causal Chimera (alpha 0.1, LSTM)")]


def chimera_config(suffix: str, alpha: float = 0.1, bidirectional: bool = True
                   ) -> dict[str, Any]:
    """The constructor arguments of a Chimera preset of size `suffix`."""
    for suf, sr, _secs, hyper, _ in CHIMERA_SIZES:
        if suf == suffix:
            return {"sample_rate": sr, "channels": 2, **hyper, "deltas": True, "alpha": alpha,
                    "mi_loss": "mmsa", "bidirectional": bidirectional, "dropout": 0.0}
    raise KeyError(suffix)


def _stream_inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """One chunk of the stand-in mixture and the stream's initial state."""
    n = int(model.chunk_samples)  # type: ignore[arg-type]
    mix = _mixture(n / float(model.sample_rate) + 1.0, int(model.sample_rate),  # type: ignore
                   int(model.channels))[..., :n]  # type: ignore[arg-type]
    return (mix.contiguous(), *model.initial_state())  # type: ignore[operator]


def _register_chimera() -> None:
    from models.separation.chimera import ChimeraSeparator, ChimeraStream

    for stem, alpha, bidi, what in CHIMERA_VARIANTS:
        for suffix, sr, secs, _hyper, size in CHIMERA_SIZES:
            if stem != "chimera" and suffix == "":
                continue  # the paper-size variants: build chimera with overrides
            register(ModelSpec(
                name=stem + suffix, family=FAMILY, factory=ChimeraSeparator,
                defaults=chimera_config(suffix, alpha, bidi), inputs=_inputs(secs),
                audio=AudioMeta(sample_rate=sr, channels=2, chunk_seconds=secs),
                description=f"Chimera network singing voice separation, {what}; {size}",
                component="separator", audio_inputs=_audio_inputs,
            ))
    for suffix, sr, _secs, hyper, size in CHIMERA_SIZES[1:]:
        cfg = {**chimera_config(suffix, 0.1, False), "chunk_frames": CHIMERA_STREAM_FRAMES}
        register(ModelSpec(
            name="chimera-causal-stream" + suffix, family=FAMILY,
            factory=ChimeraStream.from_config, defaults=cfg, inputs=_stream_inputs,
            audio=AudioMeta(sample_rate=sr, hop_length=int(hyper["hop"]), channels=2,
                            chunk_seconds=CHIMERA_STREAM_FRAMES * int(hyper["hop"]) / sr),
            description=f"streaming program of chimera-causal{suffix}: one chunk of "
                        f"{CHIMERA_STREAM_FRAMES} hops + the state in, stems "
                        f"(n_fft - hop samples late) + the state out; {size}",
            component="stream",
        ))


_register_chimera()


# ---- the asteroid Conv-TasNet peer of Vox-TasNet (models.separation.peer) ------------------------
def _register_peer() -> None:
    """``asteroid-convtasnet-demo``: asteroid's Conv-TasNet on each channel with the
    hyper-parameters of ``vox-tasnet-demo`` (N, L, B, H, P, X, R; gLN), trained with the same
    budget and loss (:data:`models.separation.train.PRESET_TRAINING`), for the side-by-side
    table of ``benchmarks/separation.py --others``. Building it needs asteroid (the Makefile
    installs it); no ``-unittest`` size: it is a yardstick, not a model the suite ships."""
    from models.separation.peer import AsteroidConvTasNet

    suffix, sr, secs, hyper, _ = TASNET_SIZES[1]
    register(ModelSpec(
        name="asteroid-convtasnet" + suffix, family=FAMILY, factory=AsteroidConvTasNet,
        defaults={"sample_rate": sr, "channels": 2, **hyper, "norm": "gLN", "causal": False},
        inputs=_inputs(secs), audio=AudioMeta(sample_rate=sr, channels=2, chunk_seconds=secs),
        description="asteroid's Conv-TasNet on each channel (the Vox-TasNet peer), "
                    "vox-tasnet-demo's hyper-parameters",
        component="separator", audio_inputs=_audio_inputs,
    ))


_register_peer()
