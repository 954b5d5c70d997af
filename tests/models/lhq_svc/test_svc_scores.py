"""Named scores for the search (compress.scores)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from compress import scores
from compress.errors import CompressError
from models import registry
from models.audio import load_audio


def test_names_and_errors():
    names = scores.score_names()
    for n in ("speaker_similarity", "stoi", "pesq", "neg_lsd", "neg_mcd", "chroma_accuracy"):
        assert n in names
        assert callable(scores.get_score(n))
    with pytest.raises(CompressError, match="unknown score 'clip'; valid: chroma_accuracy"):
        scores.get_score("clip")
    with pytest.raises(CompressError, match="already registered"):
        scores.register_score("stoi", lambda m, e: 0.0)


def test_scores_share_one_conversion_per_model(svc_corpus, monkeypatch):
    torch.manual_seed(0)
    m = registry.build("lhq-svc-unittest", speakers=["singer00", "singer01"]).eval()
    es = scores.build_eval_set(svc_corpus, m.speakers, max_items=2, seconds=1.0, steps=1)
    assert [it.target_speaker for it in es.items] == ["singer01", "singer00"]
    assert all(it.reference is not None for it in es.items)
    # the reference is the target's parallel rendering of the source's performance, and the
    # shift is exactly the key change it was rendered with
    meta = json.loads((svc_corpus / "meta.json").read_text())
    par = {(p["source"], p["target_singer"]): p for p in meta["parallel"]}
    for it in es.items:
        src_id = it.id.split("->")[0]
        p = par[(src_id, it.target_speaker)]
        assert it.reference_kind == "parallel" and it.shift == p["shift_semitones"]
        wav, _ = load_audio(svc_corpus / p["path"], sample_rate=16000)
        np.testing.assert_array_equal(it.reference, wav[: it.reference.shape[0]])
    rec = scores.build_eval_set(svc_corpus, m.speakers, max_items=2, seconds=1.0, steps=1,
                                reconstruction=True)
    assert all(it.reference_kind == "source" and it.shift == 0.0 for it in rec.items)
    np.testing.assert_array_equal(rec.items[0].reference, rec.items[0].source)
    calls = []
    orig = m.convert_long
    monkeypatch.setattr(m, "convert_long", lambda *a, **k: calls.append(1) or orig(*a, **k))
    lsd = scores.get_score("neg_lsd")(m, es)
    chroma = scores.get_score("chroma_accuracy")(m, es)
    assert len(calls) == 2  # one conversion per item, reused by the second score
    assert lsd < 0 and 0.0 <= chroma <= 1.0
    with torch.no_grad():
        m.decoder.out_proj.bias.add_(0.5)  # a changed model is converted again
    scores.get_score("neg_lsd")(m, es)
    assert len(calls) == 4
