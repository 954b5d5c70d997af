"""Robust training: fine-tune the diffusion decoder so that any block can be removed.

LHQ-SVC eq. (1) (after SnapFusion §3.1, "robust training"): during fine-tuning every evolvable
block of the decoder is replaced by the identity with probability p,

    h_{i+1} = h_i                 with probability p
    h_{i+1} = block_i(h_i, t, c)  otherwise,

and the network is trained with the usual denoising loss (eq. 5 of LHQ-SVC, the training loss of
:mod:`models.lhq_svc.diffusion`). A network trained this way does not rely on any single block,
so the architecture search (:mod:`compress.evolve`) can remove blocks without the quality
collapsing. The skipping itself lives in :class:`models.lhq_svc.decoder.EvolvableDecoder`
(``skip_prob``, active in ``train()`` mode only); this module runs the fine-tune
(:func:`robust_finetune`) and measures how much each block matters (:func:`removal_drops`).

Scale-out: :func:`robust_finetune` runs unchanged under ``torchrun --nproc_per_node N``. The
conditioner and the decoder are wrapped together by :func:`compress.ddp.wrap_ddp` (with
``find_unused_parameters`` when blocks are skipped, since ranks skip different blocks), each
rank draws its own batches, noise and skip decisions (seeded by ``seed``, rank and step), DDP
averages the gradients, so every rank ends with the same weights; the logged loss is the mean
over ranks.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from compress import ddp
from compress.errors import CompressError
from models.lhq_svc import diffusion
from models.lhq_svc.data import Corpus, load_corpus
from models.lhq_svc.pipeline import SVCPipeline
from models.lhq_svc.train import DecoderBatches

log = logging.getLogger(__name__)

V = TypeVar("V")


def _as_corpus(model: SVCPipeline, corpus: Corpus | str | os.PathLike[str]) -> Corpus:
    if isinstance(corpus, Corpus):
        return corpus
    return load_corpus(Path(corpus), sample_rate=model.sample_rate,
                       hop_length=model.hop_length)


def robust_finetune(
    model: SVCPipeline,
    corpus: Corpus | str | os.PathLike[str],
    *,
    steps: int,
    skip_prob: float,
    lr: float = 2e-4,
    batch: int = 8,
    frames: int = 128,
    seed: int = 0,
    grad_clip: float | None = 1.0,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune `model`'s conditioner and decoder in place with block skipping (eq. 1).

    ``skip_prob`` is p in [0, 1); ``batch`` is the per-rank batch of ``frames``-long segments
    drawn from the corpus's train split (a :class:`Corpus` or its directory). AdamW, learning
    rate `lr` with a cosine decay to 10 %, gradient clipping at ``grad_clip``. The content
    encoder and vocoder are not touched. ``progress(step, loss)`` is called after every step.

    Afterwards the model's own ``skip_prob`` is restored and it is left in ``eval()`` mode (also
    when training fails). The global torch RNG state is restored as well. Returns
    ``{steps, skip_prob, loss_start, loss_end, seconds, losses}`` (losses are rank means; start
    and end are the means of the first and last tenth of the steps).
    """
    if not isinstance(model, SVCPipeline):
        raise CompressError(f"robust fine-tune needs an SVCPipeline, got {type(model).__name__}")
    if not isinstance(steps, int) or steps < 1:
        raise CompressError(f"robust fine-tune: steps must be an integer >= 1, got {steps!r}")
    if not 0.0 <= float(skip_prob) < 1.0:
        raise CompressError(f"robust fine-tune: skip_prob must be in [0, 1), got {skip_prob!r}")
    if lr <= 0 or batch < 1 or frames < 1:
        raise CompressError(
            f"robust fine-tune: lr={lr}, batch={batch}, frames={frames}; expected lr > 0, "
            "batch >= 1, frames >= 1"
        )
    data = _as_corpus(model, corpus)
    clips = data.split("train")
    if not clips:
        raise CompressError(f"robust fine-tune: corpus {data.root} has no clips in the train split")
    unknown = sorted({c.singer for c in clips} - set(model.speakers))
    if unknown:
        raise CompressError(
            f"robust fine-tune: corpus singers {unknown} are not speakers of the model "
            f"({', '.join(model.speakers)})"
        )
    batches = DecoderBatches(model, clips, batch, frames)
    old_p = model.skip_prob
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            losses = _finetune(model, batches, steps, float(skip_prob), lr, seed, grad_clip,
                               progress)
    finally:
        model.skip_prob = old_p
        model.eval()
    rec = {
        "steps": steps,
        "skip_prob": float(skip_prob),
        "loss_start": ddp.window_mean(losses, first=True),
        "loss_end": ddp.window_mean(losses, first=False),
        "seconds": time.perf_counter() - t0,
        "losses": losses,
    }
    log.info("robust fine-tune p=%.2f: %d steps, loss %.4g -> %.4g (%.1f s)", skip_prob, steps,
             rec["loss_start"], rec["loss_end"], rec["seconds"])
    return rec


class _ConditionedDecoder(nn.Module):
    """Conditioner + decoder of `model` as one module (shares their parameters)."""

    def __init__(self, model: SVCPipeline):
        super().__init__()
        self.conditioner = model.conditioner
        self.decoder = model.decoder

    def forward(self, z: torch.Tensor, t: torch.Tensor, content: torch.Tensor,
                f0_feats: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        cond = self.conditioner(content, f0_feats, speaker)  # (B, D, F)
        return self.decoder(z, t, cond)  # (B, 80, F)


def _finetune(
    model: SVCPipeline,
    batches: DecoderBatches,
    steps: int,
    skip_prob: float,
    lr: float,
    seed: int,
    grad_clip: float | None,
    progress: Callable[[int, float], None] | None,
) -> list[float]:
    params = list(model.conditioner.parameters()) + list(model.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    model.eval()  # content encoder and vocoder stay in eval mode
    model.skip_prob = skip_prob
    # one DDP wrapper around conditioner + decoder: one reducer, so the gradient all-reduces
    # are issued in the same order on every rank even when the ranks skip different blocks
    net = ddp.wrap_ddp(_ConditionedDecoder(model), find_unused_parameters=skip_prob > 0)
    net.train()
    opt = torch.optim.AdamW(params, lr=lr)
    rank = ddp.rank()
    losses: list[float] = []
    for step in range(steps):
        rng = np.random.default_rng([seed, rank, step])
        torch.manual_seed((seed * 100003 + step) * 1009 + rank)  # t, noise, skip decisions
        for g in opt.param_groups:  # cosine decay to 10 %
            g["lr"] = float(lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps))))
        x, content, f0_feats, spk = batches.inputs(rng)  # (B, 80, F), ...
        t = torch.rand(x.shape[0], device=x.device)
        noise = torch.randn_like(x)
        z = diffusion.q_sample(x, t, noise)
        out = net(z, t, content, f0_feats, spk)  # (B, 80, F)
        loss = diffusion.training_loss(out, z, x, noise, t, model.prediction, model.weighting)
        value = ddp.optimizer_step(loss, opt, params, grad_clip=grad_clip,
                                   what="robust fine-tune", step=step, lr=lr)
        losses.append(value)
        if progress is not None:
            progress(step + 1, value)
    return losses


def removal_scores(model: nn.Module, eval_fn: Callable[[nn.Module], V]) -> dict[str, V]:
    """``{"full": eval_fn(model), block: eval_fn(model without block), ...}``.

    Each removal is applied to a deep copy (``remove_block``); `model` is not modified. A model
    with a single block has nothing removable and gives only ``"full"``.
    """
    for attr in ("block_names", "remove_block"):
        if not hasattr(model, attr):
            raise CompressError(
                f"removal scores need a model with the evolvable-block API ({attr}); got "
                f"{type(model).__name__}"
            )
    names = list(model.block_names())  # type: ignore[operator]
    if "full" in names:
        raise CompressError("a block is named 'full', which clashes with the full-model key")
    model.eval()
    out: dict[str, V] = {"full": eval_fn(model)}
    if len(names) < 2:
        return out
    for name in names:
        cand = copy.deepcopy(model)
        cand.remove_block(name)  # type: ignore[operator]
        cand.eval()
        out[name] = eval_fn(cand)
    return out


def removal_drops(model: nn.Module, eval_fn: Callable[[nn.Module], float]) -> dict[str, float]:
    """``{block_name: score_full - score_without_block}`` for every block of `model`.

    ``eval_fn(model) -> score`` (higher is better, e.g. a bound
    :func:`compress.scores.speaker_similarity`). A robustly trained model has small drops: the
    evolution can remove blocks cheaply. `model` itself is not modified.
    """
    scores = removal_scores(model, eval_fn)
    full = float(scores.pop("full"))
    return {name: full - float(v) for name, v in scores.items()}
