"""The kill-anywhere benchmark's comparison: what counts as a measured time (may differ between
runs) and what as a decision (must not); its runs are in benchmarks/, not here."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def ka(load_benchmark):
    return load_benchmark("kill_anywhere")


def _summary(ka) -> dict:
    stages = {name: {"seconds_inside": 1.0, "checkpoint": "RUN/x"} for name in ka.STAGES}
    stages["evolve"] = {"architecture": ["res", "xattn"], "score": 0.51}
    stages["bench"] = {"timings": {"student_pte": {"p50_ms": 3.2}}, "scores": {"stoi": 0.7},
                       "student_targets": {"host": {"profile": {"rows": [{"name": "conv"}]}}}}
    report = {"student": {"architecture": ["res"]}, "evolution": [{"unit": "decoder.blocks.0"}],
              "speedup": 3.9, "verdict": "3.9x faster", "student_scores": {"combined": 0.5},
              "stages": [{"name": "data", "status": "done"}], "budget_met": True,
              "budget_met_predicted": True}
    return {"stages": stages, "report": report,
            "digests": {"07_export/s.pte": "aa", "04_evolve/model.safetensors": "bb"}}


def test_identical_runs_compare_equal(ka) -> None:
    s = _summary(ka)
    c = ka.compare(s, copy.deepcopy(s))
    assert c["architecture_equal"] and c["history_equal"] and c["artifacts_equal"]
    assert c["unexpected_differences"] == [] and c["timing_differences"] == []


def test_measured_times_may_differ_but_decisions_and_artifacts_may_not(ka) -> None:
    ref = _summary(ka)
    got = copy.deepcopy(ref)
    got["stages"]["bench"]["timings"]["student_pte"]["p50_ms"] = 3.4
    got["stages"]["bench"]["student_targets"]["host"]["profile"]["rows"][0]["name"] = "add"
    got["stages"]["data"]["seconds_inside"] = 2.0
    got["report"]["speedup"], got["report"]["verdict"] = 3.7, "3.7x faster"
    got["report"]["stages"][0]["status"] = "reused"  # what a resume records of itself
    got["report"]["budget_met"] = False  # measured
    c = ka.compare(ref, got)
    assert c["unexpected_differences"] == []
    assert len(c["timing_differences"]) == 6
    assert c["resume_record_differences"] == ["report: stages[0].status"]
    got["stages"]["bench"]["scores"]["stoi"] = 0.69
    got["stages"]["evolve"]["score"] = 0.50
    got["report"]["evolution"][0]["unit"] = "decoder.blocks.1"
    got["digests"]["07_export/s.pte"] = "ab"
    got["report"]["budget_met_predicted"] = False  # the table's verdict: a decision
    c = ka.compare(ref, got)
    assert c["unexpected_differences"] == ["evolve: score", "bench: scores.stoi",
                                           "report: budget_met_predicted",
                                           "report: evolution[0].unit"]
    assert not c["history_equal"] and c["architecture_equal"]
    assert c["artifact_differences"] == ["07_export/s.pte"]


def test_paths_of_the_run_directory_are_normalised(ka, tmp_path: Path) -> None:
    run = tmp_path / "kill03"
    assert ka._normalise({"a": [f"{run}/01_teacher/model.safetensors"]}, run) == {
        "a": ["RUN/01_teacher/model.safetensors"]}
    assert ka._flatten({"a": {"b": [1, {"c": 2}]}, "d": []}) == {"a.b[0]": 1, "a.b[1].c": 2,
                                                                 "d": []}
