"""Issue acceptance on the corpus: DIO agrees with the ground-truth F0, singers are different
voices to a pretrained speaker encoder (Resemblyzer)."""

from __future__ import annotations

import itertools
import json
import logging
import pathlib

import mir_eval
import numpy as np

from models.audio import load_audio
from models.data.features import dio_f0

log = logging.getLogger(__name__)


def _sung(root: pathlib.Path) -> list[dict]:
    meta = json.loads((root / "meta.json").read_text())
    return [c for c in meta["clips"] if c["style"] == "sung"]


def _embed_all(enc, preprocess_wav, root: pathlib.Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for c in _sung(root):
        wav, sr = load_audio(root / c["path"])
        out.append((c["singer"], enc.embed_utterance(preprocess_wav(wav, source_sr=sr))))
    return out


def test_dio_raw_chroma_accuracy_on_sung_clips(tiny_corpus: pathlib.Path) -> None:
    refs, ests = [], []
    for c in _sung(tiny_corpus):
        wav, sr = load_audio(tiny_corpus / c["path"])
        with np.load(tiny_corpus / c["labels"]) as z:
            ref = z["f0"]
        est, _ = dio_f0(wav, sr, 128)
        assert est.shape == ref.shape
        refs.append(ref)
        ests.append(est)
    ref, est = np.concatenate(refs), np.concatenate(ests)
    t = np.arange(ref.shape[0]) * 128 / 16000
    rv, rc, ev, ec = mir_eval.melody.to_cent_voicing(t, ref, t, est)
    rca = mir_eval.melody.raw_chroma_accuracy(rv, rc, ev, ec, cent_tolerance=50)
    log.info("raw chroma accuracy %.4f over %d voiced frames", rca, int((ref > 0).sum()))
    assert rca >= 0.95


def test_singers_are_distinct_voices_for_resemblyzer(tiny_corpus: pathlib.Path) -> None:
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; one thread is as fast for this LSTM
    try:
        enc = VoiceEncoder("cpu", verbose=False)
        embeds = _embed_all(enc, preprocess_wav, tiny_corpus)
    finally:
        torch.set_num_threads(threads)
    same, diff = [], []
    for (s1, e1), (s2, e2) in itertools.combinations(embeds, 2):
        (same if s1 == s2 else diff).append(float(e1 @ e2))
    assert len(same) == 3 and len(diff) == 12
    margin = float(np.mean(same) - np.mean(diff))
    log.info("same %.3f, different %.3f, margin %.3f", np.mean(same), np.mean(diff), margin)
    assert margin >= 0.1
