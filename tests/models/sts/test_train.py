"""Speech-to-singing training (MTL loss, schedule, validation, best / last checkpoints, resume
after a kill) and the held-out evaluation of §3.1, with sts-unittest on a tiny corpus."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.checkpoint import load_model, load_state, read_header
from models.errors import CheckpointError, ModelsError
from models.sts.data import StsData, StsDataError, write_toy_corpus
from models.sts.evaluate import evaluate_sts
from models.sts.net import SYSTEMS
from models.sts.train import (
    PRESET_TRAINING,
    StsTrainConfig,
    StsTrainer,
    run_finished,
    train_sts,
)

N_PHONEMES = 14  # the toy corpus's list
CFG = replace(PRESET_TRAINING["sts-unittest"], steps=20, val_every=10, ckpt_every=5,
              log_every=5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's toy corpus (shared with test_data.py and its pYIN cache)."""
    root = tmp_path_factory.getbasetemp() / "sts_toy_corpus"
    if not (root / "meta.json").exists():
        write_toy_corpus(root)
    return root


def _model(**overrides):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return registry.build("sts-unittest", **{"phonemes": N_PHONEMES, **overrides})


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("sts_run")
    model = _model()
    data = StsData(corpus, min_units=CFG.min_units, versions=CFG.versions)
    before = StsTrainer(model, "sts-unittest", data, out / "probe", CFG, False).validate()
    path = train_sts(model, "sts-unittest", corpus, out / "run", CFG, show_progress=False)
    return model, path, before, data


def test_config_validates_and_presets_are_registered():
    cfg = StsTrainConfig()
    assert (cfg.batch, cfg.lr, cfg.lr_decay, cfg.epoch_steps, cfg.steps) == (
        16, 0.002, 0.92, 1000, 14000)
    assert cfg.lr_at(999) == 0.002 and cfg.lr_at(2000) == pytest.approx(0.002 * 0.92**2)
    with pytest.raises(ModelsError) as exc:
        StsTrainConfig(batch=0, select_by="rca", lr_decay=1.5)
    msg = str(exc.value)
    assert "batch=0" in msg and "select_by='rca'" in msg and "lr_decay=1.5" in msg
    assert PRESET_TRAINING and set(PRESET_TRAINING) <= set(registry.names())
    assert {registry.get(n).family for n in PRESET_TRAINING} == {"sts"}


def test_a_run_stopped_early_continues_when_the_patience_or_steps_are_raised():
    cfg = StsTrainConfig(steps=400, patience=3)
    early = {"stopped": "early", "step": 400, "since_best": 3}
    assert run_finished(early, cfg)
    assert not run_finished(early, replace(cfg, steps=1000, patience=10))
    assert run_finished(early, replace(cfg, steps=1000))  # same patience: still done
    assert run_finished({**early, "step": 1000}, replace(cfg, steps=1000, patience=10))
    assert run_finished({"stopped": "steps", "step": 400, "since_best": 0}, cfg)
    assert not run_finished({"stopped": "steps", "step": 400}, replace(cfg, steps=401))
    assert not run_finished({"stopped": None, "step": 200}, cfg)


def test_training_lowers_the_loss_and_writes_checkpoints_logs_and_plot(trained, corpus):
    _, path, before, data = trained
    out = path.parent
    h = read_header(path)
    prog = h.extra["progress"]
    assert prog["step"] == 20 and prog["validations"] == 2 and prog["stopped"] == "steps"
    assert h.extra["phonemes"] == data.phonemes and h.extra["songs"] == data.songs
    assert h.extra["train_config"]["steps"] == 20
    best = h.extra["best_val"]
    assert best["loss"] < before["loss"] and best["lsd"] < before["lsd"], (before, best)
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert {"mse", "ce"} <= set(train[0]) and all(math.isfinite(r["loss"]) for r in train)
    assert [r["lr"] for r in train] == [CFG.lr_at(r["step"] - 1) for r in train]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [10, 20] and val[0]["phoneme_accuracy"] is not None
    # the logged training losses are of single random 2-crop batches (too noisy to order at 20
    # steps); the validation set is fixed, so its loss is the measure of learning
    assert val[-1]["loss"] < before["loss"]
    assert (out / "loss.png").stat().st_size > 1000
    assert (out / "last.safetensors").exists() and (out / "train_state.pt").exists()
    # the checkpoint rebuilds through the registry with the corpus's phoneme count
    loaded, header = load_model(path)
    assert loaded.cfg.phonemes == N_PHONEMES and header.model == "sts-unittest"
    # an existing run is refused without resume; a finished one is not retrained
    with pytest.raises(CheckpointError, match="exists"):
        train_sts(_model(), "sts-unittest", corpus, out, CFG, resume=False)
    train_sts(_model(), "sts-unittest", corpus, out, CFG, show_progress=False)
    assert read_header(out / "last.safetensors").extra["progress"]["step"] == 20


def test_a_phoneme_count_that_does_not_fit_the_corpus_is_refused(corpus, tmp_path):
    with pytest.raises(StsDataError, match="phonemes=14"):
        train_sts(registry.build("sts-unittest"), "sts-unittest", corpus, tmp_path, CFG)


def test_a_killed_run_resumes_to_the_uninterrupted_result(corpus, tmp_path, monkeypatch):
    train_sts(_model(), "sts-unittest", corpus, tmp_path / "a", CFG, show_progress=False)

    calls = {"n": 0}
    real = StsData.batch

    def dying(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 13:  # step 13 of 20; the last checkpoint is of step 10
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(StsData, "batch", dying)
    with pytest.raises(KeyboardInterrupt):
        train_sts(_model(), "sts-unittest", corpus, tmp_path / "b", CFG, show_progress=False)
    assert read_header(tmp_path / "b" / "last.safetensors").extra["progress"]["step"] == 10
    monkeypatch.setattr(StsData, "batch", real)
    model = _model()
    torch.manual_seed(123)  # resume must not depend on the caller's RNG
    train_sts(model, "sts-unittest", corpus, tmp_path / "b", CFG, show_progress=False)
    for name in ("last.safetensors", "model.safetensors"):
        _, sa = load_state(tmp_path / "a" / name)
        _, sb = load_state(tmp_path / "b" / name)
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)
    logs = [[(r["split"], r["step"], round(r["loss"], 5)) for r in map(
        json.loads, (tmp_path / d / "train_log.jsonl").read_text().splitlines())]
        for d in ("a", "b")]
    assert logs[0] == logs[1]  # no step logged twice, same losses


def test_evaluate_reports_lsd_rca_and_phoneme_accuracy(trained):
    model, _, _, data = trained
    res = evaluate_sts(model, data, "test", items=5, griffin_lim_iters=8)
    assert res["items"] == res["eligible"] == 2  # the two test runs with >= 1 s of speech
    assert len(res["lsd"]) == len(res["rca"]) == len(res["phoneme_accuracy"]) == 2
    assert all(np.isfinite(v) and v > 0 for v in res["lsd"])
    assert all(0.0 <= v <= 1.0 for v in res["rca"])
    assert all(0.0 <= v <= 1.0 for v in res["phoneme_accuracy"])
    for k in ("lsd", "rca", "phoneme_accuracy"):
        assert res["mean"][k] == pytest.approx(np.mean(res[k]))
        assert res["stderr"][k] == pytest.approx(np.std(res[k], ddof=1) / np.sqrt(2))
    assert evaluate_sts(model, data, "test", items=1, griffin_lim_iters=8, seed=3)["keys"] == \
        evaluate_sts(model, data, "test", items=1, griffin_lim_iters=8, seed=3)["keys"]
    pmse = _model(**{**SYSTEMS["p-mse"], "phonemes": 0})
    assert pmse.phoneme_decoder is None
    res = evaluate_sts(pmse, data, "test", items=2, griffin_lim_iters=8)
    assert res["phoneme_accuracy"] is None and res["mean"]["phoneme_accuracy"] is None
    assert np.isfinite(res["mean"]["lsd"]) and 0.0 <= res["mean"]["rca"] <= 1.0
    with pytest.raises(StsDataError, match="no val sample has >= 5 s"):
        evaluate_sts(model, data, "val", min_speech_seconds=5.0)
