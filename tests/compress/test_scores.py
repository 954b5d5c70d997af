"""compress.scores: failures of one score are reported with their reason (and logged), anything
unexpected propagates, and items left out of a mean are logged."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from compress import scores
from compress.errors import CompressError
from models.errors import AudioError


class _Echo(torch.nn.Module):
    """A stand-in pipeline: ``convert_long`` returns the source unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def speaker_index(self, name: str) -> int:
        return 0

    def convert_long(self, wav: np.ndarray, spk: int, shift: float, **kw: object) -> np.ndarray:
        return wav


def _eval_set(n: int = 3) -> scores.EvalSet:
    items = [scores.EvalItem(id=f"i{k}", source=np.full(160, 0.1 * (k + 1), np.float32),
                             source_speaker="a", target_speaker="a", shift=0.0,
                             reference=np.zeros(160, np.float32), source_f0=np.zeros(2))
             for k in range(n)]  # A -> A: no speaker decisions, so no speaker encoder runs
    return scores.EvalSet(items=items, sample_rate=16000, hop_length=128, speaker_refs={})


def test_expected_failures_are_reported_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_refs(m: torch.nn.Module, e: scores.EvalSet) -> float:
        raise CompressError("no references")

    def no_speech(m: torch.nn.Module, e: scores.EvalSet) -> float:
        raise AudioError("pesq: cannot score this pair (NoUtterancesError)")

    monkeypatch.setitem(scores._SCORES, "t_ok", lambda m, e: 0.5)
    monkeypatch.setitem(scores._SCORES, "t_refs", no_refs)
    monkeypatch.setitem(scores._SCORES, "t_speech", no_speech)
    with caplog.at_level(logging.WARNING, logger="compress.scores"):
        out = scores.evaluate(_Echo(), _eval_set(), ["t_ok", "t_refs", "t_speech"])
    assert out["t_ok"] == 0.5 and out["t_refs"] is None and out["t_speech"] is None
    assert out["errors"] == {"t_refs": "no references",
                             "t_speech": "pesq: cannot score this pair (NoUtterancesError)"}
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "score t_refs could not be computed: no references" in msgs
    assert any(m.startswith("score t_speech could not be computed: pesq") for m in msgs)


def test_unexpected_failures_and_unknown_names_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(m: torch.nn.Module, e: scores.EvalSet) -> float:
        raise ZeroDivisionError("a bug in a score")

    monkeypatch.setitem(scores._SCORES, "t_bug", bug)
    with pytest.raises(ZeroDivisionError, match="a bug in a score"):
        scores.evaluate(_Echo(), _eval_set(), ["t_bug"])
    with pytest.raises(CompressError, match="unknown score 't_nope'"):
        scores.evaluate(_Echo(), _eval_set(), ["t_nope"])


def test_non_finite_items_are_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="compress.scores"):
        assert scores._mean([1.0, math.nan, 3.0, math.inf], "f0_rmse_cents") == 2.0
    assert ("score f0_rmse_cents: 2 of 4 eval items gave a non-finite value and are left out "
            "of the mean") in caplog.messages
    with pytest.raises(CompressError, match="score stoi: no item .* none finite"):
        scores._mean([math.nan], "stoi")


def test_reference_scores_need_a_reference() -> None:
    es = _eval_set(2)
    for it in es.items:
        it.reference = None
    with pytest.raises(CompressError, match="score stoi: no eval item has a reference"):
        scores.get_score("stoi")(_Echo(), es)


def test_a_pinned_fingerprint_hashes_once_and_expires_with_its_block() -> None:
    import torch

    from compress.scores import fingerprint_pinned, model_fingerprint

    m = torch.nn.Linear(3, 2)
    before = model_fingerprint(m)
    with fingerprint_pinned(m) as key:
        assert key == before
        with torch.no_grad():
            m.weight.add_(1.0)  # not allowed inside the block: the pin is what is returned
        assert model_fingerprint(m) == before
    assert model_fingerprint(m) != before  # outside the block the weights are hashed again
