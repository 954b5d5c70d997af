"""`compress run` end to end on the tiny preset, its resume after a kill, and its parts."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import CompressError
from compress.quantize import choose_fp32, layer_groups, predicted_sqnr_db, sqnr_db
from compress.svc_adapter import ChunkedSVC
from models import registry

# the tiny preset (its header says why it times no narrowed probe)
UT_CONFIG = (Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml").read_text()


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _compress(*args: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, LHQ_MOBILE_LATENCY_CACHE=str(cwd / "latency_cache"))
    return subprocess.Popen([sys.executable, "-m", "compress", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_run_resumes_after_a_kill_and_writes_the_report(tmp_path: Path) -> None:
    cfg = tmp_path / "ut.yaml"
    cfg.write_text(UT_CONFIG)
    run = tmp_path / "run"
    # 1) start, kill -9 while the latency stage runs
    p = _compress("run", str(cfg), "--out", str(run), cwd=tmp_path)
    deadline = time.time() + 600
    while not (run / "03_latency").exists():
        assert p.poll() is None, p.stdout.read() if p.stdout else ""
        assert time.time() < deadline, "the run never reached the latency stage"
        time.sleep(0.5)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (run / "03_latency" / "done.json").exists()
    done = {d: (run / d / "done.json").read_text()
            for d in ("00_data", "01_teacher", "02_robust")}
    teacher_sha = _sha(run / "01_teacher" / "model.safetensors")
    robust_sha = _sha(run / "02_robust" / "model.safetensors")
    # 2) re-run: finished stages reused untouched, the rest runs to the end
    p = _compress("run", str(cfg), "--out", str(run), cwd=tmp_path)
    out, _ = p.communicate(timeout=1500)
    assert p.returncode == 0, out
    for name in ("data", "teacher", "robust"):
        assert f"{name}: reused" in out
    assert "stage 03 latency: done" in out
    for d, text in done.items():
        assert (run / d / "done.json").read_text() == text
    assert _sha(run / "01_teacher" / "model.safetensors") == teacher_sha
    assert _sha(run / "02_robust" / "model.safetensors") == robust_sha

    rep = json.loads((run / "report.json").read_text())
    for key in ("teacher", "student"):
        for k in ("params", "size_mb", "latency_ms_per_audio_s", "rtf", "scores"):
            assert k in rep[key], (key, k)
        assert rep[key]["latency_ms_per_audio_s"] > 0
        assert 0.0 < rep[key]["scores"]["speaker_similarity"] <= 1.0
    assert rep["target"] == "host"
    assert rep["budget_ms"] > 0 and rep["speedup"] > 0
    # the budget (0.85 of the teacher architecture) is met by the chosen architecture as the
    # table predicts it whenever the table says it can be: every removal applied reaches the
    # search's aim (3 % under the budget). The tiny preset only removes (width_steps 0), and
    # what that takes off depends on how the probes time beside the other worker: 0.80 of the
    # teacher with a busy core beside it here, more in one CI run, which then ended over the
    # budget as the table predicted (the run warns up front). This test runs beside the rest
    # of the suite on the two workers (as a timing test alone it cost 4.5-7 min of the
    # suite's 20), so the measured checks allow what a loaded 2-core host does to a ~6-ms
    # program: 1.5x the limit, a table error under 50 %. Alone on a quiet host the same run
    # measured 1.0-1.17x and +7.7 %; the demo run's report and benchmarks/ are the real check.
    bud = rep["budget"]
    floor_ms = (1.0 - rep["removable_latency_fraction"]) * bud["teacher_ms"]
    final = rep["evolution_summary"]["final_latency_ms"]
    assert rep["budget_met_predicted"] is (final <= bud["budget_ms"]
                                           and rep["student"]["params"] <= bud["params_budget"])
    if floor_ms <= bud["search_ms"]:
        assert rep["budget_met_predicted"] is True, (floor_ms, bud, out)
    else:
        assert "every action to its limit is predicted at" in out
        # the fastest state the search reached
        assert final <= min(r["latency_ms"] for r in rep["evolution"]) + 1e-6, final
    chk = rep["budget_check"]
    assert chk["relative_to_teacher"]
    if rep["budget_met_predicted"]:
        assert chk["measured_ms_per_audio_s"] <= 1.5 * chk["limit_ms_per_audio_s"]
    # the table predicts the shipped student (raw, or re-anchored on the teacher programs
    # timed again beside it)
    lt = rep["latency_table"]
    assert min(abs(lt["prediction_error_pct"]), abs(lt["prediction_error_unanchored_pct"])) < 50
    bd = rep["speedup_breakdown"]
    assert set(bd) == {"steps", "runtime", "precision", "architecture"}
    assert math.prod(bd.values()) == pytest.approx(rep["speedup"], rel=1e-6)
    # the share of the teacher program inside searched components: 0.94 alone on a quiet
    # host, 0.46 measured beside two other workers (segments and whole timed apart)
    assert 0.2 < rep["searched_latency_fraction"] <= 1.0
    # the parameter budget (0.8 of the teacher's) holds too
    assert chk["params_budget"] == int(0.8 * rep["teacher"]["params"])
    assert rep["student"]["params"] <= chk["params_budget"]
    assert rep["evolution"], "the evolution made no decision"
    for r in rep["evolution"]:
        assert r["action"] in ("remove", "duplicate", "narrow") and math.isfinite(r["value"])
        assert {"round", "unit", "kind", "score", "latency_ms"} <= set(r)
    assert {r["unit"].split(".")[0] for r in rep["evolution"]} <= {
        "f0", "content", "conditioner", "decoder", "vocoder"}
    assert rep["score_noise"]["sim_stoi"] is not None and rep["score_noise"]["sim_stoi"] >= 0
    assert rep["distill_start_temperature"] == pytest.approx(
        registry.get("lhq-svc-unittest").defaults["temperature"])
    assert sum(p["chosen"] for p in rep["pareto"]) == 1
    ptes = [Path(v) for v in rep["artifacts"].values() if str(v).endswith(".pte")]
    assert ptes and all(p.is_file() and p.stat().st_size > 1000 for p in ptes)
    # the whole pipeline's program (beside it: the decoder alone, at its component's precision)
    (main,) = [Path(v) for k, v in rep["artifacts"].items() if k.startswith("pte_")]
    sidecar = json.loads(main.with_suffix(".json").read_text())
    assert sidecar["parity"]["passed"] is True
    assert sidecar["parity"]["sqnr_db"] >= 20.0
    # the suite's int8 export of the whole pipeline (test_registry_export leaves it to this
    # test): at the plan's precision, int8 when any component is, with no hot fallback
    assert rep["precision_plan"]["whole"] == "int8"
    assert sidecar["precision"] == "int8" and sidecar["delegation"]["hot_fallbacks"] == {}
    assert rep["quant_sensitivity"] and all("kept_fp32" in r for r in rep["quant_sensitivity"])
    # the decoder alone, int8 (test_registry_export leaves the decoder preset's int8 .pte to
    # this test: a trained decoder rather than a noise-filled one), parity-gated and delegated
    dec = Path(rep["artifacts"]["decoder_pte_int8"])
    dec_car = json.loads(dec.with_suffix(".json").read_text())
    assert dec_car["precision"] == "int8" and dec_car["parity"]["passed"] is True
    assert dec_car["delegation"]["hot_fallbacks"] == {}
    for o in dec_car["parity"]["outputs"]:
        assert o["scale"] > 1e-3 and (o["sqnr_db"] == "inf" or o["sqnr_db"] >= 20.0), o
    assert (run / "report.html").read_text().count("<audio") >= 3
    # 3) a finished run re-runs as a no-op
    p = _compress("run", str(cfg), "--out", str(run), cwd=tmp_path)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    assert out.count(": reused") == 10


def test_run_refuses_a_run_dir_of_another_config(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text(UT_CONFIG)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"digest": "0" * 16}))
    p = _compress("run", str(cfg), "--out", str(tmp_path / "run"), cwd=tmp_path)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 1
    assert "different config" in out and out.strip().count("\n") < 3


def test_run_rejects_a_bad_target(tmp_path: Path) -> None:
    p = _compress("run", "--target", "phone", "--out", str(tmp_path / "r"), cwd=tmp_path)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 1 and "latency target" in out


# ---- parts ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ut_pipeline() -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.get("lhq-svc-unittest").build().eval()


def test_layer_groups_split_the_decoder_and_skip_fp32_modules(ut_pipeline) -> None:
    groups = layer_groups(ut_pipeline, ut_pipeline.export_keep_fp32)
    n = len(ut_pipeline.architecture)
    assert [g for g in groups if g.startswith("decoder.blocks.")] == [
        f"decoder.blocks.{i}" for i in range(n)]
    assert "content" in groups and "conditioner" in groups
    assert not any(g.startswith(("vocoder", "f0", "mel")) for g in groups)


def test_choose_fp32_keeps_noisy_groups_until_the_floor_is_cleared() -> None:
    rows = [{"layer": "a", "sqnr_db": 40.0, "score_drop": 0.0},
            {"layer": "b", "sqnr_db": 20.0, "score_drop": 0.0},
            {"layer": "c", "sqnr_db": 35.0, "score_drop": 0.05}]
    assert predicted_sqnr_db([20.0, 20.0]) == pytest.approx(20.0 - 10 * math.log10(2))
    keep = choose_fp32(rows, score_threshold=0.02, sqnr_floor_db=20.0, margin_db=3.0)
    assert keep == ["c", "b"]  # c by its score drop, then b (a alone gives 40 dB)
    assert [r["kept_fp32"] for r in rows] == [False, True, True]
    assert choose_fp32([dict(r) for r in rows], score_threshold=1.0, sqnr_floor_db=10.0,
                       margin_db=0.0) == []


def test_sqnr_db() -> None:
    ref = [torch.ones(10)]
    assert sqnr_db(ref, [torch.ones(10)]) == math.inf
    assert sqnr_db(ref, [torch.ones(10) * 1.1]) == pytest.approx(20.0)


def test_chunked_svc_matches_the_graph_on_one_chunk_and_crossfades(ut_pipeline) -> None:
    m = ut_pipeline
    n = 2048
    calls = []

    def graph(a, s, sh):
        calls.append(tuple(a.shape))
        return [a * 0.5]

    svc = ChunkedSVC(graph, n, m.speakers, m.sample_rate, "t")
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    y = svc.convert_long(x, 0, 0.0, steps=50)
    assert y.shape == x.shape and all(c == (1, n) for c in calls)
    np.testing.assert_allclose(y, 0.5 * x, atol=1e-6)  # crossfade of equal signals
    assert svc.speaker_index(m.speakers[1]) == 1
    with pytest.raises(KeyError):
        svc.speaker_index("nobody")


def test_chunked_svc_drops_chunk_edges_and_fades_in_the_middle_of_the_overlap(ut_pipeline
                                                                               ) -> None:
    m = ut_pipeline
    n, edge = 2048, 20  # overlap 512; a 10 ms fade at 16 kHz is 160 samples: 176 dropped

    def graph(a, s, sh):  # right in the middle, garbage at both edges of every chunk
        y = a * 0.5
        y[..., :edge] = 99.0
        y[..., -edge:] = 99.0
        return y

    x = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
    y = ChunkedSVC(graph, n, m.speakers, 16000, "t").convert_long(x, 0, 0.0)
    np.testing.assert_allclose(y[edge:], 0.5 * x[edge:], atol=1e-6)  # no chunk edge kept
    wide = ChunkedSVC(graph, n, m.speakers, 16000, "t", fade_seconds=512 / 16000)
    assert np.abs(wide.convert_long(x, 0, 0.0)[edge:] - 0.5 * x[edge:]).max() > 1.0
    with pytest.raises(CompressError, match="fade_seconds"):
        ChunkedSVC(graph, n, m.speakers, 16000, "t", fade_seconds=0.0)


def test_speedup_breakdown_is_a_product_of_measured_factors() -> None:
    from compress.pipeline import speedup_breakdown

    p50 = {"teacher_eager_steps": 640.0, "teacher_eager_device": 48.0,
           "teacher_pte_fp32": 30.0, "teacher_pte_plan": 24.0, "student_pte": 12.0}
    speedup, bd = speedup_breakdown(p50)
    assert speedup == pytest.approx(640.0 / 12.0)
    assert bd == pytest.approx({"steps": 640 / 48, "runtime": 48 / 30, "precision": 30 / 24,
                                "architecture": 2.0})
    assert math.prod(bd.values()) == pytest.approx(speedup, rel=1e-12)
    with pytest.raises(CompressError, match="teacher_pte_plan"):
        speedup_breakdown({**p50, "teacher_pte_plan": float("nan")})


def test_data_splits_are_disjoint_by_song(tmp_path: Path) -> None:
    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.recipes import recipe_for
    from compress.recipes.base import DataSplits

    cfg = from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest"},
                                "data": {"singers": 2, "minutes": 0.3,
                                         "held_out_songs": 4}})
    r = recipe_for(cfg.model.name)
    r.configure(cfg)
    d = r.load_data(cfg, tmp_path, lambda s: None)
    d.check()
    assert set(d.train).isdisjoint(d.val) and set(d.val).isdisjoint(d.test)
    # data.held_out_songs: half decide (val), half report (test), >= 2 train
    assert len(d.val) == 2 and len(d.test) == 2 and len(d.train) >= 1
    # eval items go round robin over the split's songs: 2 items come from 2 songs
    m = registry.get("lhq-svc-unittest").build(
        speakers=r.corpus(d.root).singers, n_speakers=2).eval()
    items = r._eval_items(m, d, "val", 2, 0.5, 1)
    song_of = {c.id: c.song for c in r.corpus(d.root).clips}
    assert {song_of[es.items[0].id.split("->")[0]] for es in items} == set(d.val)
    corpus = r.corpus(d.root)
    for split in ("val", "test"):  # held-out songs only, never a training song's clip
        assert {c.song for c in r._clips(d, split)} == set(getattr(d, split))
        assert all(c.split == "test" for c in r._clips(d, split))
    assert {c.song for c in corpus.split("train")} == set(d.train)
    with pytest.raises(CompressError, match="both the train and the val split"):
        DataSplits("x", ("s1", "s2"), ("s2",), ("s3",)).check()
    with pytest.raises(CompressError, match="test split is empty"):
        DataSplits("x", ("s1",), ("s2",), ()).check()
    # decisions and the report never score training audio
    with pytest.raises(CompressError, match="never computed on the train split"):
        r.scorer(m, d, "train", items=1, seconds=0.5, chunk_seconds=0.25, score="stoi")


def test_unknown_family_is_a_clear_error(monkeypatch) -> None:
    from compress import recipes

    spec = registry.ModelSpec(name="fam-testonly", family="nofamily",
                              factory=lambda: torch.nn.Linear(2, 2), defaults={},
                              inputs=lambda m: (torch.zeros(1, 2),),
                              audio=registry.AudioMeta(sample_rate=16000))
    registry.names()
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    with pytest.raises(CompressError, match="no recipe for family 'nofamily'.*lhq-svc"):
        recipes.recipe_for("fam-testonly")


def test_vocoder_fine_tune_serves_both_vocoder_kinds(tmp_path: Path) -> None:
    """The recipe's vocoder fine-tune (output distillation from the teacher's vocoder) calls
    a MelGAN vocoder with the mel alone and the harmonic-plus-noise one with mel and F0 (the
    paper-sized preset's MelGAN once failed here, mid-search)."""
    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.recipes import recipe_for
    from compress.recipes.base import Action

    cfg = from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest"},
                                "data": {"singers": 2, "minutes": 0.3}})
    r = recipe_for(cfg.model.name)
    r.configure(cfg)
    d = r.load_data(cfg, tmp_path, lambda s: None)
    singers = r.corpus(d.root).singers
    for kind in ("melgan", "hn"):
        teacher = registry.get("lhq-svc-unittest").build(
            speakers=singers, n_speakers=2, vocoder_kind=kind).eval()
        student = registry.get("lhq-svc-unittest").build(
            speakers=singers, n_speakers=2, vocoder_kind=kind).eval()
        student.load_state_dict(teacher.state_dict())
        torch.manual_seed(0)
        with torch.no_grad():  # a student that differs from its teacher (as a narrowed one)
            for p in student.vocoder.parameters():
                p.add_(0.05 * torch.randn_like(p))
        before = [p.detach().clone() for p in student.vocoder.parameters()]
        rec = r.finetune(student, teacher, Action("narrow", "vocoder.width", 0.5), d, 2, 0)
        assert rec and math.isfinite(float(rec.get("loss_end", rec.get("loss", 0.0))))
        moved = max(float((a - b.detach()).abs().max())
                    for a, b in zip(before, student.vocoder.parameters()))
        assert moved > 0.0, (kind, rec)  # the vocoder was trained, not skipped


def test_finetune_key_tracks_what_a_finetune_reads_and_a_rerun_is_identical(tmp_path: Path
                                                                             ) -> None:
    """Evolution reuses a narrowed candidate's fine-tune when nothing it reads changed
    (`finetune_key`): the key moves with the read components' weights and architecture, not
    with the others, and re-running the same fine-tune on the same inputs gives the same
    weights (what makes the reuse exact)."""
    import copy

    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.pipeline import finetune_key
    from compress.recipes import recipe_for
    from compress.recipes.base import Action

    cfg = from_dict(RunConfig, {"model": {"name": "lhq-svc-unittest"},
                                "data": {"singers": 2, "minutes": 0.3}})
    r = recipe_for(cfg.model.name)
    r.configure(cfg)
    d = r.load_data(cfg, tmp_path, lambda s: None)
    torch.manual_seed(0)
    teacher = registry.get("lhq-svc-unittest").build(
        speakers=r.corpus(d.root).singers, n_speakers=2).eval()
    model = copy.deepcopy(teacher)
    content = Action("narrow", "content.width", 0.5)
    r.apply(model, content)
    k = finetune_key(r, model, content, 7)
    assert k is not None and k == finetune_key(r, copy.deepcopy(model), content, 7)
    assert k[1] == ("content",)  # what it writes
    assert k != finetune_key(r, model, content, 8)  # the seed
    other = copy.deepcopy(model)
    r.apply(other, Action("remove", "vocoder.stacks.0.layers.0"))  # not read by content's
    with torch.no_grad():
        next(other.decoder.parameters()).add_(1.0)
    assert finetune_key(r, other, content, 7) == k
    with torch.no_grad():
        next(other.content.parameters()).add_(1e-3)
    assert finetune_key(r, other, content, 7) != k
    voc = Action("narrow", "vocoder.width", 0.5)  # reads the F0 path's architecture too
    strided = copy.deepcopy(model)
    r.apply(strided, Action("narrow", "f0.rate"))
    assert finetune_key(r, strided, voc, 7) != finetune_key(r, model, voc, 7)
    assert r.finetune_scope(model, Action("narrow", "f0.rate")) == ((), ())
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    for m in (a, b):
        r.finetune(m, teacher, content, d, 3, 7)
    for (name, x), y in zip(a.content.state_dict().items(), b.content.state_dict().values(),
                            strict=True):
        assert torch.equal(x, y), name
    assert any(not torch.equal(x, model.content.state_dict()[n])  # it did train
               for n, x in a.content.state_dict().items())


def test_a_saved_table_decides_only_when_it_has_the_teacher_at_both_precisions() -> None:
    """The latency stage times nothing when a saved table has every probe and the whole
    teacher program at the plan's precision and at fp32 (benchmarks/kill_anywhere.py runs it
    end to end: 20 killed runs decide as the uninterrupted one)."""
    from compress import latency_probe as lp
    from compress.latency_table import LatencyStats, LatencyTable
    from compress.pipeline import _saved_whole

    table = LatencyTable("host", {"kind": "host"})
    plan = {lp.WHOLE: "int8"}
    int8, fp32 = LatencyStats.from_samples([4.0, 4.2]), LatencyStats.from_samples([9.0, 9.5])
    table.add(lp.whole_key("t"), lp.SHAPE, "int8", int8)
    assert _saved_whole(table, "t", plan) is None  # no fp32 program: it must be timed
    table.add(lp.whole_key("t"), lp.SHAPE, "fp32", fp32)
    known = _saved_whole(table, "t", plan)
    assert known is not None
    assert known["teacher_plan"].p50_ms == int8.p50_ms
    assert known["teacher_fp32"].p50_ms == fp32.p50_ms
    assert _saved_whole(table, "other", plan) is None  # another teacher's tag
    fp32_plan = _saved_whole(table, "t", {lp.WHOLE: "fp32"})
    assert fp32_plan is not None and fp32_plan["teacher_plan"].p50_ms == fp32.p50_ms
