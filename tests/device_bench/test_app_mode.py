"""`compress bench --mode app` end to end: the real adb server, the loopback device, and a
scripted ``am`` / ``pm`` standing in for the sample app (android_app/).

The scripted ``am start`` parses the intent extras the bench passes and, like the app's
BenchmarkActivity, writes a bench_result.v1 file into the app's external files folder a moment
later (from a detached process, so the bench has to poll for it). Its modes: ``ok``, ``silent``
(never writes: the bench must give up with one clear line) and ``failed`` (the app's own
failure report). The program file is a stand-in: the app is what would run it; the bench only
pushes it and checks that the app measured the same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from compress.cli import main
from device_bench.app import APP_PACKAGE, BENCH_ACTIVITY, REMOTE_DIR
from device_bench.compare import to_markdown
from device_bench.result import BenchResult

pytestmark = pytest.mark.device

FAKE_APP = r'''
import json, os, subprocess, sys, time

sandbox, args = sys.argv[1], sys.argv[2:]
if args and args[0] == "--write":  # the detached "activity": run, then write the result
    from device_bench.result import build_result, model_info
    extras = json.loads(args[1])
    mode = open(os.path.join(sandbox, "system/state/app_mode")).read().strip()
    time.sleep(0.4)
    n, r = extras.get("iterations", 20), extras.get("repeats", 1)
    repeats = []
    for i in range(r if mode == "ok" else 0):
        lat = [10.0 + 0.1 * ((k * 7 + i) % 5) for k in range(n)]
        from device_bench.stats import summarize
        repeats.append({"index": i, "latencies_ms": lat, "stats": summarize(lat).to_dict(),
                        "load_ms": 42.0, "pss_kb": 51200, "peak_rss_kb": 61440,
                        "threads_used": extras.get("threads"), "thermal_before": 0,
                        "thermal_after": 0, "cooldown_wait_s": 0.0, "cpufreq_before_khz": None,
                        "cpufreq_after_khz": None, "raw_path": None})
    errors = [] if mode == "ok" else ["repeat 0: m.pte: not a loadable ExecuTorch program"]
    device = {"kind": "android", "serial": extras.get("serial"), "model": "phone",
              "manufacturer": "maker", "soc": "", "abi": "x86_64"}
    config = {"threads": extras.get("threads"), "warmup": extras.get("warmup"),
              "iterations": n, "repeats": r, "audio_seconds": extras.get("audio_seconds"),
              "input_file": extras.get("input_path"), "runner": "android_app 0.1.0"}
    res = build_result(target="app:" + extras.get("serial", "local"), device=device,
                       model=model_info(extras["model_path"]), config=config,
                       repeats=repeats, flags=["not_pinned"], errors=errors)
    doc = res.to_dict()
    doc["producer"] = {"name": "android_app", "version": "0.1.0"}
    out = os.path.join(sandbox, "sdcard/Android/data/PKG/files/bench", extras["result_name"])
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".part", "w") as f:
        json.dump(doc, f)
    os.replace(out + ".part", out)
    sys.exit(0)

if not args or args[0] != "start":
    print("am: only 'start' is scripted"); sys.exit(1)
extras, comp, i = {}, None, 1
while i < len(args):
    a = args[i]
    if a in ("--es", "--ei", "--ef"):
        v = args[i + 2]
        extras[args[i + 1]] = int(v) if a == "--ei" else float(v) if a == "--ef" else v
        i += 3
    elif a == "-n":
        comp, i = args[i + 1], i + 2
    else:
        i += 1
if comp != "PKG/ACTIVITY":
    print(f"Error type 3\nError: Activity class {{{comp}}} does not exist.")
    sys.exit(0)
print(f"Starting: Intent {{ cmp={comp} }}\nStatus: ok\nLaunchState: COLD\nComplete")
sys.stdout.flush()
mode = open(os.path.join(sandbox, "system/state/app_mode")).read().strip()
if mode != "silent":
    subprocess.Popen([sys.executable, __file__, sandbox, "--write", json.dumps(extras)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
'''

PM = """#!/bin/sh
STATE="{state}/installed"
case "$1" in
  path) if [ -f "$STATE" ]; then echo "package:/data/app/{pkg}-1/base.apk"; else exit 1; fi ;;
  install) for a in "$@"; do last="$a"; done
    if [ -f "$last" ]; then touch "$STATE"; echo Success
    else echo "Failure [INSTALL_FAILED_INVALID_URI]"; exit 1; fi ;;
  *) echo "Unknown command: $1"; exit 1 ;;
esac
"""


def script_app(dev, tmp_path: Path, mode: str = "ok", installed: bool = False) -> None:
    """Put the scripted ``am`` and ``pm`` on the loopback device's PATH."""
    state = dev.sandbox / "system/state"
    (state / "app_mode").write_text(mode)
    if installed:
        (state / "installed").write_text("")
    helper = tmp_path / "fake_app.py"
    helper.write_text(FAKE_APP.replace("PKG/ACTIVITY", f"{APP_PACKAGE}/{BENCH_ACTIVITY}")
                      .replace("PKG", APP_PACKAGE))
    bindir = dev.sandbox / "system/bin"
    (bindir / "am").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{helper}" '
                               f'"{dev.sandbox}" "$@"\n')
    (bindir / "pm").write_text(PM.format(state=state, pkg=APP_PACKAGE))
    for name in ("am", "pm"):
        (bindir / name).chmod(0o755)


def program(tmp_path: Path) -> Path:
    pte = tmp_path / "demo-student_xnnpack_int8.pte"
    pte.write_bytes(b"a stand-in for an ExecuTorch program" * 100)
    return pte


def test_app_mode_installs_runs_pulls_and_compares(make_device, adb_server, tmp_path, capsys):
    dev = make_device()
    script_app(dev, tmp_path)
    pte = program(tmp_path)
    apk = tmp_path / "app-debug.apk"
    apk.write_bytes(b"PK not really an apk")
    out = tmp_path / "app.json"
    code = main(["bench", str(pte), "--mode", "app", "--serial", dev.serial,
                 "--port", str(adb_server.port), "--apk", str(apk), "--warmup", "2",
                 "--iterations", "7", "--repeats", "2", "--threads", "4",
                 "--audio-seconds", "1.0", "--json", str(out),
                 "--markdown", str(tmp_path / "cmp.md")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # the same comparison table as --mode runner prints
    lines = captured.out.splitlines()
    header = next(ln for ln in lines if ln.lstrip().startswith("model"))
    for col in ("model", "device", "soc", "threads", "p50_ms", "p90_ms", "trimmean_ms",
                "load_ms", "pss_mb", "rtf", "spread_pct", "status"):
        assert col in header
    row = next(ln for ln in lines if ln.startswith("demo-student_xnnpack_int8"))
    assert "Snapdragon 8 Gen 3" in row and " ok" in row
    (res,) = BenchResult.load(out)
    assert res.target == f"app:{dev.serial}" and res.status == "ok"
    assert res.producer["name"] == "android_app"
    assert res.device["soc"] == "Snapdragon 8 Gen 3" and res.device["serial"] == dev.serial
    assert res.model["path"] == str(pte.resolve())
    assert len(res.repeats) == 2 and len(res.repeats[0]["latencies_ms"]) == 7
    assert res.config["warmup"] == 2 and res.config["threads"] == 4
    assert res.metrics["rtf"] == pytest.approx(res.p50_ms / 1000.0)
    assert "not_pinned" in res.flags
    assert (tmp_path / "cmp.md").read_text() == to_markdown([res])
    log = "\n".join(dev.shell_log)
    assert "pm install -r -t -g /data/local/tmp/device_bench_app.apk" in log
    start = next(c for c in dev.shell_log if "am start" in c)
    assert f"-W -S -n {APP_PACKAGE}/{BENCH_ACTIVITY}" in start
    for extra in ("--ei warmup 2", "--ei iterations 7", "--ei repeats 2", "--ei threads 4",
                  f"--es model_path {REMOTE_DIR}/{pte.name}", "--ef audio_seconds 1.0",
                  f"--es serial {dev.serial}"):
        assert extra in start
    # the program stays where the app's converter screen finds it; the result file is gone
    assert (dev.to_host_path(f"{REMOTE_DIR}/{pte.name}")).read_bytes() == pte.read_bytes()
    left = list((dev.sandbox / f"sdcard/Android/data/{APP_PACKAGE}/files/bench").iterdir())
    assert left == []
    # the app's result file is an input like any other
    assert main(["bench", str(out)]) == 0
    assert "demo-student_xnnpack_int8" in capsys.readouterr().out


def test_app_mode_without_a_result_is_one_clear_error(make_device, adb_server, tmp_path,
                                                      capsys):
    dev = make_device()
    script_app(dev, tmp_path, mode="silent", installed=True)
    code = main(["bench", str(program(tmp_path)), "--mode", "app", "--serial", dev.serial,
                 "--port", str(adb_server.port), "--timeout", "1.5",
                 "--out-dir", str(tmp_path / "raw")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("compress bench: error: no result from the app on " + dev.serial)
    assert "never appeared" in err[0]


def test_app_mode_refusals(make_device, adb_server, tmp_path, capsys):
    dev = make_device()
    port = str(adb_server.port)
    pte = program(tmp_path)
    script_app(dev, tmp_path, mode="failed")
    base = ["bench", str(pte), "--mode", "app", "--serial", dev.serial, "--port", port,
            "--timeout", "20", "--out-dir", str(tmp_path / "raw")]
    cases = [
        (base, "is not installed on"),  # no --apk and nothing installed
        (["bench", str(pte), "--mode", "app"], "--mode app runs on phones"),
        (["bench", str(pte), "--apk", "x.apk"], "--apk is for --mode app"),
        ([*base, "--profile"], "--profile needs the native runner"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    (dev.sandbox / "system/state/installed").write_text("")
    assert main(base) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the app could not benchmark" in err[0]
    assert "not a loadable ExecuTorch program" in err[0]
    raw = json.loads(next((tmp_path / "raw" / "raw").glob("*.json")).read_text())
    assert raw["status"] == "failed"
