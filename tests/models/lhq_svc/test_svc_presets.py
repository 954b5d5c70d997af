"""Registry contract of every LHQ-SVC preset; torch.export of every unittest preset;
checkpoints: bit-identical reload and evolved architectures."""

from __future__ import annotations

import pytest
import torch

from models import registry
from models.checkpoint import load_model, save_checkpoint

SVC = sorted(n for n in registry.names() if registry.get(n).family == "lhq-svc")
UNITTEST = [n for n in SVC if n.endswith("-unittest")]


def test_family_presets_exist():
    for base in ("lhq-svc", "lhq-svc-decoder", "lhq-svc-vocoder", "lhq-svc-content"):
        for suffix in ("", "-demo", "-unittest"):
            assert base + suffix in SVC


@pytest.mark.parametrize("name", UNITTEST)
def test_unittest_preset_is_tiny_runs_and_exports(name):
    spec = registry.get(name)
    model = spec.build().eval()
    assert registry.count_parameters(model) < 1_000_000
    inputs = spec.example_inputs(model)
    with torch.no_grad():
        out = model(*inputs)
        ep = torch.export.export(model, inputs)
        exported = ep.module()(*inputs)
    assert torch.isfinite(out).all()
    assert torch.allclose(exported, out, atol=1e-5)
    if spec.component == "pipeline":
        assert out.shape == inputs[0].shape
    if spec.component == "decoder":
        assert out.shape == inputs[0].shape


@pytest.mark.parametrize("name", ["lhq-svc-demo", "lhq-svc-decoder-demo"])
def test_demo_presets_run(name):
    spec = registry.get(name)
    model = spec.build().eval()
    with torch.no_grad():
        assert torch.isfinite(model(*spec.example_inputs(model))).all()


def test_pipeline_checkpoint_bit_identical_and_evolved(tmp_path, tiny_pipeline):
    m = tiny_pipeline
    for p in m.parameters():  # make every block matter (zero-init out_proj otherwise)
        p.data.add_(0.05 * torch.randn_like(p))
    m.duplicate_block("xattn1")
    m.remove_block("res0")
    assert m.architecture == ["xattn", "xattn", "res"]
    spec = registry.get("lhq-svc-unittest")
    x = spec.example_inputs(m)
    want = m(*x)
    path = save_checkpoint(tmp_path / "ck", m, model_name="lhq-svc-unittest", config=m.config,
                           architecture=m.architecture,
                           history=[{"round": 1, "action": "remove", "block": "res0"}],
                           extra={"speakers": m.speakers})
    loaded, header = load_model(path)
    assert header.architecture == loaded.architecture == ["xattn", "xattn", "res"]
    assert loaded.block_names() == ["xattn0", "xattn1", "res2"]
    assert torch.equal(loaded(*x), want)
    # the eager sampler path is also bit-identical
    a = m.convert(x[0][0], 1, 0.0, steps=3, seed=5)
    b = loaded.convert(x[0][0], 1, 0.0, steps=3, seed=5)
    assert torch.equal(a, b)


def test_component_checkpoint_round_trip(tmp_path):
    spec = registry.get("lhq-svc-decoder-unittest")
    d = spec.build().eval()
    torch.nn.init.normal_(d.out_proj.weight, std=0.1)
    d.duplicate_block("res2")
    path = save_checkpoint(tmp_path / "d.safetensors", d, model_name=spec.name,
                           config=d.config, architecture=d.architecture)
    loaded, _ = load_model(path)
    x = spec.example_inputs(d)
    assert loaded.architecture == ["res", "xattn", "res", "res"]
    assert torch.equal(loaded(*x), d(*x))


def test_checkpoint_without_later_keys_rebuilds_what_it_was_written_with(tmp_path):
    """A checkpoint written before `vocoder_synthesis` / `mel_prior_layers` existed is rebuilt
    with the values their absence stands for, not the preset's current defaults."""
    spec = registry.get("lhq-svc-unittest")
    assert spec.defaults["mel_prior_layers"] > 0 and spec.defaults["vocoder_synthesis"] == "stft"
    old = spec.build(mel_prior_layers=0, vocoder_synthesis="harmonic", vocoder_phase_iters=0)
    cfg = {k: v for k, v in old.config.items()
           if k not in ("mel_prior_layers", "vocoder_synthesis", "vocoder_phase_iters")}
    path = save_checkpoint(tmp_path / "old", old, model_name=spec.name, config=cfg,
                           architecture=old.architecture)
    loaded, _ = load_model(path)
    assert loaded.config["mel_prior_layers"] == 0 and not loaded.decoder.mel_prior
    assert loaded.vocoder.source.synthesis == "harmonic" and loaded.vocoder.source.phase_iters == 0
    x = spec.example_inputs(old)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(*x), old.eval()(*x))


def test_checkpoint_without_prior_kind_rebuilds_the_free_prior_head(tmp_path):
    """A mel-prior checkpoint written before `mel_prior_kind` existed has the per-bin head."""
    spec = registry.get("lhq-svc-unittest")
    assert spec.defaults["mel_prior_kind"] == "source_filter"
    old = spec.build(mel_prior_kind="free")
    cfg = {k: v for k, v in old.config.items() if k != "mel_prior_kind"}
    path = save_checkpoint(tmp_path / "old", old, model_name=spec.name, config=cfg,
                           architecture=old.architecture)
    loaded, _ = load_model(path)
    assert loaded.config["mel_prior_kind"] == "free" and loaded.conditioner.render is None
    assert loaded.conditioner.prior_head.out_channels == 80
    x = spec.example_inputs(old)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(*x), old.eval()(*x))
    # a current checkpoint keeps its own values
    new = spec.build()
    path = save_checkpoint(tmp_path / "new", new, model_name=spec.name, config=new.config,
                           architecture=new.architecture)
    loaded, _ = load_model(path)
    assert loaded.decoder.mel_prior and loaded.vocoder.source.synthesis == "stft"
    assert loaded.conditioner.render is not None
    x = spec.example_inputs(new)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(*x), new.eval()(*x))
