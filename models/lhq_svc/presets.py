"""Registry presets of the LHQ-SVC family (pipelines and components).

* ``lhq-svc`` — paper-sized teacher (Table I: LHQ-SVC 67.89 MB). Its decoder has
  ~17 M parameters (~68 MB fp32); see ``compress models --family lhq-svc``.
* ``lhq-svc-demo`` — trains on a 2-core CPU in about 15 minutes on the synthetic corpus.
* ``lhq-svc-unittest`` — tiny, for tests and export checks.
* components: ``lhq-svc-decoder[-demo|-unittest]`` (``forward(x_t, t, cond)``),
  ``lhq-svc-vocoder[-demo|-unittest]`` (``forward(mel)``),
  ``lhq-svc-content[-demo|-unittest]`` (built-in PPG encoder, ``forward(wav)``).

Example inputs are seeded; audio presets use a short fixed chunk (the pipeline's
``noise_frames`` bounds the on-device input length).
"""

from __future__ import annotations

from typing import Any

import torch

from models.lhq_svc.content import PPGEncoder
from models.lhq_svc.decoder import EvolvableDecoder
from models.lhq_svc.pipeline import SVCPipeline
from models.lhq_svc.vocoder import HNVocoder, MelGANGenerator
from models.registry import AudioMeta, ModelSpec, register

FAMILY = "lhq-svc"
SR = 16000
HOP = 128

PIPELINES: dict[str, dict[str, Any]] = {
    "lhq-svc": {
        "n_speakers": 4, "n_phonemes": 40, "content_hidden": 256, "content_layers": 6,
        "architecture": ["res", "xattn", "res", "xattn", "res", "xattn", "res", "xattn"],
        "channels": 320, "heads": 8, "temb_dim": 256, "res_dilations": [1, 2, 4],
        "vocoder_kind": "melgan", "vocoder_channels": 512, "device_steps": 4, "noise_frames": 1024,
        "chunk_seconds": 8.0,
    },
    "lhq-svc-demo": {
        "n_speakers": 4, "n_phonemes": 40, "content_hidden": 96, "content_layers": 4,
        "architecture": ["res", "xattn", "res", "xattn"],
        "channels": 96, "heads": 4, "temb_dim": 64, "res_dilations": [1, 2, 4],
        "vocoder_kind": "hn", "vocoder_channels": 96, "device_steps": 4,
        "noise_frames": 512, "chunk_seconds": 4.0,
        # one STFT shaped by the envelopes, excitation phase + 2 Griffin-Lim iterations:
        # copy-synthesis STOI 0.853 -> 0.916 over the sum of sinusoids (svc_quality.py)
        "vocoder_synthesis": "stft", "vocoder_phase_iters": 2,
        # x-prediction with truncated-SNR weights degrades gracefully when the decoder is
        # short-trained (multi-step DDIM with v-prediction drifted after 2000 CPU steps); the
        # cap at 5 keeps small-τ batches from dominating (see diffusion.py)
        "prediction": "x", "weighting": "clip(snr,1,5)",
        # the prior renders a harmonic and a noise envelope through the F0's comb (held-out
        # mu STOI of a standalone prior after 2000 steps: 0.736 free head -> 0.805; -> 0.830
        # with the band-envelope loss, TrainConfig.prior_envelope_weight)
        # temperature 0: DDIM from the prior mean (the residual's ODE from its mode). On 12
        # held-out clips (benchmarks/svc_quality.py) T = 0.5 -> 0: A -> A STOI 0.773 -> 0.802,
        # A -> B 0.779 -> 0.812, PESQ 2.78 -> 2.86; similarity 0.901 -> 0.900 and F0 RMSE
        # 9.4 -> 9.7 cents level within noise. Sampled detail is not the source's, so it
        # costs the re-synthesis metrics
        "mel_prior_layers": 4, "mel_prior_kind": "source_filter", "temperature": 0.0,
    },
    "lhq-svc-unittest": {
        "n_speakers": 2, "n_phonemes": 8, "content_hidden": 16, "content_layers": 2,
        "architecture": ["res", "xattn", "res"], "cond_dim": 256,
        "channels": 32, "heads": 2, "temb_dim": 32, "res_dilations": [1, 2],
        "vocoder_kind": "hn", "vocoder_channels": 16, "device_steps": 2, "noise_frames": 64,
        "chunk_seconds": 0.5, "vocoder_synthesis": "stft", "vocoder_phase_iters": 2,
        "mel_prior_layers": 1, "mel_prior_kernel": 1, "mel_prior_kind": "source_filter",
        # its widths are 16-32 channels: let the search narrow them to 8
        "narrow_min_width": 8,
    },
}

_PIPELINE_BASE: dict[str, Any] = {
    "sample_rate": SR, "hop_length": HOP, "n_mels": 80, "content_kind": "builtin",
    "content_path": None, "mel_prior_neighbours": 2, "content_hidden": 128,
    "content_layers": 4, "hubert": None,
    "cond_dim": 256, "temb_dim": 128, "heads": 4, "skip_prob": 0.0, "mel_prior_layers": 0,
    "mel_prior_kernel": 3, "mel_prior_kind": "free", "temperature": 1.0, "prediction": "v",
    "weighting": "snr+1", "vocoder_ratios": [8, 4, 4], "vocoder_synthesis": "harmonic",
    "vocoder_phase_iters": 0, "mel_mean": -6.0, "mel_std": 3.0,
    "noise_seed": 0, "speakers": None,
    # per-component architecture (SVCPipeline.units / apply_action edit them): None = the
    # built-in layout (content dilation 2 ** (i % 3) per layer; the vocoder's residual stack
    # (1, 3, 9), one per MelGAN stage)
    "content_dilations": None, "cond_context_layers": 2, "vocoder_dilations": None,
    "vocoder_harmonics": 128, "f0_stride": 1,
    # smallest width narrowing may leave (a search constraint, not architecture)
    "narrow_min_width": 16,
}

# what a checkpoint written before these config keys existed was built with: the base values
LEGACY_PIPELINE = {k: _PIPELINE_BASE[k] for k in (
    "vocoder_synthesis", "vocoder_phase_iters", "mel_prior_layers", "mel_prior_kernel",
    "mel_prior_kind", "temperature", "content_dilations", "cond_context_layers",
    "vocoder_dilations", "vocoder_harmonics", "mel_prior_neighbours", "f0_stride")}
LEGACY_DECODER = {"mel_prior": False, "prediction": "x"}
LEGACY_HN = {"synthesis": LEGACY_PIPELINE["vocoder_synthesis"],
             "phase_iters": LEGACY_PIPELINE["vocoder_phase_iters"]}

EXAMPLE_SECONDS = {"lhq-svc": 1.0, "lhq-svc-demo": 1.0, "lhq-svc-unittest": 0.25}


def _seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _audio(seconds: float) -> torch.Tensor:
    """A seeded vibrato tone plus a little noise, ``(1, T)``."""
    n = int(seconds * SR)
    t = torch.arange(n, dtype=torch.float32) / SR
    f = 220.0 * torch.pow(2.0, 0.05 * torch.sin(2 * torch.pi * 5.0 * t))
    phase = 2 * torch.pi * torch.cumsum(f, 0) / SR
    wav = 0.3 * torch.sin(phase) + 0.1 * torch.sin(2 * phase) + 0.01 * _seeded(n)
    return wav.unsqueeze(0)


def _pipeline_inputs(seconds: float):  # type: ignore[no-untyped-def]
    def inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        return (_audio(seconds), torch.tensor([1], dtype=torch.long), torch.tensor([2.0]))

    return inputs


def _frames(seconds: float) -> int:
    return int(seconds * SR) // HOP + 1


def _decoder_inputs(seconds: float):  # type: ignore[no-untyped-def]
    def inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        n = _frames(seconds)
        return (_seeded(1, 80, n, seed=1), torch.tensor([0.5]),
                _seeded(1, model.cond_channels, n, seed=2))

    return inputs


def _vocoder_inputs(seconds: float):  # type: ignore[no-untyped-def]
    def inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        return (-5.0 + 2.0 * _seeded(1, 80, _frames(seconds), seed=3),)

    return inputs


def _hn_inputs(seconds: float):  # type: ignore[no-untyped-def]
    def inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        n = _frames(seconds)
        f0 = 220.0 * torch.ones(1, n)
        f0[:, : n // 4] = 0.0  # an unvoiced stretch
        return (-5.0 + 2.0 * _seeded(1, 80, n, seed=3), f0)

    return inputs


def _content_inputs(seconds: float):  # type: ignore[no-untyped-def]
    def inputs(model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        return (_audio(seconds),)

    return inputs


def _pipeline_config(name: str) -> dict[str, Any]:
    cfg = dict(_PIPELINE_BASE)
    cfg.update(PIPELINES[name])
    return cfg


def _decoder_factory(**cfg: Any) -> EvolvableDecoder:
    return EvolvableDecoder(**cfg)


def _register_all() -> None:
    descr = {
        "lhq-svc": "LHQ-SVC teacher, paper-sized decoder (Table I: 67.89 MB)",
        "lhq-svc-demo": "LHQ-SVC sized to train on a 2-core CPU in ~15 min",
        "lhq-svc-unittest": "tiny LHQ-SVC for tests",
    }
    for name in PIPELINES:
        cfg = _pipeline_config(name)
        secs = EXAMPLE_SECONDS[name]
        suffix = name[len("lhq-svc"):]
        audio = AudioMeta(sample_rate=SR, hop_length=HOP, channels=1,
                          chunk_seconds=secs, n_mels=80)
        register(ModelSpec(
            name=name, family=FAMILY, factory=SVCPipeline, defaults=cfg,
            inputs=_pipeline_inputs(secs), audio=audio, description=descr[name],
            component="pipeline", tags=("evolvable", "diffusion"), legacy=LEGACY_PIPELINE,
        ))
        dec = {k: cfg[k] for k in ("architecture", "channels", "cond_dim", "temb_dim", "heads",
                                   "res_dilations", "skip_prob")}
        dec["n_mels"] = 80
        dec["mel_prior"] = cfg["mel_prior_layers"] > 0
        dec["prediction"] = cfg["prediction"]
        register(ModelSpec(
            name=f"lhq-svc-decoder{suffix}", family=FAMILY, factory=_decoder_factory,
            defaults=dec, inputs=_decoder_inputs(secs), audio=audio,
            description=f"diffusion decoder of {name} (x_t, t, cond) -> prediction",
            component="decoder", tags=("evolvable", "diffusion"), legacy=LEGACY_DECODER,
        ))
        voc = {"n_mels": 80, "channels": cfg["vocoder_channels"],
               "ratios": cfg["vocoder_ratios"], "mel_mean": cfg["mel_mean"],
               "mel_std": cfg["mel_std"]}
        register(ModelSpec(
            name=f"lhq-svc-vocoder{suffix}", family=FAMILY, factory=MelGANGenerator,
            defaults=voc, inputs=_vocoder_inputs(secs), audio=audio,
            description=f"MelGAN vocoder of {name} (mel -> audio)", component="vocoder",
        ))
        hn = {"n_mels": 80, "channels": cfg["vocoder_channels"] if cfg["vocoder_kind"] == "hn"
              else 128, "sample_rate": SR, "hop_length": HOP, "mel_mean": cfg["mel_mean"],
              "mel_std": cfg["mel_std"], "synthesis": cfg["vocoder_synthesis"],
              "phase_iters": cfg["vocoder_phase_iters"]}
        register(ModelSpec(
            name=f"lhq-svc-vocoder-hn{suffix}", family=FAMILY, factory=HNVocoder,
            defaults=hn, inputs=_hn_inputs(secs), audio=audio,
            description=f"harmonic-plus-noise (NSF) vocoder of {name} (mel, f0 -> audio)",
            component="vocoder", legacy=LEGACY_HN,
        ))
        con = {"n_phonemes": cfg["n_phonemes"], "hidden": cfg["content_hidden"],
               "layers": cfg["content_layers"], "sample_rate": SR, "hop_length": HOP,
               "n_mels": 80, "dilations": cfg["content_dilations"]}
        register(ModelSpec(
            name=f"lhq-svc-content{suffix}", family=FAMILY, factory=PPGEncoder,
            defaults=con, inputs=_content_inputs(secs), audio=audio,
            description=f"built-in PPG content encoder of {name} (audio -> posteriors)",
            component="content",
        ))


_register_all()
