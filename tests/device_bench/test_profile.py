"""Per-operator profiles from the runner's ETDump: the table, its check against the measured
latency, `compress bench --profile` (host, and a loopback device: the dump is pulled back)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from device_bench.api import profile, profile_table_path
from device_bench.errors import BenchError
from device_bench.etdump import OperatorProfile, read_etdump
from device_bench.protocol import BenchConfig


def _check_rows(prof: OperatorProfile) -> None:
    assert prof.rows
    assert all(r.name and r.calls >= 1 and r.total_ms >= 0 for r in prof.rows)
    assert {r.kind for r in prof.rows} <= {"delegate", "kernel"}
    assert sum(r.share for r in prof.rows) == pytest.approx(1.0, abs=0.01)
    assert sum(r.total_ms for r in prof.rows) == pytest.approx(prof.operators_ms, rel=1e-9)


@pytest.mark.timing
def test_host_profile_accounts_for_the_measured_latency(runner_root, pte_fp32, tmp_path):
    warmup, iterations = 2, 30
    prof = profile(pte_fp32, "host", BenchConfig(warmup=warmup, iterations=iterations),
                   tmp_path)
    _check_rows(prof)
    # the dump holds the timed iterations only (runner_version 2 drops the load and warmup)
    assert prof.forwards == iterations and prof.notes == []
    # ConvStack: 4 body convolutions (k=5) and two 1x1 convolutions, all inside XNNPACK
    conv = prof.rows[0]
    assert conv.name == "Convolution (NHWC, F32) IGEMM" and conv.kind == "delegate"
    assert conv.calls == 4 and conv.share > 0.5
    assert next(r for r in prof.rows if r.name.startswith("Fully Connected")).calls == 2
    # operators and latency come from the same forward calls, so the ratio is steady even on a
    # busy machine: the 15 % of the brief is asserted as is
    assert prof.within, prof.check_line()
    assert abs(prof.ratio_mean - 1.0) <= 0.15
    assert prof.execute_ms is not None and prof.operators_ms <= prof.execute_ms * 1.001
    assert "within 15 %" in prof.check_line()

    # the files: the dump under profile/raw, the table beside it (and it reads back)
    assert Path(prof.etdump).parent == tmp_path / "profile" / "raw"
    saved = json.loads(profile_table_path(prof).read_text())
    assert OperatorProfile.from_dict(saved) == prof and saved["within"] is True

    # a dump that still holds the warmup (a runner older than version 2) is recognised by its
    # count: the first `warmup` calls of every event are dropped
    lat = json.loads(Path(prof.etdump).with_suffix(".json").read_text())["latencies_ms"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        older = read_etdump(prof.etdump, lat[3:], warmup=3)
    # the Inspector's "no debug buffer" UserWarning is expected here and not passed on
    assert [str(w.message) for w in caught if w.category is UserWarning] == []
    assert older.forwards == iterations - 3 and older.notes == []
    odd = read_etdump(prof.etdump, lat[:7])
    assert odd.forwards == iterations and "holds 30 forward calls" in odd.notes[0]


def test_a_table_that_misses_the_latency_says_so():
    from device_bench.etdump import OperatorRow

    prof = OperatorProfile([OperatorRow("Add (ND)", "delegate", 2.0, 5.0, 1.0)], 10, 5.0, None,
                           latency_mean_ms=10.0, latency_p50_ms=9.0, etdump="x.etdp")
    assert not prof.within and prof.ratio_mean == 0.5
    line = prof.check_line()
    assert "mean 10.000 ms, p50 9.000 ms" in line and "OUTSIDE 15 % of the mean" in line
    assert prof.display_rows() == [{"operator": "Add (ND)", "kind": "delegate", "calls": "2",
                                    "ms/forward": "5.000", "share": "100.0 %"}]


def test_unreadable_etdump_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.etdp"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(BenchError, match=r"ETDump .*x\.etdp"):
        read_etdump(bad, [1.0])
    with pytest.raises(BenchError, match="does not exist"):
        read_etdump(tmp_path / "none.etdp", [1.0])


def test_cli_bench_profile_prints_the_table_and_the_check(runner_root, pte_fp32, tmp_path,
                                                         capsys):
    from compress.cli import main

    out = tmp_path / "out"
    assert main(["bench", str(pte_fp32), "--host", "--repeats", "1", "--warmup", "1",
                 "--iterations", "10", "--profile", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "profile: convstack_fp32.pte on host" in text
    header = next(ln for ln in text.splitlines() if ln.startswith("operator "))
    assert header.split() == ["operator", "kind", "calls", "ms/forward", "share"]
    assert "Convolution (NHWC, F32) IGEMM" in text
    check = next(ln for ln in text.splitlines() if ln.startswith("operators total"))
    assert "measured mean" in check and "p50" in check and ("within" in check
                                                           or "OUTSIDE" in check)
    dumps = list((out / "profile" / "raw").glob("*.etdp"))
    assert len(dumps) == 1 and f"ETDump: {dumps[0]}" in text
    assert len(list((out / "profile").glob("*.profile.json"))) == 1


def test_cli_help_says_where_the_profile_goes(capsys):
    from compress.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--profile" in text and "OUT_DIR/profile/raw/" in text and ".profile.json" in text


@pytest.mark.device
def test_device_profile_pulls_the_etdump_back(make_device, adb_server, runner_root, pte_fp32,
                                              tmp_path):
    dev = make_device()
    prof = profile(pte_fp32, f"adb:{dev.serial}",
                   BenchConfig(warmup=1, iterations=8, cooldown_timeout_s=0.0), tmp_path,
                   server=adb_server)
    _check_rows(prof)
    assert prof.forwards == 8 and Path(prof.etdump).is_file()
    assert Path(prof.etdump).parent == tmp_path / "profile" / "raw"
    assert any("--etdump r0.etdp" in c for c in dev.shell_log)
    assert list((dev.sandbox / "data/local/tmp").glob("device_bench_*")) == []  # cleaned up


def test_run_bench_stage_keeps_the_students_profile_or_its_error(runner_root, pte_fp32,
                                                                 tmp_path):
    """`compress run`'s bench stage helper: the table as a dict for report.json, or the error
    (said, and kept) when the profile cannot be made."""
    from types import SimpleNamespace

    import numpy as np

    from compress.config import BenchConfig as StageBench
    from compress.pipeline import _operator_profile
    from device_bench.protocol import write_input_file

    said: list[str] = []
    st = SimpleNamespace(cfg=SimpleNamespace(bench=StageBench(warmup=1, iterations=5)),
                         say=said.append)
    raw = write_input_file([np.zeros((1, 16, 2048), np.float32)], tmp_path / "in.raw")
    d = _operator_profile(st, str(pte_fp32), "host", raw, tmp_path)
    assert d["forwards"] == 5 and d["rows"][0]["name"] == "Convolution (NHWC, F32) IGEMM"
    assert d["check"].startswith("operators total") and "Convolution" in said[-1]
    assert Path(d["etdump"]).is_file() and (tmp_path / "profile").is_dir()
    bad = _operator_profile(st, str(tmp_path / "missing.pte"), "host", raw, tmp_path)
    assert "does not exist" in bad["error"] and "no operator profile" in said[-1]
