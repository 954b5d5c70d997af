"""The generic evolution loop on a toy model whose score and latency are known exactly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from torch import nn

from compress.errors import CompressError
from compress.evolve import Evolver, choose_state, evolve, replay, significant
from compress.recipes.base import Action, ScoreResult
from models.units import Unit

# kind -> (latency ms, score contribution)
KINDS = {"cheap_useless": (1.0, 0.0), "costly_useful": (10.0, 0.30), "mid": (4.0, 0.05),
         "big_useless": (8.0, 0.001), "dsp": (9.0, 0.0), "tiny": (0.5, 0.004),
         "bulk": (10.0, 0.03)}
# kind -> parameters at width 64 (a DSP iteration costs time but holds no weights)
PARAMS = {"cheap_useless": 50_000, "costly_useful": 400_000, "mid": 300_000,
          "big_useless": 100_000, "dsp": 0, "tiny": 10_000, "bulk": 200_000}


class Toy(nn.Module):
    """Units in two components; a width unit that halves a component's per-unit cost."""

    def __init__(self, a: list[str], b: list[str]) -> None:
        super().__init__()
        self.comps = {"a": list(a), "b": list(b)}
        self.width = {"a": 64, "b": 64}

    def units(self) -> list[Unit]:
        out = []
        for comp, kinds in self.comps.items():
            for i, k in enumerate(kinds):
                acts = ("remove", "duplicate") if len(kinds) > 1 else ("duplicate",)
                out.append(Unit(f"{comp}.{i}", k, comp, i, acts, self.width[comp], f"{comp}.{i}"))
            acts = ("narrow",) if self.width[comp] > 16 else ()
            out.append(Unit(f"{comp}.width", "width", comp, 0, acts, self.width[comp], None))
        return out

    def apply(self, action: Action) -> None:
        comp, what = action.unit.split(".")
        if action.kind == "narrow":
            if self.width[comp] <= 16:
                raise ValueError("cannot narrow")
            self.width[comp] = int(self.width[comp] * action.factor)
            return
        i = int(what)
        if action.kind == "remove":
            del self.comps[comp][i]
        else:
            self.comps[comp].insert(i + 1, self.comps[comp][i])

    def latency(self) -> float:
        return 5.0 + sum(KINDS[k][0] * self.width[c] / 64 for c, ks in self.comps.items()
                         for k in ks)

    def params(self) -> int:
        return sum(PARAMS[k] * self.width[c] // 64 for c, ks in self.comps.items() for k in ks)

    def score(self) -> float:
        s = 0.0
        for c, ks in self.comps.items():
            seen: dict[str, int] = {}
            for k in ks:  # a second copy of a unit adds half its contribution
                s += KINDS[k][1] * (0.5 ** seen.get(k, 0)) * (self.width[c] / 64) ** 0.1
                seen[k] = seen.get(k, 0) + 1
        return s


def _ev(noise: float = 0.0, items: int = 8) -> Evolver:
    def score(m: Toy) -> ScoreResult:
        v = m.score() + getattr(m, "tuned", 0.0)
        # per-item scores: the exact value plus seeded zero-mean noise (different per model)
        rng = np.random.default_rng(zlib.crc32(repr((m.comps, m.width)).encode()))
        e = rng.standard_normal(items)
        e = (e - e.mean()) / (e.std(ddof=1) or 1.0) * noise * np.sqrt(items)
        return ScoreResult("toy", v, tuple(float(v + x) for x in e))

    return Evolver(units=lambda m: m.units(), apply=lambda m, a: m.apply(a),
                   architecture=lambda m: {"a": list(m.comps["a"]), "b": list(m.comps["b"]),
                                           "w": dict(m.width)},
                   score=score, latency=lambda m: m.latency(), params=lambda m: m.params())


def test_removes_what_costs_latency_but_not_score_across_components() -> None:
    m = Toy(["costly_useful", "cheap_useless", "mid"], ["big_useless", "costly_useful"])
    start = m.latency()  # 5 + 1 + 10 + 4 + 8 + 10 = 38
    best, res = evolve(m, _ev(), budget_ms=24.0, max_rounds=6, duplicate_candidates=0)
    removed = [(h.action, h.kind, h.component) for h in res.history]
    # values: cheap_useless 0 / 1 ms, then big_useless 0.001 / 8 ms; the useful units stay
    assert removed[:2] == [("remove", "cheap_useless", "a"), ("remove", "big_useless", "b")]
    assert res.budget_met and best.latency() <= 24.0
    assert res.final_latency_ms == pytest.approx(best.latency())
    assert best.latency() < start
    assert "costly_useful" in best.comps["a"] and "costly_useful" in best.comps["b"]
    # every evaluated candidate is kept; the start comes first
    assert res.evaluated[0].action == "start" and len(res.evaluated) > len(res.history)
    assert m.latency() == start  # the input model is untouched


def test_narrow_is_an_action_and_duplicates_fill_the_budget() -> None:
    m = Toy(["costly_useful", "mid"], ["costly_useful"])
    _, res = evolve(m, _ev(), budget_ms=24.0, max_rounds=6, duplicate_candidates=3)
    kinds = {h.action for h in res.history}
    assert "narrow" in kinds or "remove" in kinds
    # under budget, the duplicate of the most valuable unit that fits is applied
    m2 = Toy(["costly_useful"], ["mid"])  # 5 + 10 + 4 = 19 ms
    best, res2 = evolve(m2, _ev(), budget_ms=30.0, max_rounds=3, duplicate_candidates=3)
    assert res2.history[0].action == "duplicate" and res2.history[0].kind == "costly_useful"
    assert best.latency() <= 30.0 and res2.budget_met


def test_differences_within_the_noise_count_as_zero() -> None:
    assert significant(0.01, 0.02) == 0.0 and significant(-0.05, 0.02) == -0.05
    # with large noise, every removal is "free": the largest saving goes first
    m = Toy(["costly_useful", "cheap_useless"], ["mid", "mid"])
    _, res = evolve(m, _ev(noise=1.0), budget_ms=12.0, max_rounds=1, duplicate_candidates=0)
    assert res.history[0].kind == "costly_useful"  # valued at its noise per ms: the least
    # without noise the useful unit is kept and a useless one goes
    _, res = evolve(m, _ev(), budget_ms=12.0, max_rounds=1, duplicate_candidates=0)
    assert res.history[0].kind != "costly_useful"


def test_returns_the_best_state_under_budget_not_the_last() -> None:
    assert choose_state([(0.9, 40.0), (0.8, 30.0), (0.85, 29.0), (0.7, 20.0)], 30.0) == 2
    assert choose_state([(0.9, 40.0), (0.8, 35.0)], 30.0) == 1  # none fits: the fastest
    with pytest.raises(CompressError):
        choose_state([], 1.0)
    # a duplicate that loses score beyond the noise is not applied; one that gains is, and
    # the chosen state is the best-scoring one under budget
    m = Toy(["costly_useful"], ["cheap_useless"])
    best, res = evolve(m, _ev(), budget_ms=40.0, max_rounds=4, duplicate_candidates=2)
    states = [(res.start_score, res.start_latency_ms)] + [(h.score, h.latency_ms)
                                                          for h in res.history]
    assert res.chosen_round == choose_state(states, 40.0)
    assert res.final_score == max(sc for sc, lat in states if lat <= 40.0)
    assert best.score() == pytest.approx(res.final_score) and res.budget_met


def test_budget_not_met_is_reported_with_the_fastest_state() -> None:
    m = Toy(["costly_useful"], ["costly_useful"])  # nothing removable, widths narrowable
    best, res = evolve(m, _ev(), budget_ms=6.0, max_rounds=8, duplicate_candidates=0)
    assert not res.budget_met
    assert best.latency() == min([m.latency()] + [h.latency_ms for h in res.history])


def test_replay_reapplies_the_history() -> None:
    m = Toy(["costly_useful", "cheap_useless", "mid"], ["big_useless", "costly_useful"])
    best, res = evolve(m, _ev(), budget_ms=20.0, max_rounds=5, duplicate_candidates=0)
    hist = [{"action": h.action, "unit": h.unit} for h in res.history[: res.chosen_decisions]]
    again = replay(Toy(["costly_useful", "cheap_useless", "mid"],
                       ["big_useless", "costly_useful"]), hist, lambda mm, a: mm.apply(a))
    assert again.comps == best.comps and again.width == best.width


def test_bad_budget_is_an_error() -> None:
    with pytest.raises(CompressError, match="budget_ms must be > 0"):
        evolve(Toy(["mid"], ["mid"]), _ev(), budget_ms=0.0)


def test_a_swap_trades_a_cheap_unit_for_a_copy_of_a_valuable_one() -> None:
    """Under budget with no room for a copy: duplicate the valuable unit, remove a cheap one."""
    m = Toy(["costly_useful"], ["big_useless", "cheap_useless"])  # 5 + 10 + 8 + 1 = 24 ms
    best, res = evolve(m, _ev(), budget_ms=27.0, max_rounds=1, duplicate_candidates=3,
                       swap_candidates=2)
    acts = [(h.action, h.kind) for h in res.history]
    assert acts == [("duplicate", "costly_useful"), ("remove", "big_useless")]
    assert res.history[1].latency_ms == pytest.approx(26.0)
    assert res.history[1].score > m.score()
    assert res.chosen_decisions >= 2 and best.comps["a"].count("costly_useful") == 2
    assert res.budget_met
    # without swaps the search stops: nothing fits
    _, res0 = evolve(m, _ev(), budget_ms=27.0, max_rounds=1, duplicate_candidates=3,
                     swap_candidates=0)
    assert res0.history == [] and res0.converged


def test_a_parameter_budget_turns_the_search_to_weighted_units() -> None:
    """The latency budget is met by removing weightless DSP; the parameter budget then makes
    the search remove / narrow weighted units, valued per million parameters."""
    m = Toy(["costly_useful", "dsp", "mid"], ["dsp", "costly_useful", "cheap_useless"])
    assert m.params() == 1_150_000 and m.latency() == 48.0
    _, lat_only = evolve(m, _ev(), budget_ms=31.0, max_rounds=6, duplicate_candidates=0)
    assert lat_only.budget_met and lat_only.final_params == 1_150_000  # only DSP removed
    assert {h.kind for h in lat_only.history[: lat_only.chosen_decisions]} == {"dsp"}
    best, res = evolve(m, _ev(), budget_ms=31.0, params_budget=700_000, max_rounds=8,
                       duplicate_candidates=0)
    assert res.budget_met and best.params() <= 700_000 and best.latency() <= 31.0
    assert res.final_params == best.params() and res.params_budget == 700_000
    units = [h.value_unit for h in res.history[: res.chosen_decisions]]
    assert units[0] == "score/ms" and "score/Mparam" in units
    # the cheapest score per parameter goes first: the useless 50 k before the useful 400 k
    param_phase = [h for h in res.history if h.value_unit == "score/Mparam"]
    assert param_phase[0].kind in ("cheap_useless", "width")
    assert "costly_useful" in best.comps["a"] + best.comps["b"]
    with pytest.raises(CompressError, match="params_budget"):
        evolve(m, _ev(), budget_ms=31.0, params_budget=0)


def test_choose_state_respects_the_parameter_budget() -> None:
    states = [(0.9, 20.0, 900), (0.8, 25.0, 500), (0.7, 10.0, 400)]
    assert choose_state(states, 30.0) == 0
    assert choose_state(states, 30.0, params_budget=600) == 1
    assert choose_state(states, 5.0, params_budget=600) == 2  # none fits: fastest within params


def test_a_fine_tune_that_lowers_the_score_is_not_kept() -> None:
    from dataclasses import replace

    def hurt(m: Toy, action: Action, rnd: int) -> None:
        m.tuned = -0.05 if rnd == 1 else 0.01  # the first fine-tune hurts, later ones help

    m = Toy(["costly_useful", "cheap_useless", "mid"], ["big_useless", "costly_useful"])
    _, res = evolve(m, replace(_ev(), finetune=hurt), budget_ms=24.0, max_rounds=2,
                    duplicate_candidates=0)
    first, second = res.history[:2]
    assert first.score == pytest.approx(first.score_before_finetune)  # reverted
    assert second.score == pytest.approx(second.score_before_finetune + 0.01)  # kept


def test_a_narrowed_candidate_is_fine_tuned_before_it_is_valued_and_kept_as_tuned() -> None:
    from dataclasses import replace

    calls: list[str] = []

    def recover(m: Toy, action: Action) -> None:
        calls.append(action.unit)
        m.tuned = 0.2  # training recovers more than slicing lost

    m = Toy(["costly_useful", "mid"], ["costly_useful"])  # 5 + 10 + 4 + 10 = 29 ms
    _, res = evolve(m, replace(_ev(), finetune_narrow=recover), budget_ms=24.0, max_rounds=1,
                    duplicate_candidates=0)
    assert set(calls) == {"a.width", "b.width"}  # every channel narrowing, before scoring
    first = res.history[0]
    assert first.action == "narrow"  # a removal loses score; a tuned narrowing gains
    assert first.score_before_finetune == pytest.approx(first.score)  # the tuned candidate
    assert first.score > m.score() + 0.1


def test_of_the_actions_that_close_the_gap_the_one_that_loses_least_goes_first() -> None:
    """Per ms, removing `bulk` (0.03 / 2.5 ms) beats `tiny` (0.004 / 0.125 ms); but the budget
    is only 0.025 ms away, which `tiny` closes for less score."""
    m = Toy(["bulk", "costly_useful"], ["tiny", "costly_useful"])
    m.width = {"a": 16, "b": 16}  # nothing to narrow: removals only
    assert m.latency() == pytest.approx(12.625)
    _, res = evolve(m, _ev(), budget_ms=12.6, max_rounds=1, duplicate_candidates=0)
    assert res.history[0].kind == "tiny" and res.budget_met
    # far from the budget, the better value per ms goes first
    _, far = evolve(m, _ev(), budget_ms=9.0, max_rounds=1, duplicate_candidates=0)
    assert far.history[0].kind == "bulk"


def test_rounds_over_the_budget_do_not_count_toward_max_rounds() -> None:
    m = Toy(["costly_useful", "cheap_useless", "mid"], ["big_useless", "costly_useful"])
    best, res = evolve(m, _ev(), budget_ms=30.0, max_rounds=1, duplicate_candidates=0,
                       swap_candidates=0)
    assert len(res.history) >= 2 and res.budget_met and best.latency() <= 30.0


def test_screening_scores_only_the_best_candidates_in_full_and_decides_alike() -> None:
    """Racing: every over-budget candidate is screened on the first val items, the best
    `screen_keep` are scored on all of them; with a screen that ranks like the full score the
    decisions are the same as without screening, with fewer full scorings."""
    m = Toy(["costly_useful", "cheap_useless", "mid"], ["big_useless", "costly_useful"])
    plain = _ev(items=6)
    _, ref = evolve(m, plain, budget_ms=24.0, max_rounds=6, duplicate_candidates=0,
                    swap_candidates=0)
    screened = _ev(items=6)
    calls = {"screen": 0, "full": 0}
    full = screened.score

    def score(t: Toy) -> ScoreResult:
        calls["full"] += 1
        return full(t)

    def screen(t: Toy) -> ScoreResult:
        calls["screen"] += 1
        r = full(t)  # the first 2 items of the full score, as the recipe's scorer gives them
        return ScoreResult.from_items(r.name, r.items[:2])

    screened.score, screened.screen = score, screen
    screened.screen_keep = 2
    _, res = evolve(m, screened, budget_ms=24.0, max_rounds=6, duplicate_candidates=0,
                    swap_candidates=0)
    assert [(h.action, h.unit) for h in res.history] == [(h.action, h.unit) for h in ref.history]
    assert res.screened_out > 0 and calls["screen"] >= res.screened_out + 2
    # candidates scored in full: at most 2 per over-budget round (plus start and fine-tunes)
    assert len([c for c in res.evaluated if c.action in ("remove", "narrow")]) <= \
        2 * len(res.history)
    assert len([c for c in res.evaluated if c.action in ("remove", "narrow")]) < \
        len([c for c in ref.evaluated if c.action in ("remove", "narrow")])
    assert res.to_json()["screened_out"] == res.screened_out


def test_duplicate_candidates_span_the_components() -> None:
    """Under the budget the first duplicate candidates are the most valuable unit of each
    component, not several blocks of one."""
    m = Toy(["costly_useful", "costly_useful", "mid"], ["tiny", "cheap_useless"])
    m.width = {"a": 16, "b": 16}
    tried: list[str] = []
    ev = _ev()
    apply = ev.apply

    def spy(t: Toy, a: Action) -> None:
        if a.kind == "duplicate":
            tried.append(a.unit.split(".")[0])
        apply(t, a)

    ev.apply = spy
    evolve(m, ev, budget_ms=100.0, max_rounds=1, duplicate_candidates=2, swap_candidates=0)
    assert sorted(tried[:2]) == ["a", "b"]
    # a swap's copies too: with no room for a copy (budget = the current latency), the two
    # swap candidates are one unit of each component
    tried.clear()
    evolve(m, ev, budget_ms=m.latency(), max_rounds=1, duplicate_candidates=0,
           swap_candidates=2)
    assert sorted(tried[:2]) == ["a", "b"]


def test_a_duplicate_is_credited_only_with_what_the_same_fine_tune_alone_does_not_give() -> None:
    """The copy's fine-tune improves any model by 0.05 here: a copy of a unit that adds
    nothing gains 0.05 against the untuned model, nothing against the tuned control."""
    from dataclasses import replace

    def tune(m: Toy, action: Action) -> None:
        m.tuned = getattr(m, "tuned", 0.0) + 0.05

    useless = Toy(["cheap_useless", "cheap_useless"], ["dsp", "cheap_useless"])
    useless.width = {"a": 16, "b": 16}
    _, res = evolve(useless, replace(_ev(), finetune_duplicate=tune), budget_ms=100.0,
                    max_rounds=1, duplicate_candidates=2, swap_candidates=0)
    # the copies add nothing: what the candidates gained was the fine-tune's
    assert [h for h in res.history if h.action == "duplicate"] == []
    useful = Toy(["costly_useful"], ["tiny"])  # a copy adds 0.15, beyond the fine-tune's 0.05
    _, res = evolve(useful, replace(_ev(), finetune_duplicate=tune), budget_ms=100.0,
                    max_rounds=1, duplicate_candidates=2, swap_candidates=0)
    assert res.history and res.history[0].action == "duplicate"
    assert res.history[0].kind == "costly_useful"


def test_free_actions_of_a_round_are_applied_together_when_together_free() -> None:
    """`batch_free`: a DSP unit (9 ms) and a useless layer (1 ms), in two components, each
    cost nothing: one round removes both. When the pair together costs score (an interaction
    the single candidates cannot show), the round applies the chosen action alone."""
    from dataclasses import replace

    def toy() -> Toy:
        return Toy(["costly_useful", "dsp"], ["costly_useful", "cheap_useless"])  # 35 ms

    _, one = evolve(toy(), _ev(), budget_ms=24.0, max_rounds=2, duplicate_candidates=0)
    assert [(h.round, h.kind) for h in one.history[:2]] == [(1, "dsp"), (2, "cheap_useless")]

    _, both = evolve(toy(), replace(_ev(), batch_free=True), budget_ms=24.0, max_rounds=2,
                     duplicate_candidates=0)
    assert [(h.round, h.kind) for h in both.history[:2]] == [(1, "dsp"), (1, "cheap_useless")]
    assert both.history[0].latency_ms == pytest.approx(25.0)  # 35 - 9 - 1
    assert both.history[1].value == 0.0
    assert len([h for h in both.history if h.round == 1]) == 2
    assert both.evaluated[[c.action for c in both.evaluated].index("applied")].unit == "a.1+b.1"

    base = _ev()

    def score(m: Toy) -> ScoreResult:  # both gone together costs 0.1
        s = base.score(m)
        hit = "dsp" not in m.comps["a"] and "cheap_useless" not in m.comps["b"]
        return ScoreResult("toy", s.value - 0.1 * hit, tuple(v - 0.1 * hit for v in s.items))

    _, pair = evolve(toy(), replace(base, batch_free=True, score=score), budget_ms=24.0,
                     max_rounds=2, duplicate_candidates=0)
    assert [h.round for h in pair.history].count(1) == 1 and pair.history[0].kind == "dsp"
