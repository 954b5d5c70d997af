"""One writer per run directory (issue 29, item 4): a second `compress run` on a directory in
use exits non-zero at once, naming the holder, and changes nothing; a stale lock (its process
gone) is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compress.errors import CompressError
from compress.rundir import LOCK, RunLock, clear_run_dir


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK}


def test_a_second_compress_run_on_a_locked_directory_refuses_at_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "00_data").mkdir(parents=True)
    (run / "00_data" / "done.json").write_text('{"stage": "data"}')
    (run / "config.json").write_text('{"digest": "x"}')
    before = _snapshot(run)
    holder = RunLock(run)
    holder.acquire("compress run the-first-one")
    try:
        for extra in ([], ["--fresh"]):
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "compress", "run", "--out", str(run),
                                *extra], capture_output=True, text=True, timeout=60)
            took = time.monotonic() - t0
            assert p.returncode == 1, p.stdout + p.stderr
            err = [line for line in p.stderr.splitlines() if line.strip()]
            assert len(err) == 1, p.stderr
            assert (f"run {run} is in use by pid {os.getpid()} on {socket.gethostname()}"
                    in err[0]) and "(compress run the-first-one)" in err[0]
            assert took < 5.0, took
            assert _snapshot(run) == before  # nothing touched, --fresh deleted nothing
    finally:
        holder.release()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": 2 ** 22 + 7, "host": "gone-host",
                                        "since": 0.0, "command": "compress run old"}))
    lock = RunLock(run)
    with caplog.at_level(logging.WARNING, logger="compress.rundir"):
        lock.acquire("compress run new")
    assert any("took over the lock of pid 4194311 on gone-host" in m and
               "no longer running" in m for m in caplog.messages)
    holder = json.loads((run / LOCK).read_text())
    assert holder["pid"] == os.getpid() and holder["command"] == "compress run new"
    with pytest.raises(CompressError, match="is in use by pid"):
        RunLock(run).acquire()  # held: another open file description cannot take it
    lock.release()
    assert (run / LOCK).read_text() == ""  # released: empty, nothing to take over
    with caplog.at_level(logging.WARNING, logger="compress.rundir"):
        caplog.clear()
        again = RunLock(run)
        again.acquire()  # an emptied lock file: no previous holder to warn about
        again.release()
    assert not caplog.messages


def test_a_killed_holder_leaves_a_lock_the_next_run_takes(tmp_path: Path) -> None:
    """The kernel drops the flock of a SIGKILLed process: the lock file stays, naming it."""
    run = tmp_path / "run"
    code = ("import sys, time; from compress.rundir import RunLock; "
            f"RunLock({str(run)!r}).acquire('compress run doomed'); print('held', flush=True); "
            "time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    with pytest.raises(CompressError, match=f"in use by pid {p.pid}"):
        RunLock(run).acquire()
    p.kill()
    p.wait()
    lock = RunLock(run)
    lock.acquire()
    assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    lock.release()


def test_fresh_clears_everything_but_the_lock(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "01_teacher").mkdir(parents=True)
    (run / "01_teacher" / "model.safetensors").write_bytes(b"x")
    (run / "report.json").write_text("{}")
    with RunLock(run):
        clear_run_dir(run)
        assert [p.name for p in run.iterdir()] == [LOCK]
