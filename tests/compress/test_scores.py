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


# ---- the judges' scores and the combined score (issue 28) -----------------------------------
class _Tone(torch.nn.Module):
    """A stand-in pipeline that sings the source melody: a harmonic tone at the item's F0
    times 2^((shift + offset) / 12). Records the keyword arguments of its last call."""

    def __init__(self, offset: float = 0.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((1,), offset))
        self.offset, self.calls = offset, []

    def speaker_index(self, name: str) -> int:
        return 0

    def convert_long(self, wav: np.ndarray, spk: int, shift: float, **kw: object) -> np.ndarray:
        self.calls.append(kw)
        f0 = np.full(wav.size, 220.0) * 2.0 ** ((shift + self.offset) / 12.0)
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        return (0.3 * sum(np.sin(h * phase) / h for h in range(1, 6))).astype(np.float32)


def _sung_set(n: int = 2, shift: float = 12.0) -> scores.EvalSet:
    sr, hop, seconds = 16000, 128, 1.5
    frames = int(seconds * sr) // hop + 1
    items = [scores.EvalItem(id=f"s{k}", source=np.zeros(int(seconds * sr), np.float32),
                             source_speaker="a", target_speaker="a", shift=shift,
                             reference=None, source_f0=np.full(frames, 220.0))
             for k in range(n)]
    return scores.EvalSet(items=items, sample_rate=sr, hop_length=hop, speaker_refs={})


def test_crepe_scores_hear_the_rendered_pitch_and_run_crepe_once_per_model(monkeypatch) -> None:
    import models.judges as judges

    calls = []
    real = judges.crepe_f0
    monkeypatch.setattr(judges, "crepe_f0", lambda *a, **k: calls.append(k) or real(*a, **k))
    es = _sung_set()
    right, wrong = _Tone(0.0), _Tone(6.0)  # a tritone off: no chroma match
    assert scores.get_score("crepe_chroma")(right, es) >= 0.95
    assert -scores.get_score("neg_crepe_f0_rmse_cents")(right, es) < 30.0
    # every 2nd frame by default: CREPE's hop is two of the pipeline's
    assert len(calls) == 2 and calls[0]["model"] == "tiny" and calls[0]["hop_length"] == 256
    assert scores.get_score("crepe_chroma")(wrong, es) <= 0.1
    assert -scores.get_score("neg_crepe_f0_rmse_cents")(wrong, es) > 500.0
    assert len(calls) == 4  # one CREPE run per item and model, shared by both scores


def test_combined_is_the_weighted_mean_of_its_parts_and_drops_a_part_it_cannot_score() -> None:
    es = _sung_set(1)
    for it in es.items:  # a parallel ground truth: the right rendering itself
        it.reference = _Tone(0.0).convert_long(it.source, 0, it.shift)
    m = _Tone(0.0)
    es.weights = {"similarity": 0.0, "intelligibility": 1.0, "pitch": 2.0, "naturalness": 0.5}
    stoi = scores.get_score("stoi")(m, es)
    pitch = scores.get_score("crepe_chroma")(m, es)
    assert es.naturalness_judge == "p808"
    nat = scores.get_score("naturalness")(m, es)
    p808 = scores.get_score("dnsmos_p808")(m, es)
    assert nat == pytest.approx((p808 - 1.0) / 4.0)
    assert stoi > 0.9 and 0.0 < nat < 1.0
    es.naturalness_judge = "distillmos"  # another judge, on the same conversions
    mos = scores.get_score("distill_mos")(m, es)
    assert scores.get_score("naturalness")(m, es) == pytest.approx((mos - 1.0) / 4.0)
    assert abs(p808 - mos) > 1e-3  # two judges, two numbers
    es.naturalness_judge = "p808"
    assert scores.combined_parts(m, es) == pytest.approx(
        {"intelligibility": stoi, "pitch": pitch, "naturalness": nat})
    assert scores.get_score("combined")(m, es) == pytest.approx(
        (stoi + 2 * pitch + 0.5 * nat) / 3.5)
    for it in es.items:  # no ground truth: intelligibility is left out, weights renormalised
        it.reference = None
    assert scores.get_score("combined")(m, es) == pytest.approx((2 * pitch + 0.5 * nat) / 2.5)
    es.weights = {"intelligibility": 1.0, "similarity": 0.0, "pitch": 0.0, "naturalness": 0.0}
    with pytest.raises(CompressError, match="none of its weighted parts"):
        scores.get_score("combined")(m, es)
    es.weights = {"pitchy": 1.0}
    with pytest.raises(CompressError, match="a part name .not 'pitchy'"):
        scores.get_score("combined")(m, es)


def test_the_p808_naturalness_runs_only_the_p808_network_and_reuses_a_full_dnsmos(
        monkeypatch) -> None:
    import models.judges as judges

    calls = []
    real = judges.dnsmos
    monkeypatch.setattr(judges, "dnsmos",
                        lambda *a, **k: calls.append(k["parts"]) or real(*a, **k))
    es = _sung_set(1)
    a, b = _Tone(0.0), _Tone(3.0)
    nat = scores.get_score("naturalness")(a, es)
    assert calls == [("p808",)]
    ovrl = scores.get_score("dnsmos_ovrl")(a, es)  # the report asks for all four
    assert calls == [("p808",), judges.DNSMOS_PARTS] and 1.0 <= ovrl <= 5.0
    scores.get_score("dnsmos_sig")(b, es)
    assert scores.get_score("naturalness")(b, es) != nat  # read from b's full DNSMOS ...
    assert len(calls) == 3  # ... without running it again


def test_weights_are_checked_and_the_config_merges_them_with_the_defaults() -> None:
    from compress.config import EvolveConfig

    assert scores.check_weights(scores.DEFAULT_WEIGHTS) == []
    # every part weighs 1: DNSMOS P.808, the naturalness judge, passed the ladder
    assert dict.fromkeys(scores.PARTS, 1.0) == scores.DEFAULT_WEIGHTS
    assert EvolveConfig().naturalness_judge == "p808"
    assert scores.check_weights({"pitch": -1.0}) == ["a finite weight >= 0 for pitch (not -1.0)"]
    assert scores.check_weights({k: 0.0 for k in scores.PARTS}) == [
        "at least one positive weight (all are 0)"]
    ec = EvolveConfig(score_weights={"naturalness": 0.5})
    assert ec.weights() == {**scores.DEFAULT_WEIGHTS, "naturalness": 0.5}
    from compress.config_io import from_dict

    with pytest.raises(CompressError, match="naturalness_judge.*valid: p808, distillmos"):
        from_dict(EvolveConfig, {"naturalness_judge": "nisqa"})
    assert [p.path for p in EvolveConfig(score_weights={"x": 1.0}).problems("evolve")] == [
        "evolve.score_weights"]


def test_the_temperature_reaches_the_sampler_and_keys_the_conversions() -> None:
    es = _sung_set(1)
    m = _Tone(0.0)
    scores.converted(m, es)
    assert "temperature" not in m.calls[-1]  # None: the pipeline's own
    es.temperature = 0.5
    scores.converted(m, es)
    assert m.calls[-1]["temperature"] == 0.5 and len(m.calls) == 2
    scores.converted(m, es)
    assert len(m.calls) == 2  # cached under its temperature
