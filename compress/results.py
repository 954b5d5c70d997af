"""Typed results the stages of `compress run` hand to each other.

Each stage returns one of these; :mod:`compress.rundir` stores it as the stage's ``done.json``
(``to_json``) and restores it on a resumed run (``from_json``), so a reader of
:mod:`compress.pipeline` sees what flows from one stage to the next.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from compress.recipes.base import DataSplits

T = TypeVar("T", bound="Result")


class Result:
    """``to_json`` / ``from_json`` for flat dataclasses of JSON-ready fields."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class DataResult(Result):
    splits: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def data(self) -> DataSplits:
        return DataSplits.from_json(self.splits)


@dataclass
class ModelResult(Result):
    """A checkpoint a stage wrote (teacher, robust, evolve, distill)."""

    checkpoint: str
    params: int
    architecture: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class LatencyResult(Result):
    table: str
    source: str
    fingerprint_id: str
    precision_plan: dict[str, str]
    plan_rows: list[dict[str, Any]]
    path_model: dict[str, Any]
    audio_seconds: float
    teacher_ms: float
    validation: list[dict[str, Any]]
    whole_programs: dict[str, str]  # "teacher_fp32" / "teacher_plan" -> .pte path
    probes: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    searched_ms: float = 0.0  # teacher program latency inside components the search acts on
    floor_ms: float | None = None  # predicted latency with every action applied to the limit
    teacher_fp32_ms: float | None = None  # the fp32 teacher program, timed in the same rounds

    @property
    def searched_fraction(self) -> float:
        return searched_fraction(self.searched_ms, self.teacher_ms)


def searched_fraction(searched_ms: float, teacher_ms: float) -> float:
    """Share of the teacher program's latency inside searched components, at most 1: each
    segment is timed as a program of its own (its own call and input copies), so when every
    component is searched the segments sum to a little more than the whole."""
    return min(1.0, searched_ms / teacher_ms)


@dataclass
class EvolveStageResult(Result):
    checkpoint: str
    params: int
    budget: dict[str, Any]
    evolution: dict[str, Any]
    architecture: dict[str, Any]
    score: str
    score_noise: float


@dataclass
class QuantizeResult(Result):
    enabled: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    keep_fp32: list[str] = field(default_factory=list)


@dataclass
class ExportStageResult(Result):
    artifacts: dict[str, str]
    parity: dict[str, Any]
    keep_fp32: list[str]
    gate_retries: list[dict[str, Any]]
    chunk_seconds: float


@dataclass
class BenchResult(Result):
    audio_seconds: float
    timings: dict[str, Any]  # program -> ms per chunk (p50) and details
    speedup: float
    speedup_breakdown: dict[str, float]
    student_targets: dict[str, Any]
    teacher_scores: dict[str, Any]
    student_scores: dict[str, Any]
    final_prediction: dict[str, Any]
    pte: str
    teacher_params: int
    student_params: int
    audio: list[dict[str, Any]] = field(default_factory=list)
    # the iso-quality teacher (Recipe.iso_quality_teacher) and the speed-up against it
    iso_quality: dict[str, Any] | None = None
    iso_quality_speedup: float | None = None


@dataclass
class ReportResult(Result):
    report_json: str
    report_html: str
    speedup: float
    quality_retention: float | None
    budget_met: bool
