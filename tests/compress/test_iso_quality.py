"""The iso-quality teacher (issue 28): the fewest sampler steps, at the best temperature, that
keep a fraction of the teacher's own score — or lose no more than the paired noise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from compress.config import BenchConfig, EvolveConfig, RunConfig
from compress.recipes.base import ScoreResult
from compress.recipes.lhq_svc import LHQSVCRecipe


def _recipe(table: dict[tuple[int, float], list[float]]) -> tuple[LHQSVCRecipe, list[Any]]:
    """A recipe whose evaluate returns `table[(steps, temperature)]` as per-item values."""
    calls: list[Any] = []
    r = LHQSVCRecipe()

    def evaluate(subject: Any, tag: str, model: Any, data: Any, split: str, *,
                 teacher_steps: int, temperature: float, names: list[str], **kw: Any
                 ) -> dict[str, ScoreResult]:
        calls.append((teacher_steps, temperature, split, tuple(names)))
        return {names[0]: ScoreResult.from_items(names[0], table[(teacher_steps, temperature)])}

    r.evaluate = evaluate  # type: ignore[method-assign]
    return r, calls


def _cfg(**bench: Any) -> RunConfig:
    return RunConfig(evolve=EvolveConfig(score="combined"),
                     bench=BenchConfig(teacher_steps=50, **bench))


REF = ScoreResult.from_items("combined", [0.80, 0.82, 0.78, 0.80])  # 0.80
TEACHER = SimpleNamespace(temperature=1.0)


def test_fewest_steps_then_the_best_temperature_that_keeps_the_score() -> None:
    table = {(1, 0.0): [0.60, 0.62, 0.58, 0.60], (1, 1.0): [0.50, 0.52, 0.48, 0.50],
             (2, 0.0): [0.77, 0.79, 0.75, 0.77], (2, 1.0): [0.78, 0.80, 0.76, 0.78]}
    r, calls = _recipe(table)
    said: list[str] = []
    iso = r.iso_quality_teacher(TEACHER, None, _cfg(iso_steps=[2, 1, 4, 80],
                                                    iso_temperatures=[0.0, 1.0]),
                                REF, said.append)
    assert iso is not None
    # 1 step keeps 75 % at best; at 2 steps both temperatures keep >= 95 %: the better one
    assert (iso["steps"], iso["temperature"]) == (2, 1.0)
    assert iso["score"] == pytest.approx(0.78) and iso["kept_fraction"] == pytest.approx(0.975)
    assert [(c[0], c[1]) for c in calls] == [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0)]
    assert all(c[2] == "test" and c[3] == ("combined",) for c in calls)  # 4 and 80 not tried
    assert [row["keeps"] for row in iso["tried"]] == [False, False, True, True]
    assert any("2 step(s), temperature 1: combined 0.7800 = 97.5 %" in s for s in said)


def test_a_drop_within_the_paired_noise_counts_as_none() -> None:
    # 1 step: 0.74 on average (92.5 %), but its per-item differences vary as much as the drop
    table = {(1, 0.0): [0.70, 0.92, 0.58, 0.76]}
    r, _ = _recipe(table)
    iso = r.iso_quality_teacher(TEACHER, None, _cfg(iso_steps=[1], iso_temperatures=[0.0]),
                                REF, lambda s: None)
    row = iso["tried"][0]
    assert row["kept_fraction"] < 0.95 and 0.80 - row["score"] <= row["paired_noise"]
    assert (iso["steps"], row["keeps"]) == (1, True)


def test_no_cheaper_setting_keeps_it_then_the_teacher_s_own_setting() -> None:
    table = {(1, 0.0): [0.10, 0.12, 0.08, 0.10]}
    r, _ = _recipe(table)
    said: list[str] = []
    iso = r.iso_quality_teacher(TEACHER, None, _cfg(iso_steps=[1], iso_temperatures=[0.0]),
                                REF, said.append)
    assert (iso["steps"], iso["temperature"], iso["kept_fraction"]) == (50, 1.0, 1.0)
    assert "the iso-quality teacher is the teacher's own setting" in said[-1]
    assert r.iso_quality_teacher(TEACHER, None, _cfg(iso_quality=0.0), REF, said.append) is None
    neg = ScoreResult.from_items("combined", [-1.0, -2.0])
    assert r.iso_quality_teacher(TEACHER, None, _cfg(), neg, said.append) is None
    assert "is not positive" in said[-1]
