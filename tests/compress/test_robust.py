"""compress.robust: block-skipping fine-tune (LHQ-SVC eq. 1) and removal drops, 1 and 2 ranks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import CompressError
from compress.robust import removal_drops, removal_scores, robust_finetune
from models import registry
from models.lhq_svc.data import load_corpus

TRAINED = ("conditioner.", "decoder.")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """2 singers x 2 short songs (one held out)."""
    from models.data.corpus import CorpusConfig, synthesize_corpus

    root = tmp_path_factory.mktemp("robust_corpus")
    synthesize_corpus(root, CorpusConfig(singers=2, minutes=0.1, seed=0, song_seconds=3.0),
                      progress=False)
    return root


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return load_corpus(corpus_dir)


def _model(corpus, seed: int = 0):
    torch.manual_seed(seed)
    return registry.build("lhq-svc-unittest", n_speakers=len(corpus.singers),
                          speakers=corpus.singers, n_phonemes=len(corpus.phonemes)).eval()


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_trainer_decoder_batch_has_grad_through_the_conditioner(corpus, tmp_path):
    from models.lhq_svc.train import PRESET_TRAINING, Trainer

    model = _model(corpus)
    trainer = Trainer(model, "lhq-svc-unittest", corpus, tmp_path,
                      PRESET_TRAINING["lhq-svc-unittest"], show_progress=False)
    x, cond = trainer.decoder_batch(np.random.default_rng(3))
    # conditioning (256) + the unittest preset's mel prior μ (80)
    assert x.shape == (2, 80, 32) and cond.shape == (2, 256 + 80, 32)
    assert cond.requires_grad and not x.requires_grad
    x2, content, f0_feats, spk = trainer.batches.inputs(np.random.default_rng(3))
    assert torch.equal(x, x2)
    assert torch.equal(cond, model.conditioner(content, f0_feats, spk))
    x3, _ = trainer.decoder_batch(np.random.default_rng(4))
    assert not torch.equal(x, x3)
    cond.sum().backward()
    assert model.conditioner.content_proj.weight.grad.abs().max() > 0


def test_finetune_trains_decoder_restores_skip_prob_and_eval_mode(corpus):
    model = _model(corpus)
    model.skip_prob = 0.05
    before = _state(model)
    rng_before = torch.random.get_rng_state()
    rec = robust_finetune(model, corpus, steps=4, skip_prob=0.5, lr=1e-3, batch=2, frames=32)
    assert model.skip_prob == 0.05
    assert not any(m.training for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert rec["steps"] == 4 and rec["skip_prob"] == 0.5 and len(rec["losses"]) == 4
    assert all(torch.isfinite(torch.tensor(rec["losses"])))
    assert rec["loss_start"] == rec["losses"][0] and rec["loss_end"] == rec["losses"][-1]
    after = model.state_dict()
    moved = {k: float((after[k] - before[k]).abs().max()) for k in before
             if before[k].is_floating_point()}
    trained = [k for k in moved if k.startswith(TRAINED)]
    frozen = [k for k in moved if not k.startswith(TRAINED)]
    assert trained and frozen
    # AdamW moves every trained tensor that got a gradient by ~lr; the rest is untouched
    assert max(moved[k] for k in trained if k.startswith("decoder.blocks.")) > 1e-4
    assert max(moved[k] for k in trained if k.startswith("conditioner.")) > 1e-4
    assert max(moved[k] for k in frozen) == 0.0


def _count_block_calls(model, corpus, p: float, steps: int) -> list[int]:
    calls = [0] * len(model.blocks)
    hooks = [b.register_forward_hook(lambda *_a, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, b in enumerate(model.blocks)]
    try:
        robust_finetune(model, corpus, steps=steps, skip_prob=p, batch=2, frames=32)
    finally:
        for h in hooks:
            h.remove()
    return calls


def test_blocks_are_skipped_with_probability_p(corpus):
    steps = 10
    n_blocks = len(_model(corpus).blocks)
    assert _count_block_calls(_model(corpus), corpus, 0.0, steps) == [steps] * n_blocks
    calls = _count_block_calls(_model(corpus), corpus, 0.5, steps)
    # 30 Bernoulli(0.5) draws: expected 15 calls; every block is skipped at least once
    assert 5 <= sum(calls) <= 25, calls
    assert all(c < steps for c in calls), calls
    # skipping is training-only: the fine-tuned model in eval mode runs every block
    m = _model(corpus)
    robust_finetune(m, corpus, steps=1, skip_prob=0.5, batch=2, frames=32)
    m.skip_prob = 0.9
    seen = []
    hooks = [b.register_forward_hook(lambda *_a: seen.append(1)) for b in m.blocks]
    with torch.no_grad():
        m.decoder(torch.zeros(1, 80, 8), torch.full((1,), 0.5),
                  torch.zeros(1, m.decoder.cond_channels, 8))
    for h in hooks:
        h.remove()
    assert len(seen) == n_blocks


def test_finetune_is_deterministic_under_a_seed(corpus):
    kw = {"steps": 3, "skip_prob": 0.3, "batch": 2, "frames": 32}
    a, b, c = _model(corpus), _model(corpus), _model(corpus)
    ra = robust_finetune(a, corpus, seed=7, **kw)
    rb = robust_finetune(b, corpus, seed=7, **kw)
    rc = robust_finetune(c, corpus, seed=8, **kw)
    assert ra["losses"] == rb["losses"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ra["losses"] != rc["losses"]
    diff = max(float((v - c.state_dict()[k]).abs().max()) for k, v in a.state_dict().items()
               if v.is_floating_point())
    assert diff > 1e-6


def test_finetune_accepts_a_corpus_directory(corpus, corpus_dir):
    a, b = _model(corpus), _model(corpus)
    ra = robust_finetune(a, corpus, steps=2, skip_prob=0.2, batch=2, frames=32)
    rb = robust_finetune(b, corpus_dir, steps=2, skip_prob=0.2, batch=2, frames=32)
    assert ra["losses"] == rb["losses"]


@pytest.mark.parametrize("kw,match", [
    ({"skip_prob": 1.0}, "skip_prob must be in"),
    ({"skip_prob": -0.1}, "skip_prob must be in"),
    ({"steps": 0}, "steps must be"),
    ({"lr": 0.0}, "expected lr > 0"),
])
def test_bad_arguments_are_refused(corpus, kw, match):
    args = {"steps": 1, "skip_prob": 0.1, **kw}
    model = _model(corpus)
    with pytest.raises(CompressError, match=match):
        robust_finetune(model, corpus, **args)
    assert model.skip_prob == 0.0


def test_unknown_singers_are_refused(corpus):
    torch.manual_seed(0)
    model = registry.build("lhq-svc-unittest", n_speakers=2, speakers=["x", "y"])
    with pytest.raises(CompressError, match="not speakers of the model"):
        robust_finetune(model, corpus, steps=1, skip_prob=0.1)


def _untrained_but_nonzero(corpus):
    """A fresh model whose (zero-initialised) output projection is seeded, so blocks matter."""
    m = _model(corpus)
    with torch.no_grad():
        w = m.decoder.out_proj.weight
        w.copy_(0.1 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))
    return m


def test_removal_drops_match_manual_removal(corpus):
    model = _untrained_but_nonzero(corpus)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 80, 16, generator=g)
    cond = torch.randn(2, model.decoder.cond_channels, 16, generator=g)
    t = torch.tensor([0.3, 0.7])

    def score(m) -> float:  # any deterministic "higher is better" number
        with torch.no_grad():
            return -float((m.decoder(z, t, cond) - z).pow(2).mean())

    arch = model.architecture
    drops = removal_drops(model, score)
    assert model.architecture == arch  # the model itself is not modified
    assert list(drops) == model.block_names() == ["res0", "xattn1", "res2"]
    full = score(model)
    for name, d in drops.items():
        m = _untrained_but_nonzero(corpus)
        m.remove_block(name)
        assert d == pytest.approx(full - score(m), abs=1e-7)
    assert max(abs(d) for d in drops.values()) > 1e-6
    assert removal_scores(model, lambda m: len(m.blocks)) == {
        "full": 3, "res0": 2, "xattn1": 2, "res2": 2}


def test_removal_drops_of_a_single_block_model_is_empty(corpus):
    model = _model(corpus)
    model.remove_block("res0")
    model.remove_block("xattn0")
    assert removal_drops(model, lambda m: 1.0) == {}
    with pytest.raises(CompressError, match="evolvable-block API"):
        removal_drops(torch.nn.Linear(2, 2), lambda m: 1.0)


# ---- 2 ranks under torchrun -------------------------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    from compress import ddp
    from compress.robust import robust_finetune
    from models import registry
    from models.lhq_svc.data import load_corpus

    torch.set_num_threads(1)
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    info = ddp.init_distributed()
    corpus = load_corpus(data)
    torch.manual_seed(info.rank)   # different initial weights per rank: DDP must broadcast
    model = registry.build("lhq-svc-unittest", n_speakers=len(corpus.singers),
                           speakers=corpus.singers, n_phonemes=len(corpus.phonemes))
    calls = [0]
    for b in model.blocks:
        b.register_forward_hook(lambda *_a: calls.__setitem__(0, calls[0] + 1))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rec = robust_finetune(model, corpus, steps=4, skip_prob=0.4, batch=2, frames=32)
    torch.save({"state": model.state_dict(), "init": init, "losses": rec["losses"],
                "calls": calls[0], "world": info.world_size, "skip_prob": model.skip_prob,
                "training": model.training},
               out / f"rank{info.rank}.pt")
    ddp.barrier()
    ddp.cleanup()
    """
)


def test_two_ranks_end_with_identical_weights(tmp_path: Path, corpus_dir: Path,
                                              torchrun) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "robust_ddp.py"
    script.write_text(SCRIPT)
    r = torchrun(script, corpus_dir, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a["world"] == b["world"] == 2
    assert a["skip_prob"] == b["skip_prob"] == 0.0
    assert not a["training"] and not b["training"]
    # the ranks started from different weights; DDP broadcast rank 0's trained ones and
    # averaged the gradients, so the trained parts end identical on both ranks
    trained = [k for k in a["state"] if k.startswith(TRAINED)]
    differed = [k for k in trained if not torch.equal(a["init"][k], b["init"][k])]
    assert len(differed) > len(trained) // 2  # (norm gains, zero-init layers start equal)
    for k in trained:
        assert torch.equal(a["state"][k], b["state"][k]), k
    moved = max(float((a["state"][k] - a["init"][k]).abs().max())
                for k in a["state"] if k.startswith("decoder.blocks."))
    assert moved > 1e-4
    # losses are rank means (identical), each rank drew its own skips (3 blocks x 4 steps)
    assert a["losses"] == b["losses"]
    assert 0 < a["calls"] < 12 and 0 < b["calls"] < 12
