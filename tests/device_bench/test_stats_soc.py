"""Statistics, replication rule, SoC names and the parsing of device info."""

from __future__ import annotations

import math

import pytest

from device_bench.adb import parse_clusters, parse_info
from device_bench.soc import soc_name, soc_part_number
from device_bench.stats import (
    percentile,
    real_time_factor,
    replication_spread,
    summarize,
    trimmed_mean,
)


def test_summarize_known_series():
    xs = [float(i) for i in range(1, 11)]  # 1..10
    s = summarize(xs)
    assert (s.n, s.min, s.max) == (10, 1.0, 10.0)
    assert s.p50 == pytest.approx(5.5)
    assert s.p90 == pytest.approx(9.1)  # linear interpolation: 9 + 0.1 * (10 - 9)
    assert s.mean == pytest.approx(5.5)
    assert s.trimmed_mean == pytest.approx(5.5)  # 2..9
    assert s.std == pytest.approx(math.sqrt(8.25))


def test_trimmed_mean_drops_outliers():
    xs = [10.0] * 8 + [1000.0, 0.0]
    assert trimmed_mean(xs) == pytest.approx(10.0)  # one sample cut from each end
    assert trimmed_mean([5.0, 7.0]) == pytest.approx(6.0)  # too short to cut
    assert summarize(xs).mean == pytest.approx(108.0)


def test_percentile_and_errors():
    assert percentile([3.0], 90) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, float("nan")])


def test_replication_spread_and_rtf():
    assert replication_spread([10.0]) == 0.0
    assert replication_spread([10.0, 10.4, 10.2]) == pytest.approx(0.04)
    assert replication_spread([10.0, 10.6]) == pytest.approx(0.06)
    assert real_time_factor(250.0, 2.0) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="audio_seconds"):
        real_time_factor(1.0, 0.0)


@pytest.mark.parametrize(
    ("manufacturer", "model", "platform", "expected"),
    [
        ("QTI", "SM8650", "pineapple", "Snapdragon 8 Gen 3"),
        ("QTI", "SM8550", "kalama", "Snapdragon 8 Gen 2"),
        ("QTI", "SM8750", "sun", "Snapdragon 8 Elite"),
        ("QTI", "SM7675", "", "Snapdragon 7+ Gen 3"),
        ("", "", "kalama", "Snapdragon 8 Gen 2"),  # Android < 12: only the platform
        ("Mediatek", "MT6989", "mt6989", "Dimensity 9300"),
        ("Google", "Tensor G9", "", "Google Tensor G9"),  # not in the table: best description
        ("QTI", "SM9999", "", "Qualcomm SM9999"),
        ("", "", "", "unknown"),
    ],
)
def test_soc_names(manufacturer, model, platform, expected):
    assert soc_name(manufacturer, model, platform) == expected


def test_soc_part_number():
    assert soc_part_number(" sm8650 ", "") == "SM8650"
    assert soc_part_number("", "pineapple") == "SM8650"
    assert soc_part_number("", "nonesuch") == ""


INFO = """@@props
[ro.product.model]: [Pixel 8 Pro]
[ro.product.manufacturer]: [Google]
[ro.soc.manufacturer]: [Google]
[ro.soc.model]: [ZUMA]
[ro.board.platform]: [zuma]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.build.version.release]: [15]
@@cpufreq
cpu0 1704000
cpu1 1704000
cpu2 1704000
cpu3 1704000
cpu4 2367000
cpu5 2367000
cpu6 2367000
cpu7 2367000
cpu8 2910000
@@thermal
Thermal Status: 2
@@battery
  level: 54
"""


def test_parse_info_pixel():
    d = parse_info("38051FDJH00ABC", "device", INFO)
    assert (d.model, d.manufacturer, d.soc, d.soc_model) == ("Pixel 8 Pro", "Google",
                                                            "Google Tensor G3", "ZUMA")
    assert (d.abi, d.android_version, d.thermal_status, d.battery_level) == ("arm64-v8a", "15",
                                                                              2, 54)
    assert [(c.cpus, c.max_khz) for c in d.clusters] == [
        ((0, 1, 2, 3), 1704000), ((4, 5, 6, 7), 2367000), ((8,), 2910000)]
    assert d.big_cpus() == [4, 5, 6, 7, 8]
    assert d.result_device()["clusters"][2] == {"cpus": [8], "max_khz": 2910000}


def test_parse_info_missing_sections_and_offline_cores():
    d = parse_info("x", "device", "@@props\n[ro.product.cpu.abi]: [x86_64]\n@@cpufreq\n"
                   "cpu0 2000000\ncpu1\ncpu2 2000000\n")
    assert d.cpu_max_khz == [2000000, None, 2000000]
    assert [c.cpus for c in d.clusters] == [(0, 2)]
    assert d.big_cpus() == [0, 2]  # one cluster: all its cores
    assert (d.thermal_status, d.battery_level, d.soc) == (None, None, "unknown")
    assert parse_clusters([]) == []
