"""Device faults through the real adb server and the loopback device (issue 29, item 3).

Each fault drives the real `compress bench` command line and must give exactly one stderr line
naming the device and what to do, its own exit code (`device_bench.errors.EXIT_CODES`), and,
where any work was done or started, a partial result file that is marked (its status and the
fault in its ``errors``) and valid against bench_result.v1 with the project's validator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from compress.cli import main
from device_bench.errors import (
    EXIT_CODES,
    EXIT_DISCONNECTED,
    EXIT_OFFLINE,
    EXIT_RUNNER_KILLED,
    EXIT_STORAGE_FULL,
    EXIT_TOO_HOT,
    EXIT_UNAUTHORIZED,
)
from device_bench.result import BenchResult
from device_bench.runner_build import runner_bundle
from device_bench.schema_check import problems, result_schema, validate_result

pytestmark = pytest.mark.device

README = Path(__file__).resolve().parents[2] / "device_bench" / "README.md"


def _bench(pte: Path, serial: str, port: int, out: Path, *extra: str) -> list[str]:
    return ["bench", str(pte), "--serial", serial, "--port", str(port), "--threads", "1",
            "--warmup", "1", "--iterations", "5", "--out-dir", str(out), *extra]


def _one_line(capsys: pytest.CaptureFixture[str], serial: str) -> str:
    """The single stderr line of the command, checked to name the device."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("compress bench: error: ") and serial in err[0], err[0]
    print(err[0])  # the measured message, for the record (pytest -s)
    return err[0]


def _partial(line: str, out: Path) -> dict:
    """The partial result named by `line`: in `out`, valid against the schema."""
    path = Path(line.rsplit("kept in ", 1)[1])
    assert path.parent == out and path.name.endswith(".partial.json")
    assert list(out.glob("*.partial.json")) == [path]
    data = json.loads(path.read_text())
    assert problems(data, result_schema()) == []
    validate_result(data, str(path))
    (res,) = BenchResult.load(path)
    assert res.to_dict()["schema"] == "device_bench/bench_result"
    return data


def _nothing_started(dev, out: Path) -> None:
    assert dev.shell_log == [] and not list(out.glob("**/*.json"))


def test_disconnect_mid_benchmark(make_device, adb_server, runner_root, pte_int8, tmp_path,
                                  capsys):
    dev = make_device()
    dev.drop_after("shell", match="--output r1.json")  # the cable pulled in the second repeat
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out, "--repeats", "3",
                       "--json", str(tmp_path / "res.json")))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_DISCONNECTED == 3
    assert re.search(rf"device {re.escape(dev.serial)} (dropped the connection|disconnected)",
                     line)
    assert "reconnect it" in line and "1 of 3 repeats kept in" in line
    data = _partial(line, out)
    assert data["status"] == "partial" and len(data["repeats"]) == 1
    assert len(data["errors"]) == 1 and dev.serial in data["errors"][0]
    assert "connection" in data["errors"][0] or "disconnected" in data["errors"][0]
    assert Path(data["repeats"][0]["raw_path"]).is_file()
    assert not (tmp_path / "res.json").exists()


def test_unauthorized(make_device, adb_server, pte_int8, tmp_path, capsys):
    dev = make_device(unauthorized=True)
    assert main(["devices", "--port", str(adb_server.port), "--json"]) == 0
    states = {r["serial"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert states[dev.serial] == "unauthorized"
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_UNAUTHORIZED == 4
    assert f"device {dev.serial} is unauthorized" in line and "Allow USB debugging" in line
    _nothing_started(dev, out)


def test_offline(make_device, adb_server, pte_int8, tmp_path, capsys):
    dev = make_device(offline=True)
    port = str(adb_server.port)
    assert main(["devices", "--port", port]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(dev.serial))
    assert row.split()[:2] == [dev.serial, "offline"]
    assert main(["devices", "--port", port, "--json"]) == 0
    states = {r["serial"]: r["state"] for r in json.loads(capsys.readouterr().out)}
    assert states[dev.serial] == "offline"
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_OFFLINE == 5
    assert f"device {dev.serial} is offline" in line and "adb reconnect offline" in line
    _nothing_started(dev, out)


def test_storage_full_on_push(make_device, adb_server, runner_root, pte_int8, tmp_path,
                              capsys):
    dev = make_device(storage_limit=5_000_000)  # the runner bundle alone is larger
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out, "--repeats", "3"))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_STORAGE_FULL == 6
    bundle = [f for f in runner_bundle("x86_64", runner_root).iterdir() if f.is_file()]
    need = sum(f.stat().st_size for f in bundle) + pte_int8.stat().st_size
    assert f"device {dev.serial} storage is full" in line
    assert "failed (write failed: No space left on device)" in line
    assert f"needs {need / 1e6:.1f} MB free under /data/local/tmp" in line
    assert "free at least that much on the phone" in line and "0 of 3 repeats kept in" in line
    data = _partial(line, out)
    # no repeat ran: bench_result.v1 calls that "failed" ("partial" needs a finished repeat)
    assert data["status"] == "failed" and data["repeats"] == []
    assert len(data["errors"]) == 1 and "No space left on device" in data["errors"][0]
    # the half-pushed file was removed by the device, the rest by the cleanup
    assert not list((dev.sandbox / "data/local/tmp").glob("device_bench_*"))
    assert dev.data_bytes() == 0


def test_runner_killed_on_device(make_device, adb_server, runner_root, pte_int8, tmp_path,
                                 capsys):
    dev = make_device()
    dev.kill_process("et_bench_runner", match="--output r1.json", after_s=0.05)
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out, "--repeats", "3",
                       "--iterations", "40"))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_RUNNER_KILLED == 7
    assert (f"the runner was killed by signal 9 (SIGKILL) on device {dev.serial} in repeat 2 "
            "of 3 (shell exit 137)") in line
    assert "low-memory killer" in line and "1 of 3 repeats kept in" in line
    data = _partial(line, out)
    assert data["status"] == "partial" and [r["index"] for r in data["repeats"]] == [0]
    assert len(data["errors"]) == 1 and "signal 9 (SIGKILL)" in data["errors"][0]


def test_thermal_hot_mid_run(make_device, adb_server, runner_root, pte_int8, tmp_path, capsys):
    dev = make_device()
    dev.heat_after("--output r0.json", status=3, temp_mc=52_000)  # SEVERE after repeat 1
    out = tmp_path / "out"
    code = main(_bench(pte_int8, dev.serial, adb_server.port, out, "--repeats", "3",
                       "--cooldown-timeout", "0.5"))
    line = _one_line(capsys, dev.serial)
    assert code == EXIT_TOO_HOT == 8
    assert (f"device {dev.serial} got hot mid-run: thermal status 3 SEVERE before repeat 2 of "
            "3, still above 1 LIGHT after waiting") in line
    assert "(--cooldown-timeout 0.5)" in line and "1 of 3 repeats kept in" in line
    data = _partial(line, out)
    assert data["status"] == "partial" and len(data["repeats"]) == 1
    assert "hot_mid_run" in data["flags"] and "hot_at_start" not in data["flags"]
    assert (data["repeats"][0]["thermal_before"], data["repeats"][0]["thermal_after"]) == (0, 3)
    assert "got hot mid-run" in data["errors"][0]
    zone = dev.sandbox / "sys/class/thermal/thermal_zone0/temp"
    assert zone.read_text().strip() == "52000"
    assert sum("et_bench_runner --model" in c for c in dev.shell_log) == 1


def test_exit_codes_documented_once(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert "exit codes" in help_text
    readme = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", README.read_text(),
                                                   re.MULTILINE)}
    assert readme == set(EXIT_CODES)
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^  {code} +{re.escape(meaning[:30])}", help_text, re.MULTILINE), code
