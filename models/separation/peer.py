"""asteroid's Conv-TasNet as a peer of Vox-TasNet: the mono model on each channel on its own.

Conv-TasNet (Luo & Mesgarani, "Conv-TasNet: surpassing ideal time-frequency magnitude masking
for speech separation", IEEE/ACM TASLP 27(8), 2019) as implemented by asteroid (Pariente et al.,
"Asteroid: the PyTorch-based audio source separation toolkit for researchers", Interspeech 2020;
PyPI ``asteroid`` 0.7.0 with ``asteroid-filterbanks`` 0.4.0). :class:`AsteroidConvTasNet` wraps
it behind :class:`models.separation.tasnet.VoxTasNet`'s interface so the two can be trained,
scored and tabulated side by side: one mask (``n_src=1``) for the **accompaniment**, the vocals
as the residual ``mix − accompaniment``, Vox-TasNet's loss (the negative SDR of the
accompaniment, :func:`~models.separation.tasnet.stem_loss`). The difference under test is the
channels: Vox-TasNet's TCN sees the stacked ``C·N`` embeddings of all channels at once, while
here the mono model runs on each channel folded into the batch, so left and right are separated
independently (gLN normalises each example, so nothing crosses between them); the "separates
each channel independently" baseline.

Installation: asteroid 0.7.0 declares torchaudio, pytorch-lightning, torchmetrics and more as
requirements, but ``asteroid.models`` imports none of them: only numpy, scipy, soundfile,
requests and huggingface-hub (the base dependencies bring them in) besides torch and asteroid-
filterbanks. torchaudio has no build for torch 2.13, so the Makefile installs the two packages
without their dependencies::

    pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0

No pretrained weights are used: the model starts from asteroid's random initialisation.

Mapping of our names onto asteroid's ``ConvTasNet`` arguments: N → ``n_filters``, L →
``kernel_size`` (stride L/2), B → ``bn_chan``, H → ``hid_chan``, P → ``conv_kernel_size``,
X → ``n_blocks``, R → ``n_repeats``; the skip channels Sc are set to B as in our TCN (asteroid's
own default is a fixed 128, the same only at B = 128). ``norm`` takes asteroid's names:
``"gLN"`` (global), ``"cgLN"`` (cumulative, what our :class:`~models.separation.tasnet.
CumulativeLayerNorm` calls cLN) and ``"cLN"`` (asteroid's *channel-wise* norm of each frame on
its own). What differs from Vox-TasNet at equal hyper-parameters:

* the TCN's input is N channels instead of C·N, and it emits N mask channels instead of C·N:
  :func:`asteroid_parameters` is our :func:`~models.separation.tasnet.tcn_parameters` of N plus
  the 2·N·L filterbank weights, exactly (asteroid's blocks, norms, PReLUs and bias-free free
  filterbank have the same parameters as ours), which is ``N·(B + Sc + 3)`` less than
  Vox-TasNet for stereo: the input norm's 2·N, the bottleneck's N·B and the mask conv's
  N·Sc + N that Vox-TasNet spends on the second channel;
* asteroid's encoder output is linear (its ``encoder_activation`` default); ours applies a
  ReLU, as the paper does. No parameters are involved;
* asteroid's encoder drops a final partial frame and zero-fills the tail it cannot rebuild;
  the wrapper pads the input to a whole number of frames first, as Vox-TasNet does, and crops.
"""

from __future__ import annotations

import torch
from torch import nn

from models.separation import SeparationError
from models.separation.tasnet import fold_channels, stem_loss, tcn_parameters

INSTALL = "pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0"
NORMS = ("gLN", "cLN", "cgLN")
CAUSAL_NORMS = ("cLN", "cgLN")


def asteroid_parameters(n: int, l: int, b: int, h: int, p: int, x: int, r: int) -> int:
    """Parameters of :class:`AsteroidConvTasNet` from its hyper-parameters (any ``channels``:
    the one mono model serves them all): the mono TCN with Sc = B plus encoder and decoder."""
    return tcn_parameters(n, b, h, p, x, r) + 2 * n * l


class AsteroidConvTasNet(nn.Module):
    """asteroid's mono Conv-TasNet on each channel: ``(batch, C, T)`` mixture →
    ``(batch, 2, C, T)`` stems ``[vocals, accompaniment]`` (module docstring)."""

    export_stoi = False  # stems are gated on SQNR, as every separator's

    def __init__(self, sample_rate: int = 44100, channels: int = 2, n: int = 512, l: int = 16,
                 b: int = 128, h: int = 512, p: int = 3, x: int = 8, r: int = 3,
                 norm: str = "gLN", causal: bool = False):
        super().__init__()
        if l < 2 or l % 2:
            raise SeparationError(f"L={l}: the encoder window must be even (stride L/2)")
        if channels < 1:
            raise SeparationError(f"channels={channels}; expected >= 1")
        if min(n, b, h, p, x, r) < 1:
            raise SeparationError(f"sizes must be >= 1: N={n} B={b} H={h} P={p} X={x} R={r}")
        if not causal and p % 2 == 0:
            raise SeparationError(f"P={p}: the offline model needs an odd kernel (asteroid pads "
                                  "(P - 1)·d / 2 frames on each side)")
        if norm not in NORMS:
            raise SeparationError(f"norm={norm!r}; valid (asteroid's names): {', '.join(NORMS)}")
        if causal and norm not in CAUSAL_NORMS:
            raise SeparationError(f"norm={norm!r} sees the future; a causal model takes one of "
                                  f"{', '.join(CAUSAL_NORMS)}")
        try:
            from asteroid.models.conv_tasnet import ConvTasNet
        except ImportError as e:
            raise SeparationError(f"asteroid is not installed ({e}); the peer model needs "
                                  f"`{INSTALL}` (torchaudio, which asteroid declares, has no "
                                  "build for torch 2.13; `make setup` does this)") from e
        self.sample_rate, self.channels = int(sample_rate), int(channels)
        self.n, self.l, self.stride = n, l, l // 2
        self.hyper = {"N": n, "L": l, "B": b, "H": h, "P": p, "X": x, "R": r}
        self.norm, self.causal = norm, bool(causal)
        self.model = ConvTasNet(
            n_src=1, n_filters=n, kernel_size=l, stride=self.stride, bn_chan=b, hid_chan=h,
            skip_chan=b, conv_kernel_size=p, n_blocks=x, n_repeats=r, norm_type=norm,
            mask_act="sigmoid", causal=self.causal, fb_name="free",
            sample_rate=float(sample_rate))

    @property
    def config(self) -> dict[str, object]:
        """Constructor arguments (JSON-serialisable)."""
        return {"sample_rate": self.sample_rate, "channels": self.channels,
                **{k.lower(): v for k, v in self.hyper.items()}, "norm": self.norm,
                "causal": self.causal}

    @property
    def min_samples(self) -> int:
        return self.l

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        mono, _ = fold_channels(mix, self.channels, self.l, self.stride)  # channels → batch
        bsz, c, t = mix.shape
        acc = self.model(mono).reshape(bsz, c, -1)[..., :t]  # (batch, C, T)
        return torch.stack([mix - acc, acc], dim=1)  # (batch, 2, C, T)

    def loss(self, mix: torch.Tensor, vocals: torch.Tensor, accompaniment: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Vox-TasNet's loss (:func:`~models.separation.tasnet.stem_loss`), so that the two
        models train on the same objective."""
        return stem_loss(self(mix), vocals, accompaniment)
