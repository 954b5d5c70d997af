"""Held-out evaluation of a speech-to-singing model (Parekh et al. 2020, §3.1 "Objective
evaluation").

The paper's protocol: random test samples "with speech duration of at least 1 second"
(:func:`models.sts.metrics.eligible`; 100 in the paper), metrics averaged over them:

* **LSD** (:func:`models.sts.metrics.lsd_db`) between the true singing log-magnitude ``Y`` and
  the prediction ``Ŷ``, 100 Hz - 3.5 kHz, in dB (lower is better);
* **RCA** (:func:`models.sts.metrics.raw_chroma_accuracy`) between the melody the input was
  built from (the sample's per-frame F0, at times ``t * HOP / 16000``; the paper's "original
  contour input to the system") and the pYIN contour of the prediction synthesised with
  Griffin-Lim (§2.4, :func:`models.sts.synthesis.griffin_lim`);
* with a ``vocoder`` (:func:`models.sts.vocode.load_vocoder`), also the RCA of the prediction
  rendered through it at the melody's F0 (``rca_vocoder``; beyond the paper,
  :mod:`models.sts.vocode`): the comparison of the two renderings;
* **phoneme accuracy** of the phoneme decoder (frame accuracy on the annotated frames) when the
  model has one, else ``None`` (a diagnostic; the paper does not report it).

Each sample is run whole (the network takes any length), unshifted. Nothing is written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from models.sts import StsError
from models.sts.data import StsData, StsDataError, StsSample
from models.sts.metrics import (
    MIN_TEST_SPEECH_SECONDS,
    eligible,
    lsd_db,
    phoneme_accuracy,
    pyin_f0,
    raw_chroma_accuracy,
)
from models.sts.preprocess import HOP, SAMPLE_RATE
from models.sts.synthesis import N_ITER, griffin_lim
from models.sts.vocode import render_vocoder

PAPER_ITEMS = 100  # §3.1


def eligible_samples(data: StsData, split: str = "test",
                     min_speech_seconds: float = MIN_TEST_SPEECH_SECONDS) -> list[StsSample]:
    """The samples of `split` with at least `min_speech_seconds` of speech (§3.1)."""
    return [s for s in data.split(split) if eligible(s.speech_seconds, min_speech_seconds)]


def _mean_sem(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``; 0 for one value)."""
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    sem = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else 0.0
    return float(a.mean()), sem


@torch.no_grad()
def evaluate_sts(
    model: torch.nn.Module,
    data: StsData,
    split: str = "test",
    items: int = PAPER_ITEMS,
    seed: int = 0,
    griffin_lim_iters: int = N_ITER,
    min_speech_seconds: float = MIN_TEST_SPEECH_SECONDS,
    device: str | torch.device = "cpu",
    progress: bool = False,
    vocoder: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """LSD, RCA and phoneme accuracy of `model` on `items` random eligible samples of `split`.

    Returns ``{"split", "items", "eligible", "keys", "lsd", "rca", "phoneme_accuracy",
    "mean", "stderr"}`` (and ``"rca_vocoder"`` with a `vocoder`): per-item lists
    (``phoneme_accuracy`` is ``None`` without a phoneme decoder; an item without annotated
    frames gets ``None``), and per metric the mean and its standard error over the items. The
    choice of samples depends only on `seed`.

    Raises
    ------
    StsDataError
        No eligible sample in `split`, or ``items < 1``.
    """
    if items < 1 or griffin_lim_iters < 1:
        raise StsDataError(f"items={items}, griffin_lim_iters={griffin_lim_iters}; both must "
                           "be >= 1")
    pool = eligible_samples(data, split, min_speech_seconds)
    if not pool:
        raise StsDataError(
            f"{data.root}: no {split} sample has >= {min_speech_seconds:g} s of speech "
            f"(of {len(data.split(split))}, songs {data.songs.get(split)}); add longer phrases "
            "or lower min_speech_seconds")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(pool), min(items, len(pool)), replace=False).tolist())
    samples = [pool[i] for i in chosen]
    was_training = model.training
    model.to(device).eval()
    has_dp = getattr(model, "phoneme_decoder", None) is not None
    lsd: list[float] = []
    rca: list[float] = []
    rca_voc: list[float] = []
    acc: list[float | None] = []
    from tqdm import tqdm

    for s in tqdm(samples, desc=f"evaluate {split}", unit="item", disable=not progress):
        x, c, y, lab = data.arrays(s, 0)
        out = model(torch.from_numpy(x)[None].to(device), torch.from_numpy(c)[None].to(device))
        y_hat, logits = out if isinstance(out, tuple) else (out, None)
        pred = y_hat[0].float().cpu().numpy()
        lsd.append(lsd_db(y, pred))
        try:
            wav = griffin_lim(pred, n_iter=griffin_lim_iters, seed=seed)
            est_t, est_f0 = pyin_f0(wav)
            ref_t = np.arange(s.frames) * HOP / SAMPLE_RATE
            rca.append(raw_chroma_accuracy(ref_t, s.f0, est_t, est_f0))
            if vocoder is not None:
                est_t, est_f0 = pyin_f0(render_vocoder(pred, s.f0, vocoder))
                rca_voc.append(raw_chroma_accuracy(ref_t, s.f0, est_t, est_f0))
        except StsError as exc:
            raise StsDataError(f"sample {s.key}: {exc}") from None
        if logits is not None:
            acc.append(phoneme_accuracy(logits[0].T, lab) if np.any(lab >= 0) else None)
    if was_training:
        model.train()
    accs = [a for a in acc if a is not None]
    means, errs = {}, {}
    named = [("lsd", lsd), ("rca", rca), ("phoneme_accuracy", accs)]
    if vocoder is not None:
        named.append(("rca_vocoder", rca_voc))
    for name, vals in named:
        means[name], errs[name] = _mean_sem(vals)
    extra = {"rca_vocoder": rca_voc} if vocoder is not None else {}
    return {
        "split": split,
        "items": len(samples),
        "eligible": len(pool),
        "songs": list(data.songs.get(split, [])),
        "keys": [s.key for s in samples],
        "lsd": lsd,
        "rca": rca,
        "phoneme_accuracy": acc if has_dp else None,
        **extra,
        "mean": means,
        "stderr": errs,
    }
