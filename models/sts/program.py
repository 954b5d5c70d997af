"""The speech-to-singing device program: what ``compress export`` ships for an ``sts-*`` model.

:class:`StsDeviceProgram` wraps a trained :class:`~models.sts.net.StsNet` and runs the
conversion on one fixed chunk of frames with the latent GRU states explicit::

    forward(x, c, h1, h2) -> (y, h1_out, h2_out)        # B1 (no E2): (x, c, h1) -> (y, h1_out)

``x`` (speech log-magnitude) and ``c`` (melody image) are ``(1, 513, chunk_frames)``, ``y`` the
singing log-magnitude of the same shape, clamped at 0 (the network's eval mode); ``h1`` /
``h2`` are the states ``(1, 1, gru_hidden)`` of the unidirectional GRUs at the latent of ``E1``
and ``E2``. The app feeds :meth:`~StsDeviceProgram.initial_state` (zeros) to the first chunk
and each call's returned states to the next (:class:`models.sts.infer.StsProgram` does).

**No phoneme decoder.** P-MTL's ``Dp`` only serves the MTL loss (§2.3): its logits are never
used at inference (§2.4 synthesises from ``Ŷ`` alone), yet its GRU runs over all ``T`` frames
(eight times the latent's ``T/8``), so unrolled for export it was two thirds of the graph (489
ATen ops with it, 164 without, at sts-unittest's 16 frames). The program drops it (its weights
stay in ``net``); the other systems have none. Measured ``.pte`` export times (CPU seconds of
``torch.export`` [+ PT2E int8] + XNNPACK lowering, one thread, seeded untrained weights, the
2-core machine loaded; wall time was up to twice as long):

========================  ==============  ==============  ===============  ===============
preset, chunk             fp32 with Dp    fp32 program    int8 with Dp     int8 program
========================  ==============  ==============  ===============  ===============
sts-unittest, 16 frames   489 ops, 21 s   164 ops, 13 s   1375 ops, 110 s  413 ops, 34 s
sts-demo, 128 frames      3184 ops, 95 s  702 ops, 32 s   9460 ops, 446 s  2027 ops, 99 s
========================  ==============  ==============  ===============  ===============

**Carrying the state across chunks** gives the recurrent part (the latent GRUs) the context of
the clip so far, but the rest still sees one chunk: the instance norm before each latent GRU
takes its mean and variance over the chunk's ``T/8`` latent frames, and the centred
convolutions of the encoders and the decoder read zeros beyond the chunk's edges. A chunked
run is therefore an approximation of the whole-clip run, with or without the state. Measured
against the whole-clip output on the seeded ``example_pair`` (:mod:`models.sts.presets`), the
last chunk zero-padded as :class:`~models.sts.infer.StsProgram` pads it, LSD as
:func:`models.sts.metrics.lsd_db` computes it:

* sts-demo trained 100 steps on the synthetic corpus (output max 0.56), 512 frames in chunks
  of 128: LSD 3.39 dB with the states carried, 3.44 dB with every chunk started from zero
  states; max-abs 0.37 both, mean-abs 0.0100 / 0.0102. The error is spread over the whole
  chunk (mean-abs 0.0094 inside, 0.013-0.015 in the 8 frames at either edge), so the
  per-chunk IN statistics dominate it, not the convolutions' edges nor the GRU state (the two
  chunked runs differ by 0.00075 on average).
* sts-unittest, seeded untrained weights (output max 0.11), 128 frames in chunks of 16: LSD
  0.054 dB carried, 0.055 dB from zero states; max-abs 0.015 both.

**int8** (:attr:`StsDeviceProgram.export_keep_fp32`): the encoders' convolutions and their
latent instance norms stay fp32; the GRUs, the linear maps after them and the decoder are
int8. The IN divides each latent feature by its standard deviation over the chunk's few
latent frames, so a feature that varies little is amplified, and with it the per-tensor int8
noise of the map it comes from. Measured (the exported program against eager fp32, SQNR of
``y``, ``h1_out``, ``h2_out``): the trained sts-demo above, one chunk of 128 frames: 22.1 /
4.2 / 22.5 dB all int8, 35.9 / 27.2 / 28.8 dB with the encoders fp32; seeded sts-unittest: 49.0
/ 38.9 / 15.6 dB and 48.9 / 38.5 / 41.8 dB. The encoders' convolutions are 3 % of the
parameters (the GRUs' input weights are most of them); on the trained sts-demo the program
ran a 128-frame chunk in 21.1 ms fp32, 9.0 ms int8 with them fp32 and 7.1 ms all int8 (one
thread, loaded machine; 4.79, 1.51 and 1.40 MB). Keeping only the last encoder block
and the IN fp32 does not lower: the int8 block before it then has an fp32 consumer, and the
export's float bypass leaves that convolution's output unquantized, which XNNPACK refuses.

**Griffin-Lim stays outside the graph** (so do the STFT front end and the §2.1 pre-processing):
it is a loop of STFT / iSTFT pairs whose iteration count is the app's quality-for-latency knob
(``compress sing --gl-iters``), which a program would freeze; each iteration works on complex
spectra (phase normalised bin by bin, momentum, overlap-add), which XNNPACK does not delegate;
and it has no weights: the network is the part worth compressing and quantizing, Griffin-Lim
runs as well in the app's own DSP code.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from models.sts import StsError
from models.sts.net import StsNet


class StsDeviceProgram(nn.Module):
    """A trained :class:`StsNet` as a device program (module docstring): ``forward(x, c,
    *state) -> (y, *state_out)`` with ``state`` = ``h1`` [, ``h2``], each ``(1, 1,
    gru_hidden)``; ``y`` equals ``net(x, c)``'s ``Ŷ`` for zero states. The phoneme decoder is
    not run (its weights stay in ``net``). Give chunks of a multiple of 8 frames to carry the
    states (the returned state follows the latent's last frame, which covers the padding
    otherwise)."""

    def __init__(self, net: StsNet):
        super().__init__()
        if not isinstance(net, StsNet):
            raise StsError(f"StsDeviceProgram wraps an StsNet, got {type(net).__name__}")
        self.net = net.eval()

    @property
    def hidden(self) -> int:
        """The GRUs' width, read from the network (a narrowing changes it)."""
        return int(self.net.cfg.gru_hidden)

    @property
    def config(self) -> dict[str, Any]:
        return self.net.config

    @property
    def export_keep_fp32(self) -> tuple[str, ...]:
        """int8 exports leave the encoders' convolutions and latent instance norms in fp32
        (read by ``export.api.export_model`` and the recipes' ``keep_fp32``; module
        docstring, "int8")."""
        return tuple(f"net.{e}.{part}" for e in ("encoder1", "encoder2")
                     if getattr(self.net, e) is not None for part in ("blocks", "norm"))

    def state_names(self) -> list[str]:
        """``["h1", "h2"]``, or ``["h1"]`` without ``E2`` (B1)."""
        return ["h1", "h2"] if self.net.encoder2 is not None else ["h1"]

    def state_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Name and shape of every state tensor, in the order of ``forward``'s arguments."""
        return [(n, (1, 1, self.hidden)) for n in self.state_names()]

    def initial_state(self) -> tuple[torch.Tensor, ...]:
        """The state before the first chunk: zeros."""
        return tuple(torch.zeros(shape) for _, shape in self.state_shapes())

    def export_metadata(self) -> dict[str, Any]:
        """What an app needs besides the chunk length to feed the states (JSON strings)."""
        return {"device_program": "StsDeviceProgram",
                "state_names": json.dumps(self.state_names()),
                "state_shapes": json.dumps([list(s) for _, s in self.state_shapes()]),
                "initial_state": "zeros",
                "outputs": json.dumps(["y", *(f"{n}_out" for n in self.state_names())])}

    def forward(self, x: torch.Tensor, c: torch.Tensor, *state: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        names = self.state_names()
        if len(state) != len(names):
            raise StsError(f"StsDeviceProgram takes x, c and {len(names)} state tensor(s) "
                           f"({', '.join(names)}), got {len(state)}")
        for (name, shape), h in zip(self.state_shapes(), state, strict=True):
            if tuple(h.shape) != shape or x.shape[0] != 1:
                raise StsError(f"{name} must be {shape} for a batch of 1, got {tuple(h.shape)} "
                               f"with x {tuple(x.shape)}")
        y, h1, h2 = self.net.infer(x, c, *state)
        return (y, h1) if h2 is None else (y, h1, h2)


def device_program(model: nn.Module) -> StsDeviceProgram:
    """The registry's program hook (:attr:`models.registry.ModelSpec.program`): an
    :class:`StsNet` wrapped, a program returned as it is."""
    if isinstance(model, StsDeviceProgram):
        return model
    if not isinstance(model, StsNet):
        raise StsError(f"no speech-to-singing device program for a {type(model).__name__}")
    return StsDeviceProgram(model)


__all__ = ["StsDeviceProgram", "device_program"]
