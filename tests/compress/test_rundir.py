"""Resumable run directories: finished stages reused untouched, killed stages re-run."""

from __future__ import annotations

import json

import pytest

from compress.errors import CompressError
from compress.rundir import RunDir, Stage, run_stages


class Boom(Exception):
    """Raised by a stage to simulate a killed run."""


def make_stages(calls: list[str], fail_at: str | None = None):
    def mk(name: str, resumable: bool = False) -> Stage:
        def run(ctx, out):
            calls.append(name)
            (out / "partial.txt").write_text("x")
            if name == fail_at:
                raise Boom(name)
            (out / "out.txt").write_text(f"{name}:{len(ctx)}")
            return {"value": len(calls), "prev": sorted(k for k in ctx if k != "dirs")}

        return Stage(name, run, resumable)

    return [mk("data"), mk("teacher", resumable=True), mk("export")]


def test_resume_after_kill(tmp_path):
    cfg = {"a": 1}
    calls: list[str] = []
    with pytest.raises(Boom):
        run_stages(RunDir(tmp_path / "run", cfg), make_stages(calls, fail_at="teacher"))
    assert calls == ["data", "teacher"]
    data_done = tmp_path / "run/00_data/done.json"
    before = data_done.stat().st_mtime_ns, (tmp_path / "run/00_data/out.txt").read_text()
    assert not (tmp_path / "run/01_teacher/done.json").exists()
    # a resumable stage keeps its partial files; a non-resumable one would be wiped
    calls2: list[str] = []
    recs = run_stages(RunDir(tmp_path / "run", cfg), make_stages(calls2))
    assert calls2 == ["teacher", "export"]
    assert [r.status for r in recs] == ["reused", "done", "done"]
    assert (data_done.stat().st_mtime_ns, (tmp_path / "run/00_data/out.txt").read_text()) == before
    assert (tmp_path / "run/01_teacher/partial.txt").exists()
    assert recs[2].result["prev"] == ["data", "teacher"]
    # a third run does nothing
    calls3: list[str] = []
    recs = run_stages(RunDir(tmp_path / "run", cfg), make_stages(calls3))
    assert calls3 == [] and all(r.status == "reused" for r in recs)


def test_non_resumable_stage_dir_is_wiped_and_corrupt_done_reruns(tmp_path):
    cfg = {"a": 1}
    calls: list[str] = []
    with pytest.raises(Boom):
        run_stages(RunDir(tmp_path / "r", cfg), make_stages(calls, fail_at="export"))
    stale = tmp_path / "r/02_export/stale.bin"
    stale.write_text("half-written")
    (tmp_path / "r/00_data/done.json").write_text("{not json")
    calls2: list[str] = []
    run_stages(RunDir(tmp_path / "r", cfg), make_stages(calls2))
    assert calls2 == ["data", "export"]
    assert not stale.exists()
    assert json.loads((tmp_path / "r/00_data/done.json").read_text())["stage"] == "data"


def test_other_config_refused(tmp_path):
    run_stages(RunDir(tmp_path / "r", {"a": 1}), make_stages([]))
    with pytest.raises(CompressError, match="different config"):
        run_stages(RunDir(tmp_path / "r", {"a": 2}), make_stages([]))
