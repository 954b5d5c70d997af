"""The sample Android app as the benchmark harness: targets ``app:<serial>``
(``compress bench --mode app``).

Where `protocol.bench_device` runs the native runner in an adb shell, this runs the program
inside the app (`android_app/`), through ExecuTorch's Java API as a user's app would, with the
same warmup / iterations / repeats and the same result schema. In order:

1. check the device is online and the app is installed (`install_apk` installs an APK first:
   push, ``pm install -r -t -g``);
2. push the program (and the raw input file, when there is one) to
   ``/data/local/tmp/device_bench_app/``; the program stays there, so the app's converter screen
   lists it afterwards;
3. wait (bounded) for the phone to cool down, as the runner protocol does before each repeat;
4. ``am start -W -S -n org.lhqmobile.svc/org.lhqmobile.svc.BenchmarkActivity`` with the
   settings as intent extras (``--es model_path``, ``--ei warmup / iterations / repeats /
   threads``, ``--es input_path``, ``--ef audio_seconds``, ``--es result_name``, ``--es serial``);
5. poll until the app's result file appears in its external files folder
   (``/sdcard/Android/data/org.lhqmobile.svc/files/bench/<name>.json``; the app writes it through
   a rename, so it is never half a file), pull it, remove it from the phone;
6. validate it against bench_result.v1, check that the app measured this very program (sha256),
   and return it with the device block read over adb (the SoC name table of `soc.py`) and the
   local model path, like a runner result.

No result within the timeout, an ``am`` error, a result that fails the schema, or a result whose
status is ``failed`` is one `BenchError` saying which. The app cannot pin its threads to the big
cores (an app process has no taskset), so its results carry the flag ``not_pinned``.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

from device_bench.adb import AdbServer, Device
from device_bench.errors import BenchError
from device_bench.protocol import REMOTE_ROOT, BenchConfig, _check_pte, _cooldown, _safe, _tail
from device_bench.result import BenchResult, model_info, write_json
from device_bench.schema_check import problems, result_schema

log = logging.getLogger(__name__)

APP_PACKAGE = "org.lhqmobile.svc"
BENCH_ACTIVITY = f"{APP_PACKAGE}.BenchmarkActivity"
REMOTE_DIR = f"{REMOTE_ROOT}/device_bench_app"
RESULT_DIR = f"/sdcard/Android/data/{APP_PACKAGE}/files/bench"


def install_apk(server: AdbServer, serial: str, apk: str | Path, start: bool = True) -> None:
    """Install (or reinstall) the app from `apk` on `serial`: push, ``pm install -r -t -g``."""
    path = Path(apk)
    if not path.is_file() or path.suffix != ".apk":
        raise BenchError(f"--apk {path}: no such .apk file (build one: android_app/README.md)")
    server.ensure(start=start)
    dev = Device(server, serial)
    dev.check_online()
    remote = f"{REMOTE_ROOT}/device_bench_app.apk"
    dev.push(path, remote)
    rc, out = dev.run(f"pm install -r -t -g {remote}", timeout=300)
    dev.run(f"rm -f {remote}", timeout=60)
    if rc != 0 or "Success" not in out:
        raise BenchError(f"installing {path.name} on {serial} failed (exit {rc}): {_tail(out)}")
    log.info("%s: installed %s", serial, path.name)


def _extras(cfg: BenchConfig, model: str, inputs: str | None, name: str, serial: str) -> str:
    args = ["--es", "model_path", model, "--ei", "warmup", str(cfg.warmup),
            "--ei", "iterations", str(cfg.iterations), "--ei", "repeats", str(cfg.repeats),
            "--ei", "threads", str(cfg.threads), "--es", "result_name", name,
            "--es", "serial", serial]
    if inputs is not None:
        args += ["--es", "input_path", inputs]
    if cfg.audio_seconds is not None:
        args += ["--ef", "audio_seconds", repr(float(cfg.audio_seconds))]
    return " ".join(shlex.quote(a) for a in args)


def bench_app(
    pte: str | Path,
    serial: str,
    cfg: BenchConfig | None = None,
    *,
    out_dir: str | Path,
    server: AdbServer | None = None,
    poll_s: float = 0.5,
) -> BenchResult:
    """Benchmark `pte` inside the app on `serial` (see the module docstring). The wait for the
    result is bounded by ``cfg.run_timeout_s``."""
    cfg = cfg or BenchConfig()
    pte = _check_pte(pte)
    server = server or AdbServer()
    server.ensure(start=cfg.start_server)
    dev = Device(server, serial)
    dev.check_online()
    rc, out = dev.run(f"pm path {APP_PACKAGE}", timeout=60)
    if rc != 0 or "package:" not in out:
        raise BenchError(f"the app {APP_PACKAGE} is not installed on {serial}; give --apk "
                         "APP.apk (build it as android_app/README.md says)")
    info = dev.info()
    dev.check(f"mkdir -p {REMOTE_DIR}")
    model_remote = f"{REMOTE_DIR}/{pte.name}"
    dev.push(pte, model_remote)
    inputs_remote = None
    if cfg.input_file is not None:
        inputs_remote = f"{REMOTE_DIR}/{pte.stem}.inputs.raw"
        dev.push(Path(cfg.input_file), inputs_remote)
    name = f"{_safe(pte.stem)}_{uuid.uuid4().hex[:8]}.json"
    remote_result = f"{RESULT_DIR}/{name}"
    _, _, waited, hot = _cooldown(dev, cfg)
    extras = _extras(cfg, model_remote, inputs_remote, name, serial)
    rc, out = dev.run(f"am start -W -S -n {APP_PACKAGE}/{BENCH_ACTIVITY} {extras}", timeout=120)
    if rc != 0 or re.search(r"^(Error|Exception)", out, re.MULTILINE):
        raise BenchError(f"`am start` of {BENCH_ACTIVITY} failed on {serial} (exit {rc}): "
                         f"{_tail(out)}")
    t0 = time.monotonic()
    while dev.run(f"test -f {remote_result}", timeout=60)[0] != 0:
        if time.monotonic() - t0 > cfg.run_timeout_s:
            raise BenchError(
                f"no result from the app on {serial} after {cfg.run_timeout_s:.0f} s: "
                f"{remote_result} never appeared (is the app up to date? its screen or "
                f"`adb logcat -s {APP_PACKAGE}` says why)")
        time.sleep(poll_s)
    raw_dir = Path(out_dir) / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    local = raw_dir / f"{_safe(pte.stem)}__app_{_safe(serial)}.json"
    dev.pull(remote_result, local)
    dev.run(f"rm -f {remote_result}", timeout=60)
    return _finish(local, pte, serial, info.result_device(), cfg, waited, hot)


def _finish(local: Path, pte: Path, serial: str, device: dict[str, Any], cfg: BenchConfig,
            waited: float, hot: bool) -> BenchResult:
    try:
        data = json.loads(local.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"the app's result {local} is not JSON ({exc})") from None
    found = problems(data, result_schema()) if isinstance(data, dict) else ["not an object"]
    if found:
        raise BenchError(f"the app's result {local} is not a valid bench_result.v1 "
                         f"({len(found)} problems): " + "; ".join(found[:5]))
    if data["status"] == "failed":
        raise BenchError(f"the app could not benchmark {pte.name} on {serial}: "
                         + "; ".join(data["errors"] or ["no reason given"]))
    model = model_info(pte)
    if data["model"]["sha256"] != model["sha256"]:
        raise BenchError(f"the app measured another program than {pte.name} on {serial} "
                         f"(sha256 {data['model']['sha256'][:12]}, expected "
                         f"{model['sha256'][:12]})")
    data["target"] = f"app:{serial}"
    data["device"] = device
    data["model"] = model
    data["config"]["cooldown_timeout_s"] = cfg.cooldown_timeout_s
    data["config"]["input_file"] = cfg.input_file
    if data["repeats"]:
        data["repeats"][0]["cooldown_wait_s"] = round(float(waited), 3)
    if hot:
        data["flags"] = sorted({*data["flags"], "hot_at_start"})
    write_json(local, data)
    if data["status"] == "partial":
        raise BenchError(f"the app stopped on {serial}: " + "; ".join(data["errors"])
                         + f"; {len(data['repeats'])} of {cfg.repeats} repeats kept in {local}")
    return BenchResult.from_dict(data, str(local))
