"""Training: each component's loss goes down; `compress train` checkpoints, logs and resumes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from compress.cli import main
from models import registry
from models.checkpoint import read_header
from models.lhq_svc.data import load_corpus
from models.lhq_svc.train import PRESET_TRAINING, Trainer


@pytest.fixture(scope="module")
def corpus(svc_corpus):
    return load_corpus(svc_corpus)


def test_corpus_reports_the_voice_noise_it_was_rendered_with(corpus, svc_corpus, tmp_path):
    from models.data.corpus import VOICE_NOISE

    assert corpus.voice_noise == VOICE_NOISE
    # a corpus written before the knob (no config.voice_noise in meta.json) had scale 1
    old = tmp_path / "old"
    shutil.copytree(svc_corpus, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["config"]["voice_noise"]
    (old / "meta.json").write_text(json.dumps(meta))
    assert load_corpus(old, max_clips=1).voice_noise == 1.0


@pytest.mark.parametrize("component,steps", [("content", 25), ("vocoder", 25), ("decoder", 40)])
def test_loss_decreases_on_a_fixed_batch(corpus, tmp_path, component, steps):
    torch.manual_seed(0)
    model = registry.build("lhq-svc-unittest", n_speakers=len(corpus.singers),
                           speakers=corpus.singers, n_phonemes=len(corpus.phonemes))
    trainer = Trainer(model, "lhq-svc-unittest", corpus, tmp_path,
                      PRESET_TRAINING["lhq-svc-unittest"], show_progress=False)
    fn, params, lr = trainer._setup(component)
    opt = torch.optim.Adam(params, lr=lr * (5 if component == "vocoder" else 1))
    model.train()
    losses = []
    for i in range(steps):
        torch.manual_seed(0)  # same batch, same noise / t every step
        losses.append(fn(np.random.default_rng(0), opt, i))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_compress_train_writes_logs_and_resumes(svc_corpus, tmp_path):
    out = tmp_path / "ck"
    args = ["train", "--model", "lhq-svc-unittest", "--data", str(svc_corpus), "--out", str(out),
            "--steps", "3"]
    assert main(args) == 0
    h = read_header(out)
    assert h.extra["progress"] == {"content": 3, "vocoder": 3, "decoder": 3}
    assert h.extra["speakers"] == ["singer00", "singer01"]
    # per-singer F0 medians for --pitch auto: within a semitone of the corpus's own F0 labels
    corpus = load_corpus(svc_corpus)
    for singer in corpus.singers:
        lab = np.concatenate([c.label_f0[c.label_f0 > 0] for c in corpus.split("train")
                              if c.singer == singer])
        got = h.extra["f0_stats"][singer]["median_hz"]
        assert abs(12 * np.log2(got / np.median(lab))) < 1.0, (singer, got, np.median(lab))
    assert [r["component"] for r in h.history] == ["content", "vocoder", "decoder"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert {r["component"] for r in log} == {"content", "vocoder", "decoder"}
    assert (out / "loss.png").stat().st_size > 1000
    # an existing checkpoint without --resume is refused
    assert main(args) == 1
    # resume: only the decoder gets 2 more steps; the others are untouched
    assert main([*args[:-1], "5", "--resume", "--component", "decoder"]) == 0
    h2 = read_header(out)
    assert h2.extra["progress"] == {"content": 3, "vocoder": 3, "decoder": 5}
    steps = [r["step"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())
             if r["component"] == "decoder"]
    assert steps == [1, 2, 3, 4, 5]


def test_train_rejects_bad_requests(svc_corpus, tmp_path, capsys):
    assert main(["train", "--model", "lhq-svc-vocoder-unittest", "--data", str(svc_corpus),
                 "--out", str(tmp_path / "a")]) == 1
    assert "is a vocoder" in capsys.readouterr().err
    assert main(["train", "--model", "lhq-svc-unittest", "--data", str(tmp_path / "none"),
                 "--out", str(tmp_path / "b")]) == 1
    assert "no such directory" in capsys.readouterr().err


def test_decoder_step_adds_the_prior_band_envelope_loss(corpus, tmp_path):
    """The joint decoder loss carries ``prior_envelope_weight`` x the band-envelope loss of μ."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = registry.build("lhq-svc-unittest", n_speakers=len(corpus.singers),
                           speakers=corpus.singers, n_phonemes=len(corpus.phonemes)).eval()
    got = {}
    for w in (0.0, 2.0):
        cfg = replace(PRESET_TRAINING["lhq-svc-unittest"], prior_envelope_weight=w)
        trainer = Trainer(model, "lhq-svc-unittest", corpus, tmp_path / str(w), cfg,
                          show_progress=False)
        fn, params, _ = trainer._setup("decoder")
        opt = torch.optim.SGD(params, lr=0.0)  # the model stays as it is
        torch.manual_seed(1)
        got[w] = fn(np.random.default_rng(0), opt, 0)
    with torch.no_grad():
        x, cond = trainer.decoder_batch(np.random.default_rng(0))
        mu = model.conditioner.prior_mean(cond)
        term = float(trainer._envelope_loss(model.denormalize_mel(mu), model.denormalize_mel(x)))
    assert 0.05 < term < 2.0
    assert got[2.0] - got[0.0] == pytest.approx(2.0 * term, rel=1e-4, abs=1e-5)
