"""The benchmark protocol: how one `.pte` is measured on the host or on an adb device.

On a device (`bench_device`), in order:

1. check the device is online and authorized; read its info (ABI, clusters, thermal, battery);
2. pick the runner bundle for its ABI (`BenchError` if none was built — before touching it);
3. push the bundle and the model to ``/data/local/tmp/device_bench_<id>/``;
4. pin to the big cores (every CPU outside the slowest cluster) with ``taskset`` when the
   device allows it (non-rooted phones often do; if not, the result is flagged `not_pinned`);
5. for each of R repeats: wait (bounded) until the thermal status is at most
   `max_thermal_status` (flag `hot_at_start` when the wait times out), read cpufreq, run the
   runner (warmup + N timed iterations in one process), read cpufreq and thermal status
   again, pull the runner's JSON;
6. flag the result when the per-repeat p50s differ by more than 5 % (MLPerf Mobile's
   replication rule); remove the device directory.

Every repeat's raw JSON is pulled into `out_dir` as soon as it exists, and a partial
bench_result is rewritten after each repeat, so when the device drops, the server stops or the
runner fails, the error names the file that keeps what was already measured (status
``partial``, or ``failed`` when no repeat finished, with the error in its ``errors``).

Device faults are errors of their own class, each with its exit code (`device_bench.errors`):

* a push that fails with ``No space left on device`` is `DeviceStorageFull`, and says how many
  megabytes the runner bundle and the model need under ``/data/local/tmp``;
* a runner that dies from a signal (the shell's exit status 128 + N: 137 for SIGKILL from the
  low-memory killer, 139 for SIGSEGV) is `RunnerKilled`, naming the signal and the repeat;
* a device that was cool at the start and gets hot mid-run (thermal status above
  `max_thermal_status` before a later repeat, still there after `cooldown_timeout_s`) stops the
  run with `DeviceTooHot`, the result flagged ``hot_mid_run``: the repeats already measured ran
  cool, the rest would run throttled, and pooling both would describe neither. A device that is
  already hot at the start is measured anyway and flagged ``hot_at_start`` (the user chose the
  timeout; every repeat is then equally suspect).

On the host (`bench_host`) the same runner bundle runs as a subprocess with the same repeats,
statistics and result schema (no pinning; cpufreq from sysfs when the host exposes it).

With ``BenchConfig(etdump=True)`` each repeat's runner also writes an ETDump of its timed
iterations, kept next to the repeat's raw JSON (``.etdp``; pulled back from a device) and named
by the repeat's ``etdump_path`` (`device_bench.etdump` reads it).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_bench.adb import AdbServer, Device, DeviceInfo
from device_bench.errors import (
    BenchError,
    DeviceError,
    DeviceStorageFull,
    DeviceTooHot,
    RunnerKilled,
)
from device_bench.result import BenchResult, build_result, model_info, repeat_record, write_json
from device_bench.runner_build import RUNNER_NAME, build_host_runner, host_abi, runner_bundle
from device_bench.stats import REPLICATION_THRESHOLD

log = logging.getLogger(__name__)

REMOTE_ROOT = "/data/local/tmp"
_STATE_SCRIPT = (
    "echo '@@thermal'; dumpsys thermalservice 2>/dev/null | grep -m1 'Thermal Status'; "
    "echo '@@cur'; for c in /sys/devices/system/cpu/cpu[0-9]*; do "
    "echo \"${c##*/} $(cat $c/cpufreq/scaling_cur_freq 2>/dev/null)\"; done"
)
# Android's thermal status levels (PowerManager.THERMAL_STATUS_*)
THERMAL_NAMES = ("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN")


@dataclass(frozen=True)
class BenchConfig:
    """How to measure. Defaults follow the protocol in the module docstring."""

    threads: int = 1
    warmup: int = 3
    iterations: int = 20
    repeats: int = 3
    seed: int = 0
    audio_seconds: float | None = None
    pin: bool = True
    max_thermal_status: int = 1  # Android PowerManager: 0 none, 1 light, 2 moderate, ...
    cooldown_timeout_s: float = 120.0
    cooldown_poll_s: float = 5.0
    replication_threshold: float = REPLICATION_THRESHOLD
    run_timeout_s: float = 900.0
    start_server: bool = True
    # raw little-endian bytes of every tensor input, concatenated in input order (see
    # `write_input_file`); None: the runner fills inputs with seeded random values, which is
    # wrong for index inputs such as a speaker id
    input_file: str | None = None
    # the runner also writes an ETDump of each repeat's timed iterations (`<raw>.etdp` next to
    # the repeat's raw JSON, pulled back from a device); the operator profiler adds overhead,
    # so `device_bench.api.profile` runs it as a run of its own
    etdump: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.threads < 0:
            problems.append(f"threads={self.threads} (expected >= 0; 0 = runtime default)")
        if self.warmup < 0:
            problems.append(f"warmup={self.warmup} (expected >= 0)")
        if self.iterations < 1:
            problems.append(f"iterations={self.iterations} (expected >= 1)")
        if self.repeats < 1:
            problems.append(f"repeats={self.repeats} (expected >= 1)")
        if self.audio_seconds is not None and self.audio_seconds <= 0:
            problems.append(f"audio_seconds={self.audio_seconds} (expected > 0)")
        if self.cooldown_timeout_s < 0:
            problems.append(f"cooldown_timeout_s={self.cooldown_timeout_s} (expected >= 0)")
        if self.input_file is not None and not Path(self.input_file).is_file():
            problems.append(f"input_file={self.input_file} (no such file)")
        if problems:
            raise BenchError("invalid benchmark settings: " + "; ".join(problems))

    def to_result_config(self, pinned: list[int] | None, runner: str) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "warmup": self.warmup,
            "iterations": self.iterations,
            "repeats": self.repeats,
            "seed": self.seed,
            "pinned_cpus": pinned,
            "audio_seconds": self.audio_seconds,
            "cooldown_timeout_s": self.cooldown_timeout_s,
            "input_file": self.input_file,
            "runner": runner,
            **({"etdump": True} if self.etdump else {}),
        }


def _runner_args(cfg: BenchConfig, model: str, output: str, inputs: str | None = None,
                 etdump: str | None = None) -> list[str]:
    args = [
        "--model", model, "--output", output, "--threads", str(cfg.threads),
        "--warmup", str(cfg.warmup), "--iterations", str(cfg.iterations), "--seed", str(cfg.seed),
    ]
    if inputs is not None:
        args += ["--input-file", inputs]
    if etdump is not None:
        args += ["--etdump", etdump]
    return args


def etdump_path(raw_json: Path) -> Path:
    """Where a repeat's ETDump is kept: next to its raw runner JSON, suffix ``.etdp``."""
    return raw_json.with_suffix(".etdp")


def _check_etdump(path: Path, raw: dict[str, Any]) -> str:
    if not path.is_file() or path.stat().st_size == 0:
        raise BenchError(f"the runner wrote no ETDump at {path} (its report says "
                         f"etdump_path={raw.get('etdump_path')!r})")
    return str(path)


def write_input_file(tensors: Any, path: str | Path) -> Path:
    """Write `tensors` (a sequence of torch tensors or numpy arrays) as the runner's
    ``--input-file``: each one's raw little-endian bytes, contiguous, in input order."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for t in tensors:
            a = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.asarray(t)
            f.write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
    return path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


class _Collector:
    """Keeps repeats on disk as they arrive and builds the (partial) result."""

    def __init__(self, out_dir: Path, target: str, pte: Path, cfg: BenchConfig) -> None:
        self.out_dir = Path(out_dir)
        self.raw_dir = self.out_dir / "raw"
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.cfg = cfg
        self.model = model_info(pte)
        self.stem = f"{_safe(pte.stem)}__{_safe(target)}"
        self.partial_path = self.out_dir / f"{self.stem}.partial.json"
        self.repeats: list[dict[str, Any]] = []
        self.flags: list[str] = []
        self.device: dict[str, Any] = {}
        self.pinned: list[int] | None = None

    def raw_path(self, i: int) -> Path:
        return self.raw_dir / f"{self.stem}.r{i}.json"

    def result(self, errors: list[str]) -> BenchResult:
        return build_result(
            target=self.target,
            device=self.device,
            model=self.model,
            config=self.cfg.to_result_config(self.pinned, RUNNER_NAME),
            repeats=self.repeats,
            flags=self.flags,
            errors=errors,
            threshold=self.cfg.replication_threshold,
        )

    def checkpoint(self) -> None:
        if self.device:
            self.result([f"incomplete: {len(self.repeats)} of {self.cfg.repeats} repeats"]).save(
                self.partial_path
            )

    def fail(self, exc: BenchError) -> BenchError:
        """Save what was collected and return the error to raise (same class, path added)."""
        kept = ""
        if self.device:
            self.result([str(exc)]).save(self.partial_path)
            kept = (f"; {len(self.repeats)} of {self.cfg.repeats} repeats kept in "
                    f"{self.partial_path}")
        return type(exc)(f"{exc}{kept}")

    def finish(self) -> BenchResult:
        self.partial_path.unlink(missing_ok=True)
        return self.result([])


def _parse_state(text: str) -> tuple[int | None, list[int | None]]:
    thermal: int | None = None
    cur: dict[int, int | None] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("@@"):
            section = line[2:].strip()
            continue
        if section == "thermal":
            m = re.search(r"Thermal Status:\s*(\d+)", line)
            if m:
                thermal = int(m.group(1))
        elif section == "cur":
            parts = line.split()
            if parts and parts[0][3:].isdigit():
                cur[int(parts[0][3:])] = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() \
                    else None
    freqs = [cur.get(i) for i in range(max(cur) + 1)] if cur else []
    return thermal, freqs


def _device_state(dev: Device) -> tuple[int | None, list[int | None]]:
    _, out = dev.run(_STATE_SCRIPT, timeout=60)
    return _parse_state(out)


def _cooldown(dev: Device, cfg: BenchConfig) -> tuple[int | None, list[int | None], float, bool]:
    """Wait (bounded) for the thermal status to drop; return (status, cpufreq, waited, hot)."""
    t0 = time.monotonic()
    status, freqs = _device_state(dev)
    while status is not None and status > cfg.max_thermal_status:
        waited = time.monotonic() - t0
        if waited >= cfg.cooldown_timeout_s:
            log.warning("%s still at thermal status %d after %.0f s; measuring anyway",
                        dev.serial, status, waited)
            return status, freqs, waited, True
        log.info("%s: thermal status %d > %d, cooling down", dev.serial, status,
                 cfg.max_thermal_status)
        time.sleep(min(cfg.cooldown_poll_s, max(0.0, cfg.cooldown_timeout_s - waited)))
        status, freqs = _device_state(dev)
    return status, freqs, time.monotonic() - t0, False


def _pin_prefix(dev: Device, info: DeviceInfo, cfg: BenchConfig) -> tuple[str, list[int] | None,
                                                                          str]:
    """`taskset MASK ` when the device lets us pin to its big cores; else ("", None, reason)."""
    if not cfg.pin:
        return "", None, "pinning disabled"
    big = info.big_cpus()
    if not big:
        return "", None, "no cpufreq clusters reported"
    mask = sum(1 << c for c in big)
    rc, out = dev.run(f"taskset {mask:x} true", timeout=30)
    if rc != 0:
        return "", None, f"taskset {mask:x} refused: {out.strip()[-200:]}"
    return f"taskset {mask:x} ", big, ""


def bench_device(
    pte: str | Path,
    serial: str,
    cfg: BenchConfig | None = None,
    *,
    out_dir: str | Path,
    server: AdbServer | None = None,
    runner_root: Path | None = None,
) -> BenchResult:
    """Benchmark `pte` on the adb device `serial` (see the module docstring for the protocol)."""
    cfg = cfg or BenchConfig()
    pte = _check_pte(pte)
    server = server or AdbServer()
    server.ensure(start=cfg.start_server)
    dev = Device(server, serial)
    dev.check_online()
    info = dev.info()
    bundle = runner_bundle(info.abi or "unknown", runner_root)
    col = _Collector(Path(out_dir), f"adb:{serial}", pte, cfg)
    col.device = info.result_device()
    remote = f"{REMOTE_ROOT}/device_bench_{uuid.uuid4().hex[:10]}"
    pushes = [(f, f"{remote}/{f.name}", 0o755 if f.name == RUNNER_NAME else 0o644)
              for f in sorted(bundle.iterdir()) if f.is_file()]
    pushes.append((pte, f"{remote}/model.pte", 0o644))
    if cfg.input_file is not None:
        pushes.append((Path(cfg.input_file), f"{remote}/inputs.raw", 0o644))
    pushed = False
    started_hot = False
    try:
        dev.check(f"mkdir -p {remote}")
        pushed = True
        _push_all(dev, pushes, bundle)
        prefix, col.pinned, reason = _pin_prefix(dev, info, cfg)
        if col.pinned is None:
            col.flags.append("not_pinned")
            log.warning("%s: not pinned to big cores (%s)", serial, reason)
        for i in range(cfg.repeats):
            t_before, f_before, waited, hot = _cooldown(dev, cfg)
            if hot and i == 0:
                started_hot = True
                col.flags.append("hot_at_start")
            elif hot and not started_hot:
                col.flags.append("hot_mid_run")
                raise _too_hot(serial, t_before, i, waited, cfg)
            out_name = f"r{i}.json"
            args = " ".join(_runner_args(cfg, "model.pte", out_name,
                                         "inputs.raw" if cfg.input_file else None,
                                         f"r{i}.etdp" if cfg.etdump else None))
            rc, out = dev.run(
                f"cd {remote} && LD_LIBRARY_PATH={remote} {prefix}./{RUNNER_NAME} {args}",
                timeout=cfg.run_timeout_s,
            )
            t_after, f_after = _device_state(dev)
            if rc > 128 and _signal_name(rc - 128):
                raise _killed(serial, rc, i, cfg)
            if rc != 0:
                raise BenchError(f"the runner failed on {serial} in repeat {i + 1} of "
                                 f"{cfg.repeats} (exit {rc}): {_tail(out)}")
            local = col.raw_path(i)
            dev.pull(f"{remote}/{out_name}", local)
            raw = json.loads(local.read_text())
            col.repeats.append(repeat_record(
                i, raw, thermal_before=t_before, thermal_after=t_after, cooldown_wait_s=waited,
                cpufreq_before=f_before, cpufreq_after=f_after, raw_path=str(local),
            ))
            if cfg.etdump:
                dev.pull(f"{remote}/r{i}.etdp", etdump_path(local))
                col.repeats[-1]["etdump_path"] = _check_etdump(etdump_path(local), raw)
            col.checkpoint()
    except BenchError as exc:
        raise col.fail(exc) from None
    finally:
        if pushed:
            _cleanup(dev, remote)
    return col.finish()


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _push_all(dev: Device, pushes: list[tuple[Path, str, int]], bundle: Path) -> None:
    """Push every (local, remote, mode); a full device says how much space the push needs."""
    try:
        for local, remote, mode in pushes:
            dev.push(local, remote, mode=mode)
    except DeviceStorageFull as exc:
        sizes = {local: local.stat().st_size for local, _, _ in pushes}
        runner = sum(n for p, n in sizes.items() if p.parent == bundle)
        need = sum(sizes.values())
        raise DeviceStorageFull(
            f"{exc}; the benchmark needs {_mb(need)} free under {REMOTE_ROOT} (runner bundle "
            f"{_mb(runner)}, model and inputs {_mb(need - runner)}): free at least that much "
            f"on the phone (delete files or apps; `adb -s {dev.serial} shell df -h /data` "
            "shows what is free) and re-run") from None


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9; empty when `number` is no signal."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""


def _killed(serial: str, rc: int, i: int, cfg: BenchConfig) -> RunnerKilled:
    """The error for a runner that died from signal ``rc - 128`` in repeat `i`."""
    number = rc - 128
    if number == signal.SIGKILL:
        why = ("the low-memory killer or a `kill -9` ended it: close other apps (or use fewer "
               "--threads or a smaller model) and re-run")
    else:
        why = (f"it crashed: `adb -s {serial} logcat -d -b crash` shows where; re-run once "
               "the cause is fixed")
    return RunnerKilled(
        f"the runner was killed by signal {number} ({_signal_name(number)}) on device {serial} "
        f"in repeat {i + 1} of {cfg.repeats} (shell exit {rc}); {why}")


def _thermal_name(status: int | None) -> str:
    if status is None or not 0 <= status < len(THERMAL_NAMES):
        return f"{status}"
    return f"{status} {THERMAL_NAMES[status]}"


def _too_hot(serial: str, status: int | None, i: int, waited: float,
             cfg: BenchConfig) -> DeviceTooHot:
    """The error for a device that got hot before repeat `i` and did not cool down."""
    return DeviceTooHot(
        f"device {serial} got hot mid-run: thermal status {_thermal_name(status)} before "
        f"repeat {i + 1} of {cfg.repeats}, still above {_thermal_name(cfg.max_thermal_status)} "
        f"after waiting {waited:.1f} s (--cooldown-timeout {cfg.cooldown_timeout_s:g}); the "
        "remaining repeats would run throttled, so the run stopped: let the phone cool down "
        "(off the charger, screen off, no other load) or raise --cooldown-timeout, and re-run")


def _cleanup(dev: Device, remote: str) -> None:
    try:
        dev.run(f"rm -rf {remote}", timeout=60)
    except DeviceError as exc:
        log.warning("could not remove %s on %s: %s", remote, dev.serial, exc)


def _tail(text: str, n: int = 600) -> str:
    lines = [ln for ln in text.strip().splitlines() if not ln.startswith("I ")]
    return "\n".join(lines)[-n:] or text.strip()[-n:]


def _check_pte(pte: str | Path) -> Path:
    p = Path(pte)
    if not p.is_file():
        raise BenchError(f"model file {p} does not exist (expected a .pte program)")
    if p.suffix != ".pte":
        raise BenchError(f"model file {p} is not a .pte (expected an ExecuTorch program)")
    return p


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def host_cpufreq(kind: str = "scaling_cur_freq") -> list[int | None] | None:
    cpus = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*"),
                  key=lambda p: int(p.name[3:]))
    vals = [_read_int(c / "cpufreq" / kind) for c in cpus]
    return vals if any(v is not None for v in vals) else None


def host_device() -> dict[str, Any]:
    """The `device` block for a host run."""
    cpu_model, vendor = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                cpu_model = line.split(":", 1)[1].strip()
            elif line.startswith("vendor_id") and ":" in line:
                vendor = line.split(":", 1)[1].strip()
    except OSError:
        pass  # no /proc/cpuinfo (not Linux): keep platform's answer
    maxf = host_cpufreq("cpuinfo_max_freq") or [None] * (os.cpu_count() or 1)
    return {
        "kind": "host",
        "serial": None,
        "model": platform.node(),
        "manufacturer": vendor,
        "soc": cpu_model,
        "soc_model": cpu_model,
        "abi": host_abi(),
        "android_version": None,
        "cpu_max_khz": maxf,
        "clusters": [],
        "thermal_status": None,
        "battery_level": None,
    }


def run_runner(bundle: Path, pte: Path, output: Path, cfg: BenchConfig,
               cpus: list[int] | None = None) -> dict[str, Any]:
    """Run the runner bundle on the host once; return its JSON (BenchError on failure)."""
    inputs = str(Path(cfg.input_file).resolve()) if cfg.input_file else None
    dump = str(etdump_path(output)) if cfg.etdump else None
    cmd = [str(bundle / RUNNER_NAME), *_runner_args(cfg, str(pte), str(output), inputs, dump)]
    if cpus:
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.run_timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the runner timed out after {cfg.run_timeout_s} s on {pte}") from None
    if proc.returncode != 0:
        raise BenchError(f"the runner failed on {pte} (exit {proc.returncode}): "
                         f"{_tail(proc.stderr + proc.stdout)}")
    return json.loads(output.read_text())


def bench_host(
    pte: str | Path,
    cfg: BenchConfig | None = None,
    *,
    out_dir: str | Path,
    runner_root: Path | None = None,
    build: bool = True,
    target: str | None = None,
) -> BenchResult:
    """Benchmark `pte` on this machine with the host runner bundle (built when missing)."""
    cfg = cfg or BenchConfig()
    pte = _check_pte(pte)
    try:
        bundle = runner_bundle(host_abi(), runner_root)
    except BenchError:
        if not build:
            raise
        bundle = build_host_runner(runner_root)
    col = _Collector(Path(out_dir), target or f"host:threads={cfg.threads}", pte, cfg)
    col.device = host_device()
    try:
        for i in range(cfg.repeats):
            f_before = host_cpufreq()
            local = col.raw_path(i)
            raw = run_runner(bundle, pte.resolve(), local, cfg)
            col.repeats.append(repeat_record(
                i, raw, cpufreq_before=f_before, cpufreq_after=host_cpufreq(),
                raw_path=str(local),
            ))
            if cfg.etdump:
                col.repeats[-1]["etdump_path"] = _check_etdump(etdump_path(local), raw)
            col.checkpoint()
    except BenchError as exc:
        raise col.fail(exc) from None
    return col.finish()


def save_results(results: list[BenchResult], path: str | Path) -> Path:
    """Write one result as an object, several as an array (both valid bench_result.v1 files)."""
    data: Any = results[0].to_dict() if len(results) == 1 else [r.to_dict() for r in results]
    from device_bench.schema_check import validate_result

    for item in data if isinstance(data, list) else [data]:
        validate_result(item, "result")
    return write_json(path, data)
