"""The native runner on the host, the result schema and validator, comparisons, measure()."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess

import numpy as np
import pytest

from device_bench.api import measure, parse_target
from device_bench.compare import COLUMNS, plot, to_csv, to_markdown
from device_bench.errors import BenchError
from device_bench.protocol import BenchConfig, bench_host
from device_bench.result import BenchResult, build_result, repeat_record
from device_bench.runner_build import RUNNER_NAME, build_host_runner, runner_bundle
from device_bench.schema_check import problems, result_schema


def _run(bundle, *args):
    return subprocess.run([str(bundle / RUNNER_NAME), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_runner_fp32_and_int8_with_threads(runner_root, pte_fp32, pte_int8, tmp_path):
    bundle = runner_bundle("x86_64", runner_root)
    assert build_host_runner(runner_root) == bundle  # second call: up to date, no rebuild
    for pte in (pte_fp32, pte_int8):
        for threads in (1, 2):
            out = tmp_path / f"{pte.stem}_{threads}.json"
            proc = _run(bundle, "--model", pte, "--output", out, "--threads", threads,
                        "--warmup", 1, "--iterations", 4)
            assert proc.returncode == 0, proc.stderr
            r = json.loads(out.read_text())
            assert r["error"] is None and r["stage"] == "done"
            assert r["threads_used"] == threads and len(r["latencies_ms"]) == 4
            assert r["inputs"] == ["dtype6[1,16,2048]"] and r["num_outputs"] == 1
            assert r["load_ms"] > 0 and r["vm_hwm_kb"] > 1000 and r["pss_kb"] > 0
            assert np.isfinite(r["output_checksum"]) and r["output_checksum"] != 0


def test_runner_seeded_and_file_inputs(runner_root, pte_fp32, tmp_path):
    bundle = runner_bundle("x86_64", runner_root)

    def checksum(*extra):
        out = tmp_path / "o.json"
        proc = _run(bundle, "--model", pte_fp32, "--output", out, "--warmup", 0,
                    "--iterations", 1, *extra)
        assert proc.returncode == 0, proc.stderr
        return json.loads(out.read_text())["output_checksum"]

    assert checksum("--seed", 1) == checksum("--seed", 1)
    assert checksum("--seed", 1) != checksum("--seed", 2)
    raw = tmp_path / "zeros.raw"
    raw.write_bytes(np.zeros((1, 16, 2048), np.float32).tobytes())
    ones = tmp_path / "ones.raw"
    ones.write_bytes(np.ones((1, 16, 2048), np.float32).tobytes())
    assert checksum("--input-file", raw) != checksum("--input-file", ones)
    assert input_file_too_short(bundle, pte_fp32, tmp_path)


def input_file_too_short(bundle, pte, tmp_path) -> bool:
    short = tmp_path / "short.raw"
    short.write_bytes(b"\0" * 100)
    out = tmp_path / "err.json"
    proc = _run(bundle, "--model", pte, "--output", out, "--input-file", short)
    r = json.loads(out.read_text())
    return proc.returncode == 4 and r["stage"] == "inputs" and "too short" in r["error"]


def test_runner_errors_and_etdump(runner_root, pte_int8, tmp_path):
    bundle = runner_bundle("x86_64", runner_root)
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"not a program")
    out = tmp_path / "bad.json"
    proc = _run(bundle, "--model", bad, "--output", out)
    assert proc.returncode == 3 and json.loads(out.read_text())["stage"] == "load"
    assert _run(bundle, "--model", bad).returncode == 2  # --output missing
    assert _run(bundle, "--model", bad, "--output", out, "--threads", "x").returncode == 2
    et = tmp_path / "trace.etdp"
    proc = _run(bundle, "--model", pte_int8, "--output", out, "--etdump", et,
                "--iterations", 2)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["etdump_path"] == str(et) and et.stat().st_size > 1000


def test_no_runner_for_abi_message(tmp_path):
    with pytest.raises(BenchError, match=r"no runner for ABI 'arm64-v8a'.*build_android.sh"):
        runner_bundle("arm64-v8a", tmp_path)


def test_bench_host_result_is_valid(runner_root, pte_int8, tmp_path):
    cfg = BenchConfig(threads=1, warmup=1, iterations=6, repeats=2, audio_seconds=0.5)
    res = bench_host(pte_int8, cfg, out_dir=tmp_path, runner_root=runner_root)
    data = res.to_dict()
    assert problems(data, result_schema()) == []
    assert res.status == "ok" and res.target == "host:threads=1" and len(res.repeats) == 2
    pooled = sorted(x for r in res.repeats for x in r["latencies_ms"])
    assert res.metrics["min_inference_latency(ms)"] == pooled[0]
    assert res.metrics["rtf"] == pytest.approx(res.p50_ms / 1000 / 0.5)
    assert res.replication["spread"] is not None
    assert (res.replication["spread"] > 0.05) == ("replication_spread_above_threshold"
                                                  in res.flags)
    assert not list(tmp_path.glob("*.partial.json")) and len(list(tmp_path.glob("raw/*"))) == 2
    path = res.save(tmp_path / "r.json")
    (back,) = BenchResult.load(path)
    assert back.to_dict() == data
    recs = res.to_executorch_records()
    assert [r["metric"] for r in recs] == ["avg_inference_latency(ms)",
                                            "trimmean_inference_latency(ms)",
                                            "model_load_time(ms)", "ram_pss_usage(mb)"]


def test_measure_api(runner_root, pte_int8):
    res = measure(pte_int8, target="host:threads=2", warmup=1, iterations=3)
    assert res.config["threads"] == 2 and res.repeats[0]["threads_used"] == 2
    assert res.repeats[0]["raw_path"] is None  # temporary directory removed
    assert parse_target("adb:127.0.0.1:5555").serial == "127.0.0.1:5555"
    with pytest.raises(BenchError, match="unknown host option"):
        parse_target("host:cores=2")
    with pytest.raises(BenchError, match="does not exist"):
        measure("missing.pte")
    with pytest.raises(BenchError, match="iterations=0"):
        BenchConfig(iterations=0)


def _fake(p50s, errors=()):
    reps = [repeat_record(i, {"latencies_ms": [p, p * 1.1, p * 0.9], "load_ms": 2.0,
                              "vm_hwm_kb": 4096, "pss_kb": 2048, "threads_used": 1})
            for i, p in enumerate(p50s)]
    return build_result(
        target="adb:R5CX", errors=list(errors), repeats=reps,
        device={"kind": "android", "serial": "R5CX", "model": "SM-S928B",
                "manufacturer": "samsung", "soc": "Snapdragon 8 Gen 3", "abi": "arm64-v8a"},
        model={"name": "m", "path": "/m.pte", "size_bytes": 1, "sha256": "0" * 64},
        config={"threads": 4, "warmup": 1, "iterations": 3, "repeats": max(1, len(p50s))},
    )


def test_replication_flag_and_status():
    ok = _fake([10.0, 10.3])
    assert ok.status == "ok" and ok.replication["ok"] and not ok.flags
    bad = _fake([10.0, 11.0])
    assert bad.replication["spread"] == pytest.approx(0.1)
    assert bad.flags == ["replication_spread_above_threshold"]
    assert _fake([10.0], errors=["dropped"]).status == "partial"
    failed = _fake([], errors=["dropped"])
    assert failed.status == "failed" and failed.metrics["p50_inference_latency(ms)"] is None
    assert problems(failed.to_dict(), result_schema()) == []
    assert ok.metrics["ram_pss_usage(mb)"] == 2.0 and ok.metrics["peak_rss(mb)"] == 4.0


def test_validator_reports_every_problem(tmp_path):
    good = _fake([10.0]).to_dict()
    bad = copy.deepcopy(good)
    bad["schema_version"] = 2
    del bad["metrics"]["model_load_time(ms)"]
    bad["metrics"]["latency"] = 1.0
    bad["repeats"][0]["latencies_ms"] = []
    bad["status"] = "fine"
    found = problems(bad, result_schema())
    assert len(found) == 5, found
    assert any("$.metrics: missing required key 'model_load_time(ms)'" in p for p in found)
    assert any("$.repeats[0].latencies_ms: 0 items" in p for p in found)
    (tmp_path / "bad.json").write_text(json.dumps([good, bad]))
    with pytest.raises(BenchError, match=r"bad.json\[1\] is not a valid bench_result.v1 "
                                          r"\(5 problems\)"):
        BenchResult.load(tmp_path / "bad.json")
    schema = result_schema()
    assert schema["properties"]["schema_version"] == {"const": 1}
    assert {"avg_inference_latency(ms)", "trimmean_inference_latency(ms)",
            "model_load_time(ms)", "ram_pss_usage(mb)"} <= set(schema["properties"]["metrics"]
                                                               ["required"])


def test_compare_outputs(tmp_path):
    a, b = _fake([10.0, 10.2]), _fake([20.0, 21.0])
    b.device = dict(b.device, model="Pixel 8", manufacturer="Google", soc="Google Tensor G3")
    md = to_markdown([a, b])
    lines = md.strip().splitlines()
    assert len(lines) == 4 and lines[0].count("|") == len(COLUMNS) + 1
    assert "Google Pixel 8" in lines[3] and "| 20.500 |" in lines[3]  # pooled p50
    rows = list(csv.DictReader(io.StringIO(to_csv([a, b]))))
    assert [r["p50_ms"] for r in rows] == ["10.100", "20.500"]
    assert rows[1]["spread_pct"] == "5.0"
    png = plot([a, b], tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
