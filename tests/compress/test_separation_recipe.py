"""The separation recipe: units and actions on the dense nets, checkpoints of evolved models,
int8 groups, config checks, and `compress run` end to end on cws-mdensenet-unittest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from compress.config import RunConfig
from compress.config_io import from_dict
from compress.errors import CompressError, ConfigError
from compress.recipes import recipe_for
from compress.recipes.base import Action, Unit
from compress.recipes.separation import SeparationRecipe
from models import registry

ROOT = Path(__file__).resolve().parents[2]
NAME = "cws-mdensenet-unittest"

UT_CONFIG = """\
name: sep-ut
model: {name: cws-mdensenet-unittest}
data: {source: synthetic, singers: 2, minutes: 0.3, held_out_songs: 2, sample_rate: 8000}
train: {steps: 30, batch_size: 4, lr: 0.002}
robust: {steps: 5}
latency: {warmup: 1, iterations: 5, repeats: 2, width_steps: 0, validate: false}
evolve: {budget_fraction: 0.99, params_fraction: null, score: si_sdr, max_rounds: 3,
         finetune_steps: 2, duplicate_candidates: 0, swap_candidates: 0, val_clips: 3,
         val_seconds: 1.0, screen_clips: 1, screen_keep: 2}
distill: {steps_per_stage: 4}
quantize: {calibration_clips: 2, sensitivity_threshold: 1.0}
export: {chunk_seconds: 0.5, precision: fp32}
bench: {iterations: 5, warmup: 1, repeats: 2, teacher_steps: 1, eval_clips: 3, eval_seconds: 1.0}
"""


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_recipe_is_registered_for_the_family():
    r = recipe_for(NAME)
    assert isinstance(r, SeparationRecipe) and r.family == "separation"
    assert r.decision_scores() == ["si_sdr", "si_sdri", "sdr"]


def test_units_actions_and_checkpoint_rebuild(tmp_path):
    r = SeparationRecipe()
    r.configure(from_dict(RunConfig, {"model": {"name": NAME}, "evolve": {"score": "si_sdr"}}))
    m = registry.build(NAME).eval()
    units = r.units(m)
    width = units.pop()
    assert width == Unit("net.width", "width", "net", 0, ("narrow",), sum(m.block_widths),
                         None)
    assert len(units) == sum(m.dense_layers) == 38
    assert {u.component for u in units} == {"net"}
    assert {u.kind for u in units} == {f"dense_s{i}" for i in range(5)}
    assert all(u.actions == ("remove",) for u in units)
    # each layer's latency probe is its block's last layer (what a removal saves)
    for u in units:
        layers = u.name.rsplit(".", 1)[0]  # net.<block>.layers
        assert u.module == f"{layers}.{len(m.get_submodule(layers)) - 1}", u
    m.get_submodule(units[0].module)  # module paths resolve from the separator
    x = registry.get(NAME).example_inputs(m)[0]
    r.apply(m, Action("remove", "net.body.up_blocks.1.layers.2"))
    r.apply(m, Action("remove", "net.head.0.layers.0"))
    assert r.architecture(m)["net"] == [4, 4, 4, 4, 4, 4, 3, 4, 4, 1]
    assert all(u.actions == () for u in r.units(m) if u.name.startswith("net.head.0."))
    with pytest.raises(CompressError, match="cannot be narrowed"):
        r.apply(m, Action("narrow", "net.body.stem", 0.5))
    with pytest.raises(CompressError, match="remove and narrow, not 'duplicate'"):
        r.apply(m, Action("duplicate", "net.head.0.layers.0"))
    r.apply(m, Action("narrow", "net.width", 0.75))
    assert r.architecture(m)["block_widths"] == [3] * 9 + [6]
    with pytest.raises(CompressError, match="no dense block"):
        r.apply(m, Action("remove", "net.body.down_blocks.9.layers.0"))
    with torch.no_grad():
        y = m(x)
    p = r.save(m, tmp_path / "m.safetensors", {"event": "test"})
    back = r.load(p)
    assert back.dense_layers == m.dense_layers and back.block_widths == m.block_widths
    from models.checkpoint import load_model

    assert load_model(p)[0].block_widths == m.block_widths  # compress export's loader
    with torch.no_grad():
        assert torch.equal(back(x), y)
    assert r.params(back) == r.params(m) < r.params(registry.build(NAME))


def test_int8_groups_cover_the_net_and_keep_the_dsp_fp32():
    r = SeparationRecipe()
    m = registry.build(NAME)
    groups = r.int8_groups(m)
    assert r.keep_fp32(m) == ("filterbank", "stft") and r.int8_modules(m) == ("net",)
    # stems are gated on SQNR, not on a speech-intelligibility score; speech models keep STOI
    from export.parity import stoi_sample_rate

    assert stoi_sample_rate(m) is None
    svc = registry.build("lhq-svc-vocoder-unittest")
    assert stoi_sample_rate(svc, 16000) == 16000
    assert all(g.startswith("net.") for g in groups)
    assert groups[:10] == [f"net.{p}" for p, _, _ in m.net.dense_blocks()]
    assert {"net.body.stem", "net.body.transitions.0", "net.body.upsamplers.3",
            "net.head.1"} <= set(groups)
    # every conv of the net is in exactly one group
    convs = [n for n, mod in m.net.named_modules()
             if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    for c in convs:
        assert sum(f"net.{c}" == g or f"net.{c}".startswith(g + ".") for g in groups) == 1, c
    unet = r.int8_groups(registry.build("cws-unet5-unittest"))
    assert unet == ["net.inc", *[f"net.down.{i}" for i in range(4)],
                    *[f"net.up.{i}" for i in range(4)], "net.outc"]


def test_a_unet_evolves_by_its_width():
    """A UNet has no removable level; its unit is the width of every conv block."""
    r = SeparationRecipe()
    m = registry.build("cws-unet5-unittest").eval()
    r.check_teacher(m, Path("unet"))
    (u,) = r.units(m)
    assert (u.name, u.kind, u.actions, u.module) == ("net.width", "width", ("narrow",), None)
    x = registry.get("cws-unet5-unittest").example_inputs(m)
    r.apply(m, Action("narrow", "net.width", 0.5))
    assert r.architecture(m)["block_widths"] == [2, 4, 8, 16, 16, 8, 4, 2, 2]
    with torch.no_grad():
        assert m(*x).shape == (1, 2, 2, x[0].shape[-1])
    with pytest.raises(CompressError, match="recipe knows Separator, VoxTasNet.*got Linear"):
        r.check_teacher(torch.nn.Linear(2, 2), Path("x"))


@pytest.mark.parametrize("name", ["vox-tasnet-unittest", "vox-tasnet-causal-unittest"])
def test_vox_tasnet_blocks_and_width_evolve_and_rebuild(tmp_path, name):
    """Vox-TasNet's units: each TCN block (remove) and the width H of every block (narrow);
    an evolved model rebuilds from its checkpoint's config alone."""
    r = SeparationRecipe()
    r.configure(from_dict(RunConfig, {"model": {"name": name}, "evolve": {"score": "si_sdr"}}))
    m = registry.build(name).eval()
    r.check_teacher(m, Path("tasnet"))
    units = r.units(m)
    assert [u.name for u in units] == [f"tcn.blocks.{i}" for i in range(4)] + ["tcn.width"]
    assert {u.kind for u in units[:4]} == {"tcn_block"}
    assert all(u.module == "tcn.blocks.0" and u.actions == ("remove",) for u in units[:4])
    assert units[4] == Unit("tcn.width", "width", "tcn", 0, ("narrow",), 16, None)
    assert r.components(m) == {"tcn": "tcn"} and r.int8_modules(m) == ("tcn",)
    assert r.int8_groups(m) == ["tcn.bottleneck", *[f"tcn.blocks.{i}" for i in range(4)],
                                "tcn.out"]
    x = registry.get(name).example_inputs(m)[0]
    ahead = m.tcn.lookahead_frames
    r.apply(m, Action("remove", "tcn.blocks.1"))
    r.apply(m, Action("narrow", "tcn.width", 0.5))
    arch = r.architecture(m)
    assert arch["blocks"] == [0, 2, 3] and arch["H"] == 8
    assert m.tcn.lookahead_frames == ahead - m_pad_right(name, 1)
    assert [u.name for u in r.units(m)][-1] == "tcn.width"
    with pytest.raises(CompressError, match="not a TCN block"):
        r.apply(m, Action("remove", "encoder"))
    with pytest.raises(CompressError, match="cannot be narrowed"):
        r.apply(m, Action("narrow", "tcn.blocks.0", 0.5))
    meta = r.export_metadata(m, None)
    assert json.loads(meta["blocks"]) == [0, 2, 3] and meta["arch"] == "vox-tasnet"
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 2, 2, x.shape[-1])
    p = r.save(m, tmp_path / "m.safetensors", {"event": "test"})
    back = r.load(p)
    assert back.config == m.config and back.config["blocks"] == [0, 2, 3]
    with torch.no_grad():
        assert torch.equal(back(x), y)
    assert r.params(back) < r.params(registry.build(name))
    for _ in range(2):
        r.apply(m, Action("remove", "tcn.blocks.0"))
    assert r.units(m)[0].actions == ()  # the last block stays
    with pytest.raises(CompressError, match="last block"):
        r.apply(m, Action("remove", "tcn.blocks.0"))


@pytest.mark.parametrize("name", ["chimera-unittest", "chimera-causal-unittest"])
def test_chimera_layers_and_width_evolve_and_rebuild(tmp_path, name):
    """The Chimera network's units: each LSTM layer after the first (remove) and the hidden
    width of every layer (narrow); an evolved model rebuilds from its checkpoint's config."""
    r = SeparationRecipe()
    r.configure(from_dict(RunConfig, {"model": {"name": name}, "evolve": {"score": "si_sdr"}}))
    m = registry.build(name, layers=3).eval()
    r.check_teacher(m, Path("chimera"))
    units = r.units(m)
    assert [u.name for u in units] == ([f"net.body.layers.{i}" for i in range(3)]
                                       + ["net.width", "net.embedding"])
    assert [u.actions for u in units[:3]] == [(), ("remove",), ("remove",)]
    assert {u.module for u in units[:3]} == {"net.body.layers.1"}
    assert units[3] == Unit("net.width", "width", "net", 0, ("narrow",), 16, None)
    assert units[4] == Unit("net.embedding", "width", "net", 1, ("narrow",), 8, None)
    assert r.int8_groups(m) == ["net.body.layers.0", "net.body.layers.1",
                                "net.body.layers.2", "net.to_z"]
    x = registry.get(name).example_inputs(m)[0]
    r.apply(m, Action("remove", "net.body.layers.1"))
    r.apply(m, Action("narrow", "net.width", 0.5))
    r.apply(m, Action("narrow", "net.embedding", 0.5))
    arch = r.architecture(m)
    assert (arch["layers"], arch["hidden"], arch["embedding"]) == (2, 8, 4)
    assert m.net.to_z.out_features == m.n_mels * 4 and m.net.mi_weight.shape[1] == 4
    d = 2 if m.bidirectional else 1
    assert m.net.to_z.in_features == d * 8 and m.net.body.layers[1].input_size == d * 8
    with pytest.raises(CompressError, match="first reads the input"):
        r.apply(m, Action("remove", "net.body.layers.0"))
    with pytest.raises(CompressError, match="cannot be narrowed"):
        r.apply(m, Action("narrow", "net.body.layers.1", 0.5))
    with torch.no_grad():
        y = m(x)
    assert y.shape == (1, 2, 2, x.shape[-1])
    # the stems still sum to the mixture (softmax masks) after both actions
    assert float((y.sum(1) - x).abs().max()) < 1e-4
    p = r.save(m, tmp_path / "m.safetensors", {"event": "test"})
    back = r.load(p)
    assert back.config == m.config and back.config["layers"] == 2
    with torch.no_grad():
        assert torch.equal(back(x), y)
    assert r.params(back) < r.params(registry.build(name, layers=3))
    assert r.export_metadata(m, None)["hidden"] == 8


def test_chimera_narrowing_keeps_the_strongest_units():
    """Narrowing keeps the hidden units of largest recurrent weight norm: units made silent
    (zero weights in and out) are the ones dropped, and the output does not change."""
    m = registry.build("chimera-unittest").eval()
    x = registry.get("chimera-unittest").example_inputs(m)[0]
    dead = torch.tensor([1, 4, 6, 9, 11, 12, 14, 15])  # 8 of 16 units, in every direction
    with torch.no_grad():
        for i, layer in enumerate(m.net.body.layers):
            for sfx in ("", "_reverse"):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    w = getattr(layer, f"{name}_l0{sfx}").view(4, 16, -1)
                    w[:, dead] = 0.0
                getattr(layer, f"weight_hh_l0{sfx}")[:, dead] = 0.0
            # the readers of this layer's dead units (next layer, both directions, or to_z)
            readers = ([m.net.body.layers[i + 1].weight_ih_l0,
                        m.net.body.layers[i + 1].weight_ih_l0_reverse] if i == 0
                       else [m.net.to_z.weight])
            for w in readers:
                w[:, dead] = 0.0
                w[:, dead + 16] = 0.0
        before = m(x)
    m.narrow(8)
    with torch.no_grad():
        after = m(x)
    assert float((after - before).abs().max()) < 1e-5
    # the embedding dimensions: D = 8, dimensions 1, 2, 5 silent in to_z and the mask head
    with torch.no_grad():
        w = m.net.to_z.weight.view(m.n_mels, 8, -1)
        w[:, [1, 2, 5]] = 0.0
        m.net.to_z.bias.view(m.n_mels, 8)[:, [1, 2, 5]] = 0.0
        m.net.mi_weight[:, [1, 2, 5]] = 0.0
        before = m(x)
    m.narrow_embedding(5)
    with torch.no_grad():
        after = m(x)
    assert m.embedding == 5 and m.config["embedding"] == 5
    assert float((after - before).abs().max()) < 1e-5


def test_chimera_latency_plan_probes_a_layer_and_the_network_at_each_width():
    """The latency plan of the Chimera network: the whole mask network ("net") at the teacher's
    and two narrowed widths, the removable-layer kind at each (its input grows with the width),
    each with its pass-through companion; every probe returns tensors only (a None among a
    probe's outputs cannot be exported) from contiguous inputs."""
    from compress.latency_probe import plan_probes

    name = "chimera-unittest"
    r = SeparationRecipe()
    m = registry.build(name, layers=3).eval()
    x = registry.get(name).example_inputs(m)
    pm, probes = plan_probes(r, m, x, [], precision={"net": "int8"}, width_steps=2,
                             narrow_factor=0.75, tag="t")
    keys = {p.key for p in probes}
    for w in (16, 12, 9):
        seg = "seg:net@t" if w == 16 else f"seg:net:net.width={w}@t"
        assert seg in keys and f"layer:net/lstm_layer={w}@t" in keys, (w, sorted(keys))
        assert f"null:layer:net/lstm_layer={w}@t" in keys
    assert pm.governs == {"net/lstm_layer": "net.width"}  # D does not change an LSTM layer
    for d in (6, 4):  # the embedding axis: the whole network at each narrowed D
        assert f"seg:net:net.embedding={d}@t" in keys
    for p in probes:
        assert all(t.is_contiguous() for t in p.inputs)
        with torch.no_grad():
            out = p.module(*p.inputs)
        flat = torch.utils._pytree.tree_leaves(out)
        assert flat and all(isinstance(t, torch.Tensor) for t in flat), p.key
    layer = next(p for p in probes if p.key == "layer:net/lstm_layer=9@t")
    assert layer.inputs[0].shape[-1] == 2 * 9


def m_pad_right(name: str, index: int) -> int:
    """Look-ahead frames of block `index` of preset `name` as built."""
    return registry.build(name).tcn.blocks[index].pad[1]


def test_config_scores_are_the_family_s():
    ok = from_dict(RunConfig, {"model": {"name": NAME}, "evolve": {"score": "si_sdr"}})
    assert ok.evolve.score == "si_sdr"
    with pytest.raises(ConfigError, match="evolve.score"):
        from_dict(RunConfig, {"model": {"name": NAME}, "evolve": {"score": "sim_stoi"}})
    with pytest.raises(ConfigError, match="evolve.score"):
        from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest"},
                              "evolve": {"score": "si_sdr"}})


def test_demo_config_validates():
    out = subprocess.run([sys.executable, "-m", "compress", "validate",
                          str(ROOT / "configs" / "separation-demo.yaml")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok" in out.stdout


@pytest.mark.slow
def test_compress_run_end_to_end(tmp_path):
    """Every stage on the tiny dense separator; the report has the SVC run's keys. fp32: with
    int8 the precision plan passes (34.9 dB) but the per-group sensitivity of 20 groups took
    the run past 10 minutes here, so the int8 path is left to a benchmark run."""
    cfg = tmp_path / "ut.yaml"
    cfg.write_text(UT_CONFIG)
    run = tmp_path / "run"
    env = dict(os.environ, LHQ_MOBILE_LATENCY_CACHE=str(tmp_path / "latency_cache"),
               OMP_NUM_THREADS="1")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "compress", "run", str(cfg), "--out", str(run)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    print(f"\ncompress run: {time.time() - t0:.0f} s")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rep = json.loads((run / "report.json").read_text())
    assert rep["family"] == "separation"
    for k in ("speedup", "speedup_breakdown", "budget_met", "quality_retention", "teacher",
              "student", "evolution", "precision_plan", "artifacts", "latency_table",
              "quant_sensitivity", "distill_guard", "verdict", "stages"):
        assert k in rep, k
    assert set(rep["teacher"]["scores"]) == {"si_sdr", "si_sdri", "sdr"}
    assert set(rep["student"]["scores"]) == {"si_sdr", "si_sdri", "sdr"}
    pte = next(iter(rep["artifacts"].values()))
    assert Path(pte).is_file() and pte.endswith(".pte")
    distill = json.loads((run / "05_distill" / "done.json").read_text())["result"]["record"]
    assert distill["steps"] == 4 and distill["kept"] in ("distilled", "undistilled")
    assert "teacher's stems" in distill["loss"]
    evo = rep["evolution"]
    assert all(h["action"] in ("remove", "start", "applied") for h in evo), evo
    assert rep["student"]["params"] <= rep["teacher"]["params"]


def test_latency_plan_measures_the_narrowed_network_and_its_layers():
    """The width unit reaches the latency table: one segment probe of the whole network per
    narrowed width, and every layer kind probed again at it (the growth rate sets both a
    layer's input and its output channels), so the search can value narrowing."""
    from compress.latency_probe import plan_probes

    r = SeparationRecipe()
    m = registry.build(NAME).eval()
    x = registry.get(NAME).example_inputs(m)
    pm, probes = plan_probes(r, m, x, [], precision={"net": "fp32"}, width_steps=2,
                             narrow_factor=0.75, tag="t")
    keys = {p.key for p in probes}
    narrowed = sum(narrow_widths_twice(m.block_widths))
    assert {"seg:net@t", f"seg:net:net.width={sum([3] * 9 + [6])}@t",
            f"seg:net:net.width={narrowed}@t"} <= keys
    assert pm.teacher_widths == {"net": {"net.width": sum(m.block_widths)}}
    kinds = {f"dense_s{i}" for i in range(5)}
    assert {k.split("/", 1)[0] for k in pm.governs} == {"net"}
    assert {k.split("/", 1)[1] for k, v in pm.governs.items() if v == "net.width"} == kinds
    for kind in kinds:
        for w in (sum(m.block_widths), sum([3] * 9 + [6]), narrowed):
            key = f"layer:net/{kind}={w}@t"
            assert key in keys and f"null:{key}" in keys, key
    by_key = {p.key: p for p in probes}
    seg = by_key[f"seg:net:net.width={narrowed}@t"]
    assert sum(p.numel() for p in seg.module.parameters()) < sum(
        p.numel() for p in m.net.parameters())


def narrow_widths_twice(growths):
    from models.separation.nets import narrow_widths

    return narrow_widths(narrow_widths(growths, 0.75), 0.75)


def _musdb(root: Path, sr: int = 8000) -> Path:
    import numpy as np
    import soundfile as sf

    for split, names in (("train", ["a", "b"]), ("test", ["c", "d"])):
        for i, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True)
            rng = np.random.default_rng(len(name) + i + (split == "test") * 10)
            t = np.arange(3 * sr) / sr
            voc = 0.3 * np.sin(2 * np.pi * (220 + 50 * i) * t) * (t % 1.0 < 0.7)
            acc = 0.1 * rng.standard_normal(t.size)
            st = lambda x: np.stack([x, 0.7 * x], 1).astype("f4")  # noqa: E731
            for stem, x in (("vocals", voc), ("accompaniment", acc), ("mixture", voc + acc)):
                sf.write(d / f"{stem}.wav", st(x), sr)
    return root


def test_distillation_pulls_the_student_to_the_teacher_and_the_guard_keeps_the_better(
        tmp_path, monkeypatch):
    import compress.recipes.separation as sep_recipe
    from compress.recipes.base import DataSplits

    root = _musdb(tmp_path / "musdb")
    cfg = from_dict(RunConfig, {
        "model": {"name": NAME}, "export": {"chunk_seconds": 0.5},
        "train": {"batch_size": 2},
        "evolve": {"score": "si_sdr", "val_clips": 2, "val_seconds": 1.0, "screen_clips": 0},
        "distill": {"steps_per_stage": 25, "lr": 0.01, "guard": False}})
    data = DataSplits(str(root), ("a", "b"), ("c",), ("d",))
    r = SeparationRecipe()
    r.configure(cfg)
    torch.manual_seed(0)
    teacher, student = registry.build(NAME).eval(), registry.build(NAME).eval()
    mix = r.example_inputs(student, data, "train", 2, 0.5)
    monkeypatch.setattr(sep_recipe, "DISTILL_WEIGHT", 1.0)  # the teacher's stems alone

    def gap() -> float:
        with torch.no_grad():
            return sum(float((student(*x) - teacher(*x)).abs().mean()) for x in mix)

    g0 = gap()
    rec = r.distill(student, data, cfg, tmp_path, lambda s: None, teacher=teacher)
    assert rec["steps"] == 25 and "teacher's stems" in rec["loss"] and "guard" not in rec
    assert gap() < 0.5 * g0
    # the guard scores val before and after and keeps the better weights
    guarded = replace(cfg, distill=replace(cfg.distill, guard=True, steps_per_stage=5))
    rec = r.distill(student, data, guarded, tmp_path, lambda s: None, teacher=teacher)
    g = rec["guard"]
    assert len(g["undistilled"]["items"]) == 2 and g["score"] == "si_sdr"
    better = g["distilled"]["value"] > g["undistilled"]["value"]
    assert rec["kept"] == ("distilled" if better else "undistilled")
    # a distillation the val score says is worse (the real scorer's drop by 100 dB on the
    # second call) leaves the undistilled weights exactly
    real = r.scorer

    def worse_after(*a, **k):
        run, calls = real(*a, **k), []

        def scored(subject, tag, first=None):
            res = run(subject, tag, first)
            calls.append(tag)
            return replace(res, value=res.value - 100.0 * (len(calls) > 1))
        return scored

    monkeypatch.setattr(r, "scorer", worse_after)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rec = r.distill(student, data, guarded, tmp_path, lambda s: None, teacher=teacher)
    assert rec["kept"] == "undistilled"
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    assert r.distill(student, data, cfg, tmp_path, lambda s: None) == {
        "skipped": "no teacher given"}
