"""SVCPipeline: eager conversion, chunked long conversion, on-device forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import registry


@pytest.fixture
def model(tiny_pipeline):
    for p in tiny_pipeline.decoder.out_proj.parameters():  # non-trivial decoder output
        p.data.normal_(0, 0.05)
    return tiny_pipeline


def _clip(model, seconds):
    x = registry.get("lhq-svc-unittest").example_inputs(model)[0][0].numpy()
    reps = int(np.ceil(seconds * 16000 / x.shape[0]))
    return np.concatenate([x] * reps)[: int(seconds * 16000)]


def test_convert_shapes_and_determinism(model):
    x = torch.from_numpy(_clip(model, 0.3))
    a = model.convert(x, 1, 2.0, steps=3, seed=1)
    assert a.shape == x.shape
    assert torch.equal(a, model.convert(x, 1, 2.0, steps=3, seed=1))
    assert not torch.equal(a, model.convert(x, 1, 2.0, steps=3, seed=2))
    assert not torch.equal(a, model.convert(x, 0, 2.0, steps=3, seed=1))
    anc = model.convert(x, 1, 0.0, steps=3, sampler="ancestral", kappa=0.5)
    assert anc.shape == x.shape and torch.isfinite(anc).all()


def test_convert_long_equals_convert_when_short(model):
    x = _clip(model, 0.4)  # shorter than the 0.5 s chunk
    a = model.convert_long(x, 1, 0.0, steps=2, seed=3)
    b = model.convert(torch.from_numpy(x), 1, 0.0, steps=2, seed=3).numpy()
    assert np.array_equal(a, b)


def test_chunked_long_conversion_matches_unchunked(model):
    x = _clip(model, 2.0)
    full = model.convert(torch.from_numpy(x), 1, 0.0, steps=3, seed=0).numpy()
    chunked = model.convert_long(x, 1, 0.0, steps=3, seed=0, chunk_seconds=1.0,
                                 overlap_seconds=0.25)
    assert chunked.shape == full.shape
    rel = np.linalg.norm(chunked - full) / np.linalg.norm(full)
    assert rel < 2e-2, rel
    calls = []
    model.convert_long(x, 1, 0.0, steps=1, chunk_seconds=0.5, overlap_seconds=0.125,
                       progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == len(calls) >= 4


def test_forward_is_the_fixed_step_ddim_path(model):
    spec = registry.get("lhq-svc-unittest")
    audio, spk, shift = spec.example_inputs(model)
    out = model(audio, spk, shift)
    n = audio.shape[-1] // 128 + 1
    eager = model.convert(audio[0], int(spk), float(shift), steps=model.device_steps,
                          noise=model.noise[:, :, :n])
    assert torch.allclose(out[0], eager, atol=1e-6)


def test_speaker_lookup_and_bad_config(model):
    assert model.speaker_index("spk1") == 1
    with pytest.raises(KeyError, match="unknown speaker 'zz'; valid: spk0, spk1"):
        model.speaker_index("zz")
    with pytest.raises(ValueError, match="multiply to"):
        registry.build("lhq-svc-unittest", vocoder_ratios=[8, 8])
    with pytest.raises(ValueError, match="needs content_path"):
        registry.build("lhq-svc-unittest", content_kind="hubert")
