"""Exported `.pte` files also run in the native C++ runner of device_bench (issue 4 acceptance)."""

from __future__ import annotations

import pytest

from device_bench.api import measure
from device_bench.runner_build import build_host_runner
from export.api import export_model


@pytest.mark.parametrize(
    "name,precision",
    [
        # int8 programs run in this runner in test_run (the bench stage times the student's)
        ("lhq-svc-decoder-unittest", "fp32"),
        ("lhq-svc-vocoder-unittest", "fp32"),
    ],
)
def test_exported_pte_runs_in_native_runner(tmp_path, name, precision):
    build_host_runner()
    res = export_model(name, "pte", precision, tmp_path)
    assert res.path is not None and res.path.name == f"{name}_xnnpack_{precision}.pte"
    bench = measure(res.path, target="host:threads=1", warmup=1, iterations=3)
    assert bench.status == "ok"
    assert len(bench.repeats) == 1 and bench.repeats[0]["threads_used"] == 1
    assert 0.0 < bench.p50_ms < 10_000.0
    assert bench.model["sha256"] == res.sidecar["sha256"]
