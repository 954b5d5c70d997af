"""Architecture units of the whole LHQ-SVC device path: listing, remove / duplicate / narrow,
config and checkpoint round trips, Griffin-Lim iteration modules, export after actions."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from models import registry
from models.checkpoint import load_model, save_checkpoint
from models.lhq_svc.decoder import ChannelNorm
from models.lhq_svc.pipeline import SVCPipeline
from models.lhq_svc.vocoder import HNVocoder
from models.units import (
    ACTIONS,
    ChannelGroup,
    Slot,
    Unit,
    narrowed_width,
    select_channels,
    slice_state,
)

SPEC = registry.get("lhq-svc-unittest")
KINDS = {"content_conv", "cond_context", "prior_conv", "res", "xattn", "voc_layer", "gl_iter",
         "width", "harmonics", "lobes", "rate"}
COMPONENTS = ["f0", "content", "conditioner", "decoder", "vocoder"]
NEW_KEYS = ("content_dilations", "cond_context_layers", "vocoder_dilations", "vocoder_harmonics",
            "narrow_min_width", "f0_stride")
TINY_HUBERT = dict(conv_dims=[16] * 7, dim=32, ffn=64, heads=2, layers=3, pos_kernel=8,
                   pos_groups=4, output_layer=3)


def _model(name: str = "lhq-svc-unittest", **overrides) -> SVCPipeline:
    """A seeded pipeline whose every weight matters (zero-initialised heads perturbed)."""
    torch.manual_seed(0)
    m = registry.get(name).build(**overrides).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _hn_inputs(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel and an F0 >= 100 Hz with an unvoiced stretch (harmonics above 80 never sound)."""
    g = torch.Generator().manual_seed(3)
    mel = -5.0 + 1.5 * torch.randn(1, 80, n, generator=g)
    f0 = 140.0 + 40.0 * torch.rand(1, n, generator=g)
    f0[:, : n // 4] = 0.0
    return mel, f0


# ---- units() --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, counts, widths", [
    ("lhq-svc-unittest",
     {"content_conv": 2, "cond_context": 2, "prior_conv": 1, "res": 2, "xattn": 1,
      "voc_layer": 3, "gl_iter": 2, "width": 4, "harmonics": 1, "lobes": 1, "rate": 1},
     {"f0.rate": 2, "content.width": 16, "decoder.width": 32, "vocoder.width": 16,
      "vocoder.harmonics": 128, "conditioner.lobes": 5, "conditioner.width": 256}),
    ("lhq-svc-demo",
     {"content_conv": 4, "cond_context": 2, "prior_conv": 4, "res": 2, "xattn": 2,
      "voc_layer": 3, "gl_iter": 2, "width": 4, "harmonics": 1, "lobes": 1, "rate": 1},
     {"f0.rate": 2, "content.width": 96, "decoder.width": 96, "vocoder.width": 96,
      "vocoder.harmonics": 128, "conditioner.lobes": 5, "conditioner.width": 256}),
])
def test_units_are_unique_typed_ordered_and_resolvable(name, counts, widths):
    m = registry.build(name)
    units = m.units()
    names = [u.name for u in units]
    assert len(set(names)) == len(names)
    assert {u.kind for u in units} == KINDS
    assert {k: sum(u.kind == k for u in units) for k in KINDS} == counts
    order = [COMPONENTS.index(u.component) for u in units]
    assert order == sorted(order)  # device-program order
    for u in units:
        assert isinstance(u, Unit) and set(u.actions) <= set(ACTIONS) and u.actions
        if u.kind in ("width", "harmonics", "lobes", "rate"):
            assert u.module is None and u.actions == ("narrow",) and u.position == 0
            assert u.width == widths[u.name]
        else:
            mod = m.get_submodule(u.module)
            assert u.name.endswith(f".{u.position}") and "narrow" not in u.actions
            if u.kind in ("res", "xattn"):
                assert mod.kind == u.kind and u.width == m.decoder.channels
            if u.kind == "gl_iter":
                assert sum(p.numel() for p in mod.parameters()) == 0 and u.width == 257
    # the one prior layer of the unittest preset cannot go (0 layers = no prior at all)
    prior = [u for u in units if u.kind == "prior_conv"]
    assert all(u.actions == (("remove", "duplicate") if len(prior) > 1 else ("duplicate",))
               for u in prior)
    json.dumps(m.arch_summary())


def test_arch_summary_of_the_demo_preset():
    assert registry.build("lhq-svc-demo").arch_summary() == {
        "f0": {"stride": 1},
        "content": {"dilations": [1, 2, 4, 1], "width": 96},
        "conditioner": {"width": 256, "context": 2, "prior": 4, "lobes": 5},
        "decoder": {"blocks": ["res", "xattn", "res", "xattn"], "width": 96},
        "vocoder": {"layers": [1, 3, 9], "width": 96, "harmonics": 128, "gl_iters": 2},
    }


def test_melgan_hubert_and_paper_pipelines_expose_their_units():
    m = registry.build("lhq-svc-unittest", vocoder_kind="melgan", vocoder_channels=32)
    voc = [u for u in m.units() if u.component == "vocoder"]
    assert [u.name for u in voc] == [f"vocoder.stacks.{s}.layers.{i}"
                                     for s in range(3) for i in range(3)] + ["vocoder.width"]
    assert [u.width for u in voc] == [16] * 3 + [8] * 6 + [32]
    assert voc[3].module == "vocoder.net.6.layers.0"
    for u in voc[:-1]:
        m.get_submodule(u.module)
    assert m.arch_summary()["vocoder"] == {"kind": "melgan", "layers": [[1, 3, 9]] * 3,
                                           "width": 32}
    assert m.config["vocoder_dilations"] == [[1, 3, 9]] * 3
    # a frozen HuBERT content encoder has no units
    h = registry.build("lhq-svc-unittest", content_kind="hubert", hubert=TINY_HUBERT)
    assert not [u for u in h.units() if u.component == "content"]
    assert h.arch_summary()["content"] == {"kind": "hubert", "width": 32}
    # the paper-sized preset: MelGAN 512 -> stages 256 / 128 / 64, no prior, no GL
    big = registry.build("lhq-svc")
    kinds = {u.kind for u in big.units()}
    assert kinds == {"content_conv", "cond_context", "res", "xattn", "voc_layer", "width",
                     "rate"}
    widths = {u.name: u.width for u in big.units() if u.kind == "voc_layer"}
    assert widths["vocoder.stacks.0.layers.0"] == 256 and widths["vocoder.stacks.2.layers.2"] == 64


# ---- remove / duplicate ---------------------------------------------------------------------
def _set(part: str, key: str, value):  # type: ignore[no-untyped-def]
    def edit(s: dict) -> None:
        s[part][key] = value

    return edit


CASES = [
    ("content.convs.1", "remove", _set("content", "dilations", [1, 4, 1])),
    ("content.convs.2", "duplicate", _set("content", "dilations", [1, 2, 4, 4, 1])),
    ("conditioner.context.0", "remove", _set("conditioner", "context", 1)),
    ("conditioner.context.1", "duplicate", _set("conditioner", "context", 3)),
    ("conditioner.prior.1", "remove", _set("conditioner", "prior", 1)),
    ("conditioner.prior.0", "duplicate", _set("conditioner", "prior", 3)),
    ("decoder.blocks.1", "remove", _set("decoder", "blocks", ["res", "res"])),
    ("decoder.blocks.0", "duplicate", _set("decoder", "blocks", ["res", "res", "xattn", "res"])),
    ("vocoder.stacks.0.layers.1", "remove", _set("vocoder", "layers", [1, 9])),
    ("vocoder.stacks.0.layers.2", "duplicate", _set("vocoder", "layers", [1, 3, 9, 9])),
    ("vocoder.source.iterations.0", "remove", _set("vocoder", "gl_iters", 1)),
    ("vocoder.source.iterations.1", "duplicate", _set("vocoder", "gl_iters", 3)),
]


@pytest.mark.parametrize("unit, action, edit", CASES, ids=[f"{a}-{u}" for u, a, _ in CASES])
def test_remove_and_duplicate_every_kind(unit, action, edit):
    m = _model(content_layers=4, mel_prior_layers=2)
    x = SPEC.example_inputs(m)
    u = {v.name: v for v in m.units()}[unit]
    moved = _params(m.get_submodule(u.module))
    if u.kind == "content_conv":
        moved += _params(m.content.norms[u.position])
    want = m.arch_summary()
    edit(want)
    n0, kinds0 = _params(m), [v.kind for v in m.units()].count(u.kind)
    with torch.no_grad():
        y0 = m(*x)
        m.apply_action(action, unit)
        y = m(*x)
    assert m.arch_summary() == want
    assert _params(m) == n0 + (moved if action == "duplicate" else -moved)
    assert [v.kind for v in m.units()].count(u.kind) == kinds0 + (1 if action == "duplicate"
                                                                  else -1)
    assert y.shape == y0.shape and torch.isfinite(y).all()
    assert float((y - y0).abs().max()) > 1e-6  # the edit matters
    # the config rebuilds the edited model exactly
    rebuilt = SVCPipeline(**m.config).eval()
    rebuilt.load_state_dict(m.state_dict(), strict=True)
    assert rebuilt.arch_summary() == want
    with torch.no_grad():
        assert torch.equal(rebuilt(*x), y)


def test_removed_content_layer_keeps_the_other_dilations():
    m = _model(content_layers=6)
    assert m.config["content_dilations"] == [1, 2, 4, 1, 2, 4]
    m.apply_action("remove", "content.convs.1")
    assert m.config["content_dilations"] == [1, 4, 1, 2, 4] and m.config["content_layers"] == 5
    assert [c.dilation[0] for c in m.content.convs] == [1, 4, 1, 2, 4]
    assert [c.padding[0] for c in m.content.convs] == [2, 8, 2, 4, 8]
    with pytest.raises(ValueError, match="content_layers=4"):
        SVCPipeline(**{**m.config, "content_layers": 4})


def test_bad_actions_are_value_errors_naming_the_choices():
    m = _model()
    with pytest.raises(ValueError, match=r"action='shrink'; valid: remove, duplicate, narrow"):
        m.apply_action("shrink", "decoder.width")
    with pytest.raises(ValueError, match=r"unit='decoder.blocks.9'; valid: .*decoder.blocks.2"):
        m.apply_action("remove", "decoder.blocks.9")
    with pytest.raises(ValueError, match=r"cannot narrow unit 'decoder.blocks.0'.*remove"):
        m.apply_action("narrow", "decoder.blocks.0")
    with pytest.raises(ValueError, match=r"cannot remove unit 'conditioner.prior.0'"):
        m.apply_action("remove", "conditioner.prior.0")
    with pytest.raises(ValueError, match="factor=1.0"):
        m.apply_action("narrow", "decoder.width", factor=1.0)
    m.apply_action("remove", "decoder.blocks.0")
    m.apply_action("remove", "decoder.blocks.0")
    with pytest.raises(ValueError, match="cannot remove unit 'decoder.blocks.0'"):
        m.apply_action("remove", "decoder.blocks.0")
    # narrowed to the minimum (8 in the unittest preset): nothing left to narrow
    m.apply_action("narrow", "content.width", factor=0.1)
    u = {v.name: v for v in m.units()}["content.width"]
    assert u.width == 8 and u.actions == ()
    with pytest.raises(ValueError, match="cannot narrow unit 'content.width'"):
        m.apply_action("narrow", "content.width")
    # the decoder-only API is unchanged
    assert m.block_names() == ["res0"] and m.architecture == ["res"]


# ---- narrow ---------------------------------------------------------------------------------
def test_narrowed_width_and_channel_selection():
    assert narrowed_width(96, 0.75, 8, 16) == 72
    assert narrowed_width(24, 0.75, 8, 16) == 16
    assert narrowed_width(100, 0.99, 8, 16) == 96
    assert narrowed_width(64, 0.1, 8, 12) == 16  # the minimum, rounded up to the alignment
    for bad in ((16, 0.75, 8, 16), (96, 1.0, 8, 16), (96, 0.0, 8, 16)):
        with pytest.raises(ValueError):
            narrowed_width(*bad)
    imp = torch.tensor([0.1, 3.0, 2.0, 0.5, 1.0, 1.0, 0.2, 4.0])
    assert select_channels(imp, 4).tolist() == [1, 2, 4, 7]
    assert select_channels(imp, 4, blocks=2).tolist() == [1, 2, 4, 7]
    assert select_channels(imp, 2, blocks=2).tolist() == [1, 7]
    assert select_channels(torch.ones(4), 2).tolist() == [0, 1]  # ties keep the lower index
    # two groups in one tensor axis (gate halves) plus a consumer axis
    state = {"w": torch.arange(24.0).reshape(6, 4), "b": torch.arange(6.0)}
    g = ChannelGroup("g", 3, 2, (Slot("w", 0, 0, True), Slot("w", 0, 3), Slot("b", 0, 3)))
    h = ChannelGroup("h", 4, 2, (Slot("w", 1, 0, scale=2.0),))
    out = slice_state(state, [(g, torch.tensor([0, 2])), (h, torch.tensor([1, 3]))])
    assert out["w"].tolist() == [[2.0, 6.0], [18.0, 22.0], [26.0, 30.0], [42.0, 46.0]]
    assert out["b"].tolist() == [0.0, 1.0, 2.0, 3.0, 5.0]


def _kill(m: torch.nn.Module, plan) -> None:  # type: ignore[no-untyped-def]
    """Zero, in every slot, the channels the plan drops (producers, consumers, norms)."""
    state = m.state_dict()  # shares storage with the parameters and buffers
    with torch.no_grad():
        for group, keep in plan:
            drop = torch.tensor(sorted(set(range(group.size)) - set(keep.tolist())),
                                dtype=torch.long)
            for slot in group.slots:
                state[slot.key].narrow(slot.axis, slot.offset, group.size).index_fill_(
                    slot.axis, drop, 0.0)


def _component_output(m: SVCPipeline, component: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    n = 32
    if component == "content":
        return m.content(SPEC.example_inputs(m)[0])
    if component == "conditioner":  # as the decoder reads it (it reads the stream too)
        f0 = torch.randn(1, m.f0_features.dim, n, generator=g) * 0.3
        f0[:, 1] = 1.0  # voiced: channel 0 is log2(f0 / ref), channel 1 the voicing flag
        cond = m.conditioner(torch.randn(1, m.conditioner.content_proj.in_channels, n,
                                         generator=g), f0, torch.tensor([1]))
        return m.decoder(torch.randn(1, 80, n, generator=g), torch.tensor([0.6]), cond)
    if component == "decoder":
        return m.decoder(torch.randn(1, 80, n, generator=g), torch.tensor([0.6]),
                         torch.randn(1, m.decoder.cond_channels, n, generator=g))
    mel, f0 = _hn_inputs(n)
    return m.vocoder(mel, f0) if isinstance(m.vocoder, HNVocoder) else m.vocoder(mel)


NARROW = [
    ("lhq-svc-unittest", {}, "content.width", 8),
    ("lhq-svc-unittest", {}, "conditioner.width", 192),
    ("lhq-svc-unittest", {}, "decoder.width", 24),
    ("lhq-svc-demo", {}, "decoder.width", 72),  # 4 heads: 24 -> 18 channels per head
    ("lhq-svc-unittest", {}, "vocoder.width", 8),
    ("lhq-svc-unittest", {}, "vocoder.harmonics", 96),
    ("lhq-svc-unittest", {"vocoder_kind": "melgan", "vocoder_channels": 32}, "vocoder.width",
     24),
]


@pytest.mark.parametrize("name, overrides, unit, new", NARROW,
                         ids=[f"{n}-{u}-{o.get('vocoder_kind', '')}" for n, o, u, _ in NARROW])
def test_narrowing_dead_channels_is_exact(monkeypatch, name, overrides, unit, new):
    """Zero the channels narrowing drops (every producer, consumer and norm slot), narrow:
    the output is unchanged, so every tensor is sliced consistently. ChannelNorm's statistics
    over channels are the one thing narrowing changes by design (as pruning a LayerNorm does),
    so it is a per-channel affine map here; the vocoder has no such norm and runs as is."""
    m = _model(name, **overrides)
    component = unit.split(".")[0]
    if component in ("content", "decoder", "conditioner"):
        monkeypatch.setattr(ChannelNorm, "forward", lambda self, x: x * self.weight + self.bias)
    plan = m.narrow_plan(unit)
    assert all(keep.numel() == g.target for g, keep in plan)
    if unit != "vocoder.harmonics":  # dropped harmonics are above Nyquist for this F0
        _kill(m, plan)
    again = m.narrow_plan(unit)  # the dead channels are the least important ones
    assert all(torch.equal(a[1], b[1]) for a, b in zip(plan, again))
    full = name == "lhq-svc-unittest"
    x = SPEC.example_inputs(m)
    n0 = _params(m)
    with torch.no_grad():
        c0 = _component_output(m, component)
        y0 = m(*x) if full else None
        m.apply_action("narrow", unit)
        c1 = _component_output(m, component)
        y1 = m(*x) if full else None
    assert float(c0.abs().max()) > 1e-3  # not trivially zero
    assert c1.shape == c0.shape and float((c1 - c0).abs().max()) < 1e-5
    if full:
        assert float((y1 - y0).abs().max()) < 1e-5
    summary = m.arch_summary()[component]
    assert summary["harmonics" if unit == "vocoder.harmonics" else "width"] == new
    if unit == "vocoder.harmonics":
        assert n0 == _params(m) and m.vocoder.source.harmonic_weight.shape[0] == new
    else:
        assert _params(m) < n0
    if unit == "decoder.width":
        heads = m.decoder.heads
        for b in m.decoder.blocks:
            if b.kind == "xattn":
                assert b.head_dim * heads == new and b.kv.out_channels == 2 * new


def test_narrowing_with_real_norms_runs_and_keeps_weights_of_kept_channels():
    m = _model()
    keep = {g.name: keep for g, keep in m.narrow_plan("content.width")}["hidden"]
    w0 = m.content.convs[0].weight.detach().clone()
    x = SPEC.example_inputs(m)
    m.apply_action("narrow", "content.width")
    assert torch.equal(m.content.convs[0].weight, w0[keep][:, keep])
    assert m.content.norms[1].weight.shape == (1, 8, 1)
    with torch.no_grad():
        y = m(*x)
    assert y.shape == x[0].shape and torch.isfinite(y).all()


# ---- checkpoints ----------------------------------------------------------------------------
ACTIONS_SEQUENCE = [
    ("remove", "content.convs.1"), ("narrow", "content.width"),
    ("duplicate", "conditioner.context.0"), ("duplicate", "conditioner.prior.0"),
    ("narrow", "decoder.width"), ("duplicate", "decoder.blocks.1"), ("remove", "decoder.blocks.0"),
    ("remove", "vocoder.stacks.0.layers.1"), ("duplicate", "vocoder.source.iterations.0"),
    ("narrow", "vocoder.width"), ("narrow", "vocoder.harmonics"), ("narrow", "conditioner.width"),
]


def test_checkpoint_round_trip_after_actions_everywhere(tmp_path):
    m = _model(content_layers=3)
    for action, unit in ACTIONS_SEQUENCE:
        m.apply_action(action, unit)
    want = {"f0": {"stride": 1}, "content": {"dilations": [1, 4], "width": 8},
            "conditioner": {"width": 192, "context": 3, "prior": 2, "lobes": 5},
            "decoder": {"blocks": ["xattn", "xattn", "res"], "width": 24},
            "vocoder": {"layers": [1, 9], "width": 8, "harmonics": 96, "gl_iters": 3}}
    assert m.arch_summary() == want
    x = SPEC.example_inputs(m)
    with torch.no_grad():
        y = m(*x)
    path = save_checkpoint(tmp_path / "ck", m, model_name=SPEC.name, config=m.config,
                           architecture=m.architecture,
                           history=[{"action": a, "unit": u} for a, u in ACTIONS_SEQUENCE])
    loaded, header = load_model(path)
    assert header.architecture == ["xattn", "xattn", "res"]
    assert loaded.arch_summary() == want and loaded.config == m.config
    assert [u.name for u in loaded.units()] == [u.name for u in m.units()]
    with torch.no_grad():
        assert torch.equal(loaded(*x), y)


def test_checkpoint_without_the_architecture_keys_builds_todays_model(tmp_path):
    m = _model(content_layers=4)
    cfg = {k: v for k, v in m.config.items() if k not in NEW_KEYS}
    path = save_checkpoint(tmp_path / "old", m, model_name=SPEC.name, config=cfg,
                           architecture=m.architecture)
    loaded, _ = load_model(path)
    assert loaded.config["content_dilations"] == [1, 2, 4, 1]
    assert loaded.config["cond_context_layers"] == 2
    assert loaded.config["vocoder_dilations"] == [1, 3, 9]
    assert loaded.config["vocoder_harmonics"] == 128
    assert loaded.arch_summary() == m.arch_summary()
    x = SPEC.example_inputs(m)
    with torch.no_grad():
        assert torch.equal(loaded(*x), m(*x))


# ---- Griffin-Lim iterations -----------------------------------------------------------------
def test_griffin_lim_iteration_modules_equal_the_loop():
    """The iterations as modules give what the former ``for _ in range(phase_iters)`` loop of
    analyse + synthesise gave; the signal before them is the 0-iteration vocoder's output."""
    torch.manual_seed(0)
    v = HNVocoder(channels=16, synthesis="stft", phase_iters=2).eval()
    torch.nn.init.normal_(v.head.weight, std=0.05)
    mel, f0 = _hn_inputs(40)
    seen: list[tuple[torch.Tensor, ...]] = []
    hooks = [it.register_forward_hook(lambda mod, args, out: seen.append(args))
             for it in v.source.iterations]
    with torch.no_grad():
        y = v(mel, f0)
        y_in, mag = seen[0]
        ref = y_in
        for _ in range(2):
            yr, yi = v.source.analyse(ref, mag.shape[-1])
            ref = v.source.synthesise(mag, yr, yi)
        v0 = HNVocoder(channels=16, synthesis="stft", phase_iters=0).eval()
        v0.load_state_dict(v.state_dict(), strict=True)
        y0 = v0(mel, f0)
    for h in hooks:
        h.remove()
    assert len(seen) == 2 and mag.shape == (1, 257, 40)
    assert torch.equal(y, ref) and torch.equal(y_in, y0)
    assert float((y - y0).abs().max()) > 1e-4  # the iterations do something
    # parameter-free, reading the source's bases (also after a cast), not its submodule
    assert not list(v.source.iterations.parameters()) and not list(v.source.iterations.buffers())
    assert [n for n, _ in v.source.named_modules()] == ["", "iterations", "iterations.0",
                                                        "iterations.1"]
    v.double()
    for it in v.source.iterations:
        assert it.analysis_weight is v.source.analysis_weight
        assert it.synthesis_weight.dtype == torch.float64
    assert v.config["phase_iters"] == 2 and v.source.phase_iters == 2
    c = copy.deepcopy(v)  # a copy's iterations read the copy's source
    assert all(it.analysis_weight is c.source.analysis_weight for it in c.source.iterations)
    assert c.source.analysis_weight is not v.source.analysis_weight


def test_a_griffin_lim_iteration_exports_alone():
    """A latency probe can export one iteration with the inputs a hook recorded."""
    v = HNVocoder(channels=16, synthesis="stft", phase_iters=1).eval()
    seen: list[tuple[torch.Tensor, ...]] = []
    v.source.iterations[0].register_forward_hook(lambda mod, args, out: seen.append(args))
    mel, f0 = _hn_inputs(24)
    with torch.no_grad():
        v(mel, f0)
        it = v.source.iterations[0]
        ep = torch.export.export(it, seen[0])
        assert torch.equal(ep.module()(*seen[0]), it(*seen[0]))


# ---- export ---------------------------------------------------------------------------------
def test_export_after_actions_in_every_component():
    m = _model(device_steps=1)
    for action, unit in [("remove", "content.convs.0"), ("duplicate", "conditioner.context.0"),
                         ("narrow", "decoder.width"), ("remove", "decoder.blocks.1"),
                         ("narrow", "vocoder.width"), ("duplicate", "vocoder.source.iterations.0"),
                         ("narrow", "vocoder.harmonics")]:
        m.apply_action(action, unit)
    x = SPEC.example_inputs(m)
    with torch.no_grad():
        want = m(*x)
        ep = torch.export.export(m, x)
        got = ep.module()(*x)
    assert float((got - want).abs().max()) < 1e-5
    # the three Griffin-Lim iterations read one copy of the STFT bases
    consts = [s.target for s in ep.graph_signature.input_specs
              if s.kind.name == "CONSTANT_TENSOR"]
    assert sum("analysis_weight" in c for c in consts) == 1


@pytest.mark.slow
def test_executorch_program_after_actions_runs():
    """XNNPACK lowering and the ExecuTorch runtime accept the evolved pipeline (the Griffin-Lim
    iterations' STFT bases must be one lifted constant, not aliases of it)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    m = _model(device_steps=1)
    for action, unit in [("narrow", "decoder.width"), ("duplicate", "vocoder.source.iterations.0"),
                         ("narrow", "vocoder.width"), ("remove", "content.convs.0")]:
        m.apply_action(action, unit)
    x = SPEC.example_inputs(m)
    with torch.no_grad():
        want = m(*x)
        ep = torch.export.export(m, x)
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    method = Runtime.get().load_program(prog.buffer).load_method("forward")
    got = method.execute(list(x))[0]
    assert float((got - want).abs().max()) < 1e-4


def test_render_lobes_narrow_to_one_and_are_exact_above_four_bins(tmp_path):
    """The source-filter render sums 2n+1 harmonic lobes per bin; with F0 >= 4 bins (125 Hz)
    only the nearest harmonic reaches a bin, so one lobe renders the same comb."""
    m = _model()
    r = m.conditioner.render
    f0 = torch.tensor([[130.0, 220.0, 440.0, 90.0]])
    voiced = torch.ones_like(f0)
    before = r.comb(f0, voiced)
    m.apply_action("narrow", "conditioner.lobes", 0.5)  # 5 lobes * 0.5 -> the odd count 1
    after = m.conditioner.render.comb(f0, voiced)
    assert m.arch_summary()["conditioner"]["lobes"] == 1
    assert m.config["mel_prior_neighbours"] == 0
    assert (before[:, :3] - after[:, :3]).abs().max() < 1e-3  # F0 >= 4 bins: the same comb
    assert (before[:, 3] - after[:, 3]).abs().max() > 1e-2  # 90 Hz: overlapping lobes dropped
    lobes = next(u for u in m.units() if u.name == "conditioner.lobes")
    assert lobes.actions == () and lobes.width == 1
    with pytest.raises(ValueError, match="conditioner.lobes"):
        m.apply_action("narrow", "conditioner.lobes")
    save_checkpoint(tmp_path / "c.safetensors", m, model_name="lhq-svc-unittest",
                    config=m.config, architecture=m.architecture)
    again, _ = load_model(tmp_path / "c.safetensors")
    assert again.conditioner.render.neighbours == 0


def test_f0_rate_unit_halves_the_estimates_and_survives_a_checkpoint(tmp_path):
    """Narrowing ``f0.rate`` estimates F0 on every other frame and interpolates: same frame
    count, the same voiced F0 within a few cents on a vibrato, voicing lost only at voicing
    edges; the unit then has no action left; the config and a checkpoint rebuild it."""
    m = _model()
    sr = m.sample_rate
    t = np.arange(sr) / sr
    f = 220.0 * 2.0 ** (0.5 / 12 * np.sin(2 * np.pi * 6 * t))  # 6 Hz vibrato, ±50 cents
    wav = np.sin(2 * np.pi * np.cumsum(f) / sr) + 0.3 * np.sin(4 * np.pi * np.cumsum(f) / sr)
    wav[: sr // 4] = 0.0  # a silent start: a voicing edge
    audio = torch.tensor(0.3 * wav, dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        f0_a, v_a = m.f0(audio)
    m.apply_action("narrow", "f0.rate")
    assert m.f0.stride == 2 and m.config["f0_stride"] == 2
    assert m.arch_summary()["f0"] == {"stride": 2}
    assert next(u for u in m.units() if u.name == "f0.rate").actions == ()
    with torch.no_grad():
        f0_b, v_b = m.f0(audio)
    assert f0_b.shape == f0_a.shape and set(v_b.unique().tolist()) <= {0.0, 1.0}
    both = (v_a * v_b) > 0
    both[:, -1] = False  # the last frame repeats the one before it (no estimate after it)
    cents = 1200 * torch.log2(f0_b[both] / f0_a[both])
    assert both.sum() >= 0.95 * v_a.sum() - 1
    assert cents.square().mean().sqrt() < 3.0 and cents.abs().max() < 10.0
    assert torch.all(f0_b[v_b == 0] == 0)
    path = save_checkpoint(tmp_path / "ck", m, model_name=SPEC.name, config=m.config,
                           architecture=m.architecture)
    loaded, _ = load_model(path)
    assert loaded.f0.stride == 2
    with torch.no_grad():
        assert torch.equal(loaded.f0(audio)[0], f0_b)
