"""fp32 .pte parity on silent frames (issue 4: a trained ``lhq-svc-demo`` pipeline failed the
1e-4 gate on real clips that start with silence).

A silent log-mel frame has every bin at the clamp floor. ``ChannelNorm`` used to compute
``x - mean(x)``: XNNPACK's mean of 80 equal values is off by a rounding step, which
``rsqrt(var + eps)`` amplified ~316x, and the content encoder's posteriors on silent frames
differed by 7e-3 from eager. Normalising after subtracting the first channel makes a constant
frame exactly 0 in every runtime.
"""

from __future__ import annotations

import math

import torch

from export.pte import lower_to_xnnpack, torch_export
from export.runtime import PteRunner
from models import registry
from models.lhq_svc.decoder import ChannelNorm


def _runner(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> PteRunner:
    with torch.no_grad():
        program = torch_export(module.eval(), inputs, None, "test")
        data, _ = lower_to_xnnpack(program, {"model_name": "test"})
    return PteRunner(data, threads=1)


def test_channel_norm_of_a_constant_frame_is_exactly_zero_in_executorch() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 80, 12) * 3.0 - 6.0
    x[:, :, :6] = math.log(1e-5)  # six silent frames at the log-mel floor
    norm = ChannelNorm(80)
    got = _runner(norm, (x,))(x)[0]
    with torch.no_grad():
        ref = norm(x)
    assert torch.equal(got[:, :, :6], torch.zeros(1, 80, 6))
    assert torch.equal(ref[:, :, :6], torch.zeros(1, 80, 6))
    assert (got - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


def test_content_encoder_pte_matches_eager_on_silence_then_voice() -> None:
    torch.manual_seed(0)
    enc = registry.build("lhq-svc-demo", speakers=["a", "b"]).eval().content
    t = torch.arange(16000) / 16000
    wav = 0.2 * torch.sin(2 * math.pi * 220 * t) * (t > 0.3)  # 0.3 s digital silence, then a tone
    wav = wav[None].float()
    got = _runner(enc, (wav,))(wav)[0]  # (1, P, 126)
    with torch.no_grad():
        ref = enc(wav)
    # frames 0..15 see only silence through the receptive field (the old norm: 1.7e-3 off)
    assert (got - ref)[:, :, :16].abs().max().item() < 1e-6
    assert (got - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
