"""End to end through the real adb server and the loopback device: devices, bench, faults.

The acceptance test of issue 6 is `test_acceptance_devices_and_bench_match_host`.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from compress.cli import main
from device_bench.adb import Device, list_devices
from device_bench.errors import EXIT_ADB_SERVER, BenchError, DeviceDisconnected, DeviceError
from device_bench.protocol import BenchConfig, bench_device
from device_bench.result import BenchResult

pytestmark = pytest.mark.device


def _bench_args(pte: Path, *extra: str) -> list[str]:
    return ["bench", str(pte), "--threads", "1", "--warmup", "3", "--iterations", "25", *extra]


def test_adbd_shell_sync_roundtrip(make_device, adb_server, tmp_path):
    dev = make_device()
    d = Device(adb_server, dev.serial)
    rc, out = d.run("getprop ro.soc.model; echo hi >&2; exit 7")
    assert (rc, out.split()) == (7, ["SM8650", "hi"])
    payload = bytes(range(256)) * 3000  # 768000 bytes: many sync DATA chunks and WRTE packets
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    assert d.push(src, "/data/local/tmp/x/blob.bin") == len(payload)
    assert (dev.sandbox / "data/local/tmp/x/blob.bin").read_bytes() == payload
    d.pull("/data/local/tmp/x/blob.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload
    names = [f.path for f in d._dev.sync.list("/data/local/tmp/x")]
    assert names == [".", "..", "blob.bin"]
    # the real adb client (push uses STA2 because stat_v2 is advertised)
    adb = adb_server.adb_path()
    cmd = [adb, "-P", str(adb_server.port), "-s", dev.serial, "push", str(src),
           "/data/local/tmp/y/copy.bin"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (dev.sandbox / "data/local/tmp/y/copy.bin").read_bytes() == payload


@pytest.mark.timing
def test_acceptance_devices_and_bench_match_host(make_device, adb_server, runner_root,
                                                 pte_fp32, tmp_path, capsys):
    dev = make_device()
    port = str(adb_server.port)
    # `compress devices` lists the loopback device with its profile's SoC name.
    assert main(["devices", "--port", port]) == 0
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if ln.startswith(dev.serial))
    assert "Snapdragon 8 Gen 3" in line and "samsung SM-S928B" in line and "x86_64" in line
    assert main(["devices", "--port", port, "--json"]) == 0
    rows = {r["serial"]: r for r in json.loads(capsys.readouterr().out)}
    info = rows[dev.serial]
    assert (info["state"], info["soc"], info["soc_model"]) == ("device", "Snapdragon 8 Gen 3",
                                                               "SM8650")
    assert info["clusters"] == [
        {"cpus": [0, 1], "max_khz": 2265600}, {"cpus": [5, 6], "max_khz": 2956800},
        {"cpus": [2, 3, 4], "max_khz": 3148800}, {"cpus": [7], "max_khz": 3302400},
    ]
    assert (info["thermal_status"], info["battery_level"], info["android_version"]) == (0, 87,
                                                                                        "14")

    # Interleave host and device runs (same runner, same threads) and compare p50s.
    host_p50, dev_p50 = [], []
    for k in range(3):
        assert main(_bench_args(pte_fp32, "--host", "--repeats", "1",
                                "--json", str(tmp_path / f"host{k}.json"))) == 0
        assert main(_bench_args(pte_fp32, "--serial", dev.serial, "--port", port,
                                "--repeats", "2", "--json", str(tmp_path / f"dev{k}.json"))) == 0
        (h,) = BenchResult.load(tmp_path / f"host{k}.json")
        (d,) = BenchResult.load(tmp_path / f"dev{k}.json")
        host_p50.append(h.p50_ms)
        dev_p50.append(d.p50_ms)
    capsys.readouterr()
    ratio = statistics.median(dev_p50) / statistics.median(host_p50)
    print(f"host p50s {host_p50} device p50s {dev_p50} ratio {ratio:.3f}")
    assert 0.85 <= ratio <= 1.15, (host_p50, dev_p50)

    # What the device run recorded and did.
    assert d.target == f"adb:{dev.serial}" and d.status == "ok"
    assert (d.device["soc"], d.device["abi"], d.device["kind"]) == ("Snapdragon 8 Gen 3",
                                                                     "x86_64", "android")
    assert len(d.repeats) == 2 and all(r["threads_used"] == 1 for r in d.repeats)
    assert all(len(r["cpufreq_before_khz"]) == 8 for r in d.repeats)
    assert d.repeats[0]["thermal_before"] == 0
    if "not_pinned" in d.flags:  # the profile's big cores (2-7) do not exist on a small host
        assert d.config["pinned_cpus"] is None
    else:
        assert d.config["pinned_cpus"] == [2, 3, 4, 5, 6, 7]
    runs = [c for c in dev.shell_log if "et_bench_runner --model" in c]
    assert len(runs) == 6
    leftovers = list((dev.sandbox / "data/local/tmp").glob("device_bench_*"))
    assert leftovers == []  # cleaned up
    assert h.device["kind"] == "host" and h.model["sha256"] == d.model["sha256"]


def test_pins_to_big_cores_when_allowed(make_device, adb_server, runner_root, pte_int8,
                                        tmp_path, helpers):
    profile = helpers["write_profile"](tmp_path / "two.json", clusters=[
        {"cpus": [0], "max_khz": 1800000}, {"cpus": [1], "max_khz": 3000000}])
    dev = make_device(profile)
    res = bench_device(pte_int8, dev.serial, BenchConfig(repeats=1, iterations=5),
                       out_dir=tmp_path / "out", server=adb_server)
    assert res.config["pinned_cpus"] == [1] and "not_pinned" not in res.flags
    assert any("taskset 2 ./et_bench_runner" in c for c in dev.shell_log)


def test_cooldown_waits_then_flags_hot_device(make_device, adb_server, runner_root, pte_int8,
                                              tmp_path):
    dev = make_device()
    dev.set_thermal_status(3)  # SEVERE
    cfg = BenchConfig(repeats=1, iterations=5, cooldown_timeout_s=0.6, cooldown_poll_s=0.2)
    res = bench_device(pte_int8, dev.serial, cfg, out_dir=tmp_path / "a", server=adb_server)
    assert "hot_at_start" in res.flags and res.repeats[0]["thermal_before"] == 3
    assert res.repeats[0]["cooldown_wait_s"] >= 0.6

    dev.shell_log.clear()

    def cool_down_half_a_second_after_first_poll() -> None:
        t0 = time.monotonic()
        while not any("@@cur" in c for c in dev.shell_log) and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        time.sleep(0.5)
        dev.set_thermal_status(1)

    timer = threading.Thread(target=cool_down_half_a_second_after_first_poll)
    timer.start()
    cfg = BenchConfig(repeats=1, iterations=5, cooldown_timeout_s=30, cooldown_poll_s=0.1)
    res = bench_device(pte_int8, dev.serial, cfg, out_dir=tmp_path / "b", server=adb_server)
    timer.join()
    assert "hot_at_start" not in res.flags and res.repeats[0]["thermal_before"] == 1
    assert 0.4 <= res.repeats[0]["cooldown_wait_s"] < 10


def test_two_devices_in_parallel(make_device, adb_server, runner_root, pte_int8, tmp_path,
                                 capsys):
    a = make_device(name="a")
    b = make_device(name="b")
    out = tmp_path / "both.json"
    assert main(["bench", str(pte_int8), "--serial", a.serial, "--serial", b.serial,
                 "--port", str(adb_server.port), "--repeats", "1", "--iterations", "5",
                 "--json", str(out), "--csv", str(tmp_path / "c.csv")]) == 0
    results = BenchResult.load(out)
    assert sorted(r.target for r in results) == sorted([f"adb:{a.serial}", f"adb:{b.serial}"])
    assert (tmp_path / "c.csv").read_text().count("\n") == 3


# ---------------------------------------------------------------- faults
# (disconnect mid-run, unauthorized, offline, storage full, runner killed and hot mid-run
# through the CLI, with their exit codes: test_device_faults.py)


def test_drop_during_push(make_device, adb_server, runner_root, pte_int8, tmp_path):
    dev = make_device()
    dev.drop_after("push", nbytes=200_000, match="libexecutorch_kernels_optimized")
    with pytest.raises(DeviceDisconnected, match="0 of 1 repeats kept in"):
        bench_device(pte_int8, dev.serial, BenchConfig(repeats=1, iterations=3),
                     out_dir=tmp_path, server=adb_server)


def test_no_runner_for_abi(make_device, adb_server, runner_root, pte_int8, tmp_path, capsys,
                           helpers):
    abi = {"ro.product.cpu.abi": "arm64-v8a"}
    profile = helpers["write_profile"](tmp_path / "arm.json", props=abi)
    dev = make_device(profile)
    code = main(_bench_args(pte_int8, "--serial", dev.serial, "--port", str(adb_server.port)))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "no runner for ABI 'arm64-v8a'" in err[0] and "build_android.sh" in err[0]
    assert not any("mkdir" in c for c in dev.shell_log)  # nothing was pushed


def test_adb_server_not_running(pte_int8, capsys, helpers):
    port = str(helpers["free_port"]())
    code = main(_bench_args(pte_int8, "--serial", "127.0.0.1:5555", "--port", port,
                            "--no-start-server"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_ADB_SERVER and len(err) == 1
    assert f"not running on 127.0.0.1:{port}" in err[0]


def test_adb_server_dies_mid_run_keeps_results(make_device, runner_root, pte_fp32, tmp_path,
                                               helpers):
    server = helpers["start_adb_server"](tmp_path / "home2")
    try:
        dev = make_device(server=server, name="p2")

        def kill_when_second_repeat_starts() -> None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                if any("--output r1.json" in c for c in dev.shell_log):
                    server.kill()
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_when_second_repeat_starts)
        killer.start()
        cfg = BenchConfig(repeats=3, iterations=40, warmup=1, threads=1)
        with pytest.raises(DeviceError, match="not running") as info:
            bench_device(pte_fp32, dev.serial, cfg, out_dir=tmp_path / "o", server=server)
        killer.join()
        assert "1 of 3 repeats kept in" in str(info.value)
        (res,) = BenchResult.load(next((tmp_path / "o").glob("*.partial.json")))
        assert res.status == "partial" and len(res.repeats) == 1
    finally:
        server.kill()


def test_list_devices_requires_server_when_not_starting(helpers):
    from device_bench.adb import AdbServer

    with pytest.raises(DeviceError, match="not running"):
        list_devices(AdbServer(port=helpers["free_port"]()), start_server=False)
    with pytest.raises(BenchError, match="not understood"):
        from device_bench.api import parse_target

        parse_target("usb:1234")
