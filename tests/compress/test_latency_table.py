"""Latency tables: statistics, additive prediction, validation error, save / find / load."""

from __future__ import annotations

import pytest

from compress.errors import CompressError
from compress.latency_table import LatencyStats, LatencyTable, host_fingerprint


def test_stats_and_prediction(tmp_path):
    s = LatencyStats.from_samples([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.p50_ms, s.min_ms, s.mean_ms, s.n) == (3.0, 1.0, 3.0, 5)
    assert s.p90_ms == pytest.approx(4.6)
    t = LatencyTable("host:threads=1", host_fingerprint(1))
    shape = (1, 80, 125)
    for kind, ms in (("base", 2.0), ("res", 1.5), ("xattn", 3.0)):
        t.add(kind, shape, "fp32", LatencyStats(ms, ms, ms, ms, 10))
    arch = [("res", shape), ("res", shape), ("xattn", shape)]
    assert t.predict(arch, "fp32") == pytest.approx(2.0 + 1.5 + 1.5 + 3.0)
    assert t.record_validation("teacher", 8.0, 10.0) == pytest.approx(-20.0)
    with pytest.raises(CompressError, match="no entry 'res|1x80x125|int8'"):
        t.predict(arch, "int8")
    p = t.save(tmp_path)
    again = LatencyTable.find(tmp_path, "host:threads=1", host_fingerprint(1))
    assert again is not None and again.entries == t.entries and again.validation == t.validation
    assert LatencyTable.find(tmp_path, "adb:XYZ", {"serial": "XYZ"}) is None
    p.write_text("{}")
    with pytest.raises(CompressError, match="schema"):
        LatencyTable.load(p)
    with pytest.raises(CompressError, match="no samples"):
        LatencyStats.from_samples([])
