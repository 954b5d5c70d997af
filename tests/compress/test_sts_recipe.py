"""The speech-to-singing recipe of `compress run` (compress/recipes/sts.py) on a toy corpus:
splits, checkpoints, units and actions, the device program's inputs and chunked runs, the
scores, fine-tuning and the latency probes' capture."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compress.errors import CompressError
from compress.latency_probe import capture, plan_probes
from compress.recipes import recipe_for
from compress.recipes.base import Action
from compress.recipes.sts import GRU_UNIT, WIDTH_UNIT, StsRecipe, chunk_frames, run_chunks
from models.sts.data import write_toy_corpus
from models.sts.program import StsDeviceProgram

CHUNK_SECONDS = 0.25  # 17 frames -> 24


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.getbasetemp() / "sts_toy_corpus"
    if not (root / "meta.json").exists():
        write_toy_corpus(root)
    return root


def _cfg(corpus: Path):  # type: ignore[no-untyped-def]
    """The fields of a RunConfig the recipe reads."""
    return SimpleNamespace(
        model=SimpleNamespace(name="sts-unittest"),
        data=SimpleNamespace(source="folder", path=str(corpus)),
        train=SimpleNamespace(steps=4, batch_size=2, lr=0.002, seed=0),
        robust=SimpleNamespace(steps=2, lr=3e-4),
        export=SimpleNamespace(chunk_seconds=CHUNK_SECONDS),
        distill=SimpleNamespace(guard=True, steps_per_stage=2, lr=3e-4),
        evolve=SimpleNamespace(val_clips=2, val_seconds=1.5, score="neg_lsd_db"),
        seed=0,
    )


@pytest.fixture(scope="module")
def setup(corpus: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    recipe = recipe_for("sts-unittest")
    cfg = _cfg(corpus)
    out = tmp_path_factory.mktemp("sts_recipe")
    splits = recipe.load_data(cfg, out, lambda s: None)
    torch.manual_seed(0)
    path = recipe.train_teacher(cfg, splits, out / "teacher", lambda s: None)
    return recipe, cfg, splits, path, out


def test_recipe_is_registered_and_chunk_frames_are_multiples_of_8():
    assert isinstance(recipe_for("sts-demo"), StsRecipe)
    assert chunk_frames(0.25) == 24  # 17 frames -> 24
    assert chunk_frames(127 * 256 / 16000) == 128
    assert all(chunk_frames(s) % 8 == 0 for s in (0.01, 0.5, 1.0, 2.0, 3.3))
    with pytest.raises(CompressError, match="chunk_seconds"):
        chunk_frames(0.0)


def test_splits_are_the_trainers_and_disjoint(setup):
    recipe, _cfg, splits, _path, _out = setup
    splits.check()
    data = recipe.sts_data(splits.root)
    assert list(splits.train) == data.songs["train"] and list(splits.test) == data.songs["test"]
    assert splits.info["samples"]["val"] == len(data.val) > 0


def test_checkpoint_round_trip_and_family_check(setup, tmp_path):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    assert isinstance(model, StsDeviceProgram)
    x = recipe.example_inputs(model, splits, "val", 1, CHUNK_SECONDS)[0]
    again = recipe.load(recipe.save(model, tmp_path / "m.safetensors", {"stage": "test"}))
    with torch.no_grad():
        torch.testing.assert_close(again(*x)[0], model(*x)[0], rtol=0, atol=0)
    with pytest.raises(CompressError, match="StsDeviceProgram"):
        recipe.units(torch.nn.Linear(2, 2))


def test_narrowing_both_units_rebuilds_from_the_checkpoint(setup, tmp_path):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    units = {u.name: u for u in recipe.units(model)}
    assert set(units) == {WIDTH_UNIT, GRU_UNIT}
    assert units[WIDTH_UNIT].width == 24 and units[GRU_UNIT].width == 8  # 6 x 4 channels
    before = sum(p.numel() for p in model.net.parameters())
    recipe.apply(model, Action("narrow", WIDTH_UNIT, 0.75))
    recipe.apply(model, Action("narrow", GRU_UNIT, 0.75))
    assert list(model.net.cfg.channels) == [3] * 6 and model.net.cfg.gru_hidden == 6
    assert sum(p.numel() for p in model.net.parameters()) < before
    x = recipe.example_inputs(model, splits, "val", 1, CHUNK_SECONDS)[0]
    assert [tuple(t.shape) for t in x[2:]] == [(1, 1, 6), (1, 1, 6)]
    again = recipe.load(recipe.save(model, tmp_path / "n.safetensors", {"stage": "test"}))
    with torch.no_grad():
        torch.testing.assert_close(again(*x)[0], model(*x)[0], rtol=0, atol=0)
    assert recipe.architecture(again)["channels"] == [3] * 6
    for _ in range(3):  # down to the minimum width, then the unit is spent
        with contextlib.suppress(CompressError):
            recipe.apply(model, Action("narrow", WIDTH_UNIT, 0.5))
    assert max(model.net.cfg.channels) == 2
    assert recipe.units(model)[0].actions == ()
    with pytest.raises(CompressError, match="narrowed"):
        recipe.apply(model, Action("remove", WIDTH_UNIT))
    with pytest.raises(CompressError, match="units are"):
        recipe.apply(model, Action("narrow", "net.encoder1", 0.5))


def test_example_inputs_are_real_chunks_with_zero_states(setup):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    xs = recipe.example_inputs(model, splits, "train", 3, CHUNK_SECONDS)
    assert len(xs) == 3
    for x, c, h1, h2 in xs:
        assert x.shape == c.shape == (1, 513, 24) and x.dtype == torch.float32
        assert float(x.abs().sum()) > 0 and set(torch.unique(c).tolist()) <= {0.0, 1.0}
        assert h1.shape == h2.shape == (1, 1, 8) and float(h1.abs().sum()) == 0.0
    assert recipe.audio_seconds(model, xs[0]) == pytest.approx(24 * 256 / 16000)
    groups = recipe.int8_groups(model)
    assert groups[:4] == ["net.encoder1.gru", "net.encoder1.proj", "net.encoder2.gru",
                          "net.encoder2.proj"] and len(groups) == 4 + 6 + 1
    keep = recipe.keep_fp32(model)
    assert "net.encoder1.blocks" in keep and "net.encoder2.norm" in keep
    for g in groups:
        model.get_submodule(g)
        assert not any(g == k or g.startswith(k + ".") for k in keep)


def test_run_chunks_carries_the_states_and_matches_a_manual_loop(setup):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    data = recipe.sts_data(splits.root)
    x, c, _y, _ = data.arrays(data.val[0], 0)
    t = x.shape[1]
    got = run_chunks(model, x, c, 8)
    assert got.shape == x.shape and np.isfinite(got).all() and got.min() >= 0
    n = -(-t // 8)
    xp = np.zeros((513, n * 8), np.float32)
    cp = np.zeros_like(xp)
    xp[:, :t], cp[:, :t] = x, c
    state = model.initial_state()
    outs = []
    with torch.no_grad():
        for i in range(n):
            y, *state = model(torch.from_numpy(xp[None, :, i * 8:(i + 1) * 8]),
                              torch.from_numpy(cp[None, :, i * 8:(i + 1) * 8]), *state)
            outs.append(y[0].numpy())
    np.testing.assert_array_equal(got, np.concatenate(outs, axis=1)[:, :t])
    # the same chunks without the carried states give another output: the state matters
    stateless = np.concatenate([run_chunks(model, x[:, i * 8:(i + 1) * 8],
                                           c[:, i * 8:(i + 1) * 8], 8)
                                for i in range(n)], axis=1)
    assert np.abs(stateless - got).max() > 1e-6


def test_scores_on_held_out_samples(setup):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    with pytest.raises(CompressError, match="train split"):
        recipe.scorer(model, splits, "train", items=2, seconds=1.5,
                      chunk_seconds=CHUNK_SECONDS, score="neg_lsd_db")
    with pytest.raises(CompressError, match="has neg_lsd_db, rca"):
        recipe.scorer(model, splits, "val", items=2, seconds=1.5,
                      chunk_seconds=CHUNK_SECONDS, score="sdr")
    res = recipe.evaluate(model, "teacher", model, splits, "test", items=2, seconds=1.5,
                          chunk_seconds=CHUNK_SECONDS, teacher_steps=None)
    assert set(res) == {"neg_lsd_db", "rca"}
    assert all(-200 < v < 0 for v in res["neg_lsd_db"].items)
    assert all(0.0 <= v <= 1.0 for v in res["rca"].items)
    # a lowered program is any callable with the device signature: states start at zero
    score = recipe.scorer(model, splits, "test", items=2, seconds=1.5,
                          chunk_seconds=CHUNK_SECONDS, score="neg_lsd_db")
    direct = score(model, "m")
    as_callable = score(lambda *a: model(*a), "callable")
    assert as_callable.items == direct.items == res["neg_lsd_db"].items


def test_finetune_and_guarded_distillation(setup):
    recipe, cfg, splits, path, out = setup
    teacher = recipe.load(path)
    student = recipe.load(path)
    recipe.configure(cfg)
    recipe.apply(student, Action("narrow", GRU_UNIT, 0.5))
    rec = recipe.finetune(student, teacher, Action("narrow", GRU_UNIT, 0.5), splits, 3, 0)
    assert rec["steps"] == 3 and np.isfinite([rec["loss_start"], rec["loss_end"]]).all()
    assert not student.training
    said: list[str] = []
    rec = recipe.distill(student, splits, cfg, out, said.append, teacher)
    assert rec["kept"] in {"distilled", "undistilled"} and said
    g = rec["guard"]
    assert g["score"] == "neg_lsd_db" and len(g["undistilled"]["items"]) == 2


def test_latency_capture_sees_the_network_inside_the_program(setup):
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    xs = recipe.example_inputs(model, splits, "val", 2, CHUNK_SECONDS)
    prog = recipe.device_program(model)
    got = capture(prog, model, list(recipe.components(model).values()), xs)
    args, _kw = got["net"][0]
    assert [tuple(a.shape) for a in args] == [(1, 513, 24), (1, 513, 24), (1, 1, 8), (1, 1, 8)]
    with torch.no_grad():
        direct = model.net(*args)
        torch.testing.assert_close(direct[0], prog(*xs[0])[0])


def test_latency_probes_of_a_narrowed_gru_get_states_of_its_width(setup):
    """The latency table captures every narrowed variant with the teacher's audio chunks; a
    narrowed GRU needs zero states of its own width (the demo run failed there: h1 (1, 1, 48)
    expected, (1, 1, 64) given)."""
    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    xs = recipe.example_inputs(model, splits, "val", 2, CHUNK_SECONDS)
    narrow = recipe.load(path)
    recipe.apply(narrow, Action("narrow", GRU_UNIT, 0.5))
    fitted = recipe.inputs_for(narrow, xs[0])
    assert [tuple(t.shape) for t in fitted] == [(1, 513, 24), (1, 513, 24), (1, 1, 4), (1, 1, 4)]
    assert fitted[0] is xs[0][0] and float(fitted[2].abs().sum()) == 0.0
    with torch.no_grad():
        recipe.device_program(narrow)(*fitted)
    _pm, probes = plan_probes(recipe, model, xs[0], xs[1:], precision={}, width_steps=1,
                              narrow_factor=0.5, tag="t")
    states = {tuple(p.inputs[-1].shape) for p in probes if len(p.inputs) == 4}
    gru_in = {tuple(p.inputs[0].shape) for p in probes if "gru" in p.key}
    assert probes and gru_in, [p.key for p in probes]
    assert states <= {(1, 1, 8), (1, 1, 4)}


@pytest.mark.slow
def test_int8_by_groups_loads_in_the_runtime(setup):
    """The export stage quantizes only the recipe's int8 groups; a concatenation left between
    two of them (the decoder's skips, E1 ⊕ E2) used to lower to an XNNPACK cat with mixed
    scales that failed to load (every group of the sts-demo student fell back to fp32)."""
    from export.calibration import CalibrationSet
    from export.parity import sqnr_db
    from export.pte import lower_to_xnnpack, quantize_pt2e_xnnpack, torch_export
    from export.runtime import PteRunner

    recipe, _cfg, splits, path, _out = setup
    model = recipe.load(path)
    xs = recipe.example_inputs(model, splits, "train", 3, 0.1)  # 8 frames: one latent frame
    prog = recipe.device_program(model)
    with torch.no_grad():
        ref = prog(*xs[0])
        graph = quantize_pt2e_xnnpack(prog, xs[0], CalibrationSet([tuple(x) for x in xs],
                                                                  {"kind": "test"}),
                                      keep_fp32=list(recipe.keep_fp32(model)),
                                      only_modules=recipe.int8_groups(model))
        data, _ = lower_to_xnnpack(torch_export(graph, xs[0], None, "sts"), {"name": "sts"})
    out = PteRunner(data, threads=1)(*xs[0])
    assert sqnr_db(ref[0], out[0]) > 15.0


UT_CONFIG = """\
name: sts-ut
model: {name: sts-unittest}
data: {source: folder, path: CORPUS}
train: {steps: 6, batch_size: 2, lr: 0.002}
robust: {steps: 2}
latency: {warmup: 1, iterations: 5, repeats: 2, width_steps: 0, validate: false}
evolve: {budget_fraction: 0.99, params_fraction: null, score: neg_lsd_db, max_rounds: 2,
         finetune_steps: 2, duplicate_candidates: 0, swap_candidates: 0, val_clips: 2,
         val_seconds: 1.0, screen_clips: 1, screen_keep: 1, narrow_factor: 0.75,
         narrow_finetune_steps: 2}
distill: {steps_per_stage: 2}
quantize: {calibration_clips: 2, sensitivity_threshold: 1.0}
export: {chunk_seconds: 0.1, precision: fp32}
bench: {iterations: 5, warmup: 1, repeats: 2, teacher_steps: 1, eval_clips: 2, eval_seconds: 1.0}
"""


def test_demo_config_validates():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "compress", "validate",
                          str(root / "configs" / "sts-demo.yaml")],
                         capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok" in out.stdout


@pytest.mark.slow
def test_compress_run_end_to_end(corpus, tmp_path):
    """Every stage on sts-unittest with 8-frame chunks (one latent frame: the GRUs unroll
    once, so each program lowers in seconds); fp32 (the int8 path is the demo config's)."""
    import json
    import os
    import subprocess
    import sys
    import time

    cfg = tmp_path / "ut.yaml"
    cfg.write_text(UT_CONFIG.replace("CORPUS", str(corpus)))
    run = tmp_path / "run"
    env = dict(os.environ, LHQ_MOBILE_LATENCY_CACHE=str(tmp_path / "latency_cache"),
               OMP_NUM_THREADS="1")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "compress", "run", str(cfg), "--out", str(run)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    print(f"\ncompress run: {time.time() - t0:.0f} s")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rep = json.loads((run / "report.json").read_text())
    assert rep["family"] == "sts"
    for k in ("speedup", "budget_met", "quality_retention", "teacher", "student", "evolution",
              "precision_plan", "artifacts", "verdict", "stages"):
        assert k in rep, k
    assert set(rep["teacher"]["scores"]) == {"neg_lsd_db", "rca"}
    assert set(rep["student"]["scores"]) == {"neg_lsd_db", "rca"}
    pte = next(iter(rep["artifacts"].values()))
    assert Path(pte).is_file() and pte.endswith(".pte")
    distill = json.loads((run / "05_distill" / "done.json").read_text())["result"]["record"]
    assert distill["steps"] == 2 and "teacher's output" in distill["loss"]
    assert rep["student"]["params"] <= rep["teacher"]["params"]
