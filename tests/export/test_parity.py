"""Parity figures and the gate (no export involved)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export.errors import ExportError, ParityError
from export.parity import (
    GateConfig,
    evaluate_gate,
    flatten_outputs,
    max_abs_error,
    sqnr_db,
    stoi,
)


def test_max_abs_and_sqnr_known_values():
    ref = torch.ones(1000)
    test = ref + 0.1  # noise power 0.01 per sample, signal 1 -> 20 dB
    assert max_abs_error(ref, test) == pytest.approx(0.1, rel=1e-6)
    assert sqnr_db(ref, test) == pytest.approx(20.0, abs=1e-4)
    assert sqnr_db(ref, ref.clone()) == math.inf


def test_shape_mismatch_is_a_parity_error():
    with pytest.raises(ParityError, match="shape"):
        max_abs_error(torch.zeros(2, 3), torch.zeros(3, 2))


def test_flatten_outputs_nested():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    flat = flatten_outputs((a, [b, {"x": c}]))
    assert [t.numel() for t in flat] == [1, 2, 3]
    with pytest.raises(ExportError, match="not supported"):
        flatten_outputs("text")


def test_fp32_gate_passes_and_fails_with_amount():
    ref = [[torch.linspace(-2.0, 2.0, 100)]]  # scale 2 -> tolerance 2e-4
    ok = evaluate_gate(
        ref, [[ref[0][0] + 1e-4]], precision="fp32", backend="xnnpack", gate=GateConfig()
    )
    assert ok.passed and ok.max_abs == pytest.approx(1e-4, rel=1e-3)
    bad = evaluate_gate(
        ref, [[ref[0][0] + 1e-3]], precision="fp32", backend="xnnpack", gate=GateConfig()
    )
    assert not bad.passed
    with pytest.raises(ParityError, match=r"max-abs error 0\.001 > allowed 0\.0002.*5\.0× over"):
        bad.raise_if_failed("m.pte")


def test_int8_gate_uses_sqnr_floor():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(4000, generator=g)
    noisy = ref + 0.05 * torch.randn(4000, generator=g)  # ~26 dB
    rep = evaluate_gate(
        [[ref]],
        [[noisy]],
        precision="int8",
        backend="xnnpack",
        gate=GateConfig(int8_min_sqnr_db=20.0),
    )
    assert rep.passed and 25.0 < rep.sqnr_db < 27.0
    rep = evaluate_gate(
        [[ref]],
        [[noisy]],
        precision="int8",
        backend="xnnpack",
        gate=GateConfig(int8_min_sqnr_db=30.0),
    )
    assert not rep.passed
    assert "short by" in rep.failures[0]


def test_stoi_identical_and_degraded():
    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    speechlike = np.sin(2 * np.pi * 200 * t) * (
        1 + np.sin(2 * np.pi * 3 * t)
    ) + 0.1 * rng.standard_normal(t.size)
    assert stoi(speechlike, speechlike, sr) > 0.999
    degraded = speechlike + 2.0 * rng.standard_normal(t.size)
    assert stoi(speechlike, degraded, sr) < 0.9


def test_stoi_gate_on_audio_output_and_short_output_not_measured():
    sr = 16000
    rng = np.random.default_rng(1)
    t = torch.arange(sr) / sr
    wav = (torch.sin(2 * math.pi * 300 * t) * (1 + torch.sin(2 * math.pi * 4 * t))).unsqueeze(0)
    noisy = wav + torch.from_numpy(1.5 * rng.standard_normal(sr)).float()
    rep = evaluate_gate(
        [[wav]],
        [[noisy]],
        precision="int8",
        backend="onnxruntime",
        gate=GateConfig(int8_min_sqnr_db=-100.0),
        audio_sample_rate=sr,
    )
    assert rep.stoi is not None and rep.stoi < 0.95
    assert any("STOI" in f for f in rep.failures)
    short = wav[:, :1000]
    rep = evaluate_gate(
        [[short]],
        [[short]],
        precision="fp32",
        backend="xnnpack",
        gate=GateConfig(),
        audio_sample_rate=sr,
    )
    assert rep.passed and rep.stoi is None
    assert "not measured" in rep.outputs[0].stoi_note


def test_gate_config_validates():
    with pytest.raises(ExportError, match="fp32_rel_tol"):
        GateConfig(fp32_rel_tol=0.0)
    with pytest.raises(ExportError, match="min_stoi"):
        GateConfig(min_stoi=1.5)


def test_output_count_mismatch():
    with pytest.raises(ParityError, match="returned 2 outputs"):
        evaluate_gate(
            [[torch.zeros(2)]],
            [[torch.zeros(2), torch.zeros(2)]],
            precision="fp32",
            backend="xnnpack",
            gate=GateConfig(),
        )
