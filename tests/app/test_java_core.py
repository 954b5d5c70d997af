"""The app's pure-Java core, built and tested on the JVM, and what it writes checked by Python.

`android_app/tools/core_test.sh` writes the shared vectors, compiles the core with ``javac`` and
runs its JUnit 4 tests (what ``make app-test`` does). The result JSON one of them writes from the
timing vector must pass `device_bench.schema_check` and carry the metrics
`device_bench.result.build_result` computes from the same repeats.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from device_bench.result import build_result
from device_bench.schema_check import validate_result
from device_bench.stats import summarize

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "android_app" / "tools" / "core_test.sh"
JUNIT = Path("/usr/share/java/junit4.jar")


@pytest.fixture(scope="module")
def java_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    # make installs both (APT_PACKAGES): their absence is a broken set-up, not a reason to skip
    assert shutil.which("javac") and shutil.which("java"), "no JDK (javac / java): run make"
    assert JUNIT.is_file(), f"{JUNIT} missing: make installs junit4"
    build = tmp_path_factory.mktemp("app_core")
    proc = subprocess.run(["sh", str(SCRIPT), str(build)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build, proc.stdout


def test_junit_suite_passes_with_at_least_20_tests(java_run):
    _, out = java_run
    m = re.search(r"^OK \((\d+) tests\)$", out, re.MULTILINE)
    assert m, out[-2000:]
    assert int(m.group(1)) >= 20


def test_java_result_json_passes_the_schema_and_equals_build_result(java_run):
    build, _ = java_run
    doc = json.loads((build / "out" / "java_result.json").read_text())
    validate_result(doc, "java_result.json")
    assert doc["producer"]["name"] == "android_app" and doc["target"] == "app:TESTSERIAL"
    timing = json.loads((build / "vectors" / "timing" / "manifest.json").read_text())
    agg = timing["aggregate"]
    records = [{"index": i, "latencies_ms": r["latencies_ms"],
                "stats": summarize(r["latencies_ms"]).to_dict(), "load_ms": r["load_ms"],
                "pss_kb": r["pss_kb"], "peak_rss_kb": r["peak_rss_kb"]}
               for i, r in enumerate(agg["repeats"])]
    expected = build_result(target="app:x", device={}, model={},
                            config={"audio_seconds": agg["audio_seconds"]}, repeats=records)
    assert doc["metrics"] == expected.metrics  # the same doubles, key for key
    assert doc["replication"] == expected.replication
    for mine, theirs in zip(doc["repeats"], records, strict=True):
        assert mine["stats"] == theirs["stats"]
