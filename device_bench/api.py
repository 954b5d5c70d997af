"""The library entry points: `measure()` for one target, `measure_many()` for several at once,
`profile()` for where one program's time goes (per operator, from an ETDump).

Targets are strings (DESIGN.md, "Latency targets"): ``host``, ``host:threads=N`` and
``adb:<serial>`` (e.g. ``adb:R5CX30ABCDE`` or ``adb:127.0.0.1:5555``) run the native runner;
``app:<serial>`` runs the program inside the sample Android app (`device_bench.app`).
`compress` builds its block-latency tables with `measure(pte, target)`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from device_bench.adb import AdbServer
from device_bench.errors import BenchError
from device_bench.etdump import OperatorProfile, profile_of
from device_bench.protocol import BenchConfig, bench_device, bench_host
from device_bench.result import BenchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    kind: str  # "host" | "adb" | "app"
    serial: str | None = None
    threads: int | None = None

    def __str__(self) -> str:
        if self.kind in ("adb", "app"):
            return f"{self.kind}:{self.serial}"
        return "host" if self.threads is None else f"host:threads={self.threads}"


def parse_target(text: str) -> Target:
    """Parse ``host``, ``host:threads=N``, ``adb:SERIAL`` or ``app:SERIAL``."""
    t = text.strip()
    if t == "host":
        return Target("host")
    if t.startswith("host:"):
        opt = t[len("host:") :]
        key, _, value = opt.partition("=")
        if key == "threads" and value.isdigit():
            return Target("host", threads=int(value))
        raise BenchError(f"target {text!r}: unknown host option {opt!r}; expected threads=N")
    if t.startswith("adb:") and len(t) > 4:
        return Target("adb", serial=t[4:])
    if t.startswith("app:") and len(t) > 4:
        return Target("app", serial=t[4:])
    raise BenchError(f"target {text!r} not understood; expected host, host:threads=N, "
                     "adb:SERIAL or app:SERIAL")


def measure(
    pte_path: str | Path,
    target: str = "host",
    warmup: int = 3,
    iterations: int = 20,
    *,
    repeats: int = 1,
    threads: int | None = None,
    out_dir: str | Path | None = None,
    server: AdbServer | None = None,
    config: BenchConfig | None = None,
    input_file: str | Path | None = None,
) -> BenchResult:
    """Measure one `.pte` on one target and return its BenchResult.

    `input_file` holds the inputs' raw bytes (:func:`device_bench.protocol.write_input_file`);
    without it the runner uses seeded random values.

    `threads` (or ``host:threads=N``) sets the runner's thread count (default 1). Raw runner
    output goes to `out_dir` (a temporary directory when not given, removed afterwards on
    success; kept and named in the error on failure).
    """
    t = parse_target(target)
    cfg = config or BenchConfig()
    n_threads = threads if threads is not None else (t.threads if t.threads is not None
                                                     else cfg.threads)
    cfg = replace(cfg, warmup=warmup, iterations=iterations, repeats=repeats, threads=n_threads,
                  input_file=str(input_file) if input_file is not None else cfg.input_file)
    if out_dir is not None:
        return _run(pte_path, t, cfg, Path(out_dir), server)
    tmp = tempfile.mkdtemp(prefix="device_bench_")
    result = _run(pte_path, t, cfg, Path(tmp), server)
    shutil.rmtree(tmp, ignore_errors=True)
    for r in result.repeats:
        r["raw_path"] = None
    return result


def _run(pte: str | Path, t: Target, cfg: BenchConfig, out_dir: Path,
         server: AdbServer | None) -> BenchResult:
    if t.kind == "host":
        return bench_host(pte, cfg, out_dir=out_dir)
    assert t.serial is not None
    if t.kind == "app":
        from device_bench.app import bench_app

        return bench_app(pte, t.serial, cfg, out_dir=out_dir, server=server)
    return bench_device(pte, t.serial, cfg, out_dir=out_dir, server=server)


def measure_many(
    jobs: Sequence[tuple[str | Path, str]],
    cfg: BenchConfig,
    out_dir: str | Path,
    server: AdbServer | None = None,
    per_program: Mapping[str, BenchConfig] | None = None,
) -> list[BenchResult | BenchError]:
    """Run (pte, target) jobs: different devices in parallel threads, one device's jobs in order.

    `per_program` maps a job's pte path (as given) to the config it runs with instead of `cfg`
    (e.g. its own input file and audio seconds).

    Host jobs run on their own, after the device jobs, so they do not compete with the adb
    transfers for this machine's cores. Returns, in job order, a result or the error raised.
    """
    parsed = [(pte, parse_target(tgt)) for pte, tgt in jobs]
    out: list[BenchResult | BenchError | None] = [None] * len(parsed)
    by_device: dict[str, list[int]] = {}
    for i, (_, t) in enumerate(parsed):
        if t.kind in ("adb", "app"):
            by_device.setdefault(str(t.serial), []).append(i)

    def run_device(indices: list[int]) -> None:
        for i in indices:
            pte, t = parsed[i]
            try:
                out[i] = _run(pte, t, (per_program or {}).get(str(pte), cfg), Path(out_dir),
                              server)
            except BenchError as exc:
                out[i] = exc

    if by_device:
        with ThreadPoolExecutor(max_workers=len(by_device)) as pool:
            list(pool.map(run_device, by_device.values()))
    run_device([i for i, (_, t) in enumerate(parsed) if t.kind == "host"])
    return [r for r in out if r is not None]


PROFILE_DIR = "profile"


def profile(
    pte: str | Path,
    target: str,
    cfg: BenchConfig,
    out_dir: str | Path,
    server: AdbServer | None = None,
) -> OperatorProfile:
    """Run `pte` once more on `target` with the ETDump profiler on (`cfg`'s warmup, iterations
    and inputs, one repeat) and return its per-operator table, checked against the latency
    that same run measured.

    It is a run of its own because the profiler costs time: the timed repeats of a benchmark
    stay unprofiled. Files go to ``out_dir/profile/``: the runner's JSON and the ETDump under
    ``raw/`` (``<model>__<target>.r0.json`` / ``.r0.etdp``; pulled back from a device) and the
    table as ``<model>__<target>.profile.json``.
    """
    t = parse_target(target)
    where = Path(out_dir) / PROFILE_DIR
    threads = t.threads if t.threads is not None else cfg.threads
    result = _run(pte, t, replace(cfg, repeats=1, etdump=True, threads=threads), where,
                  server)
    prof = profile_of(result.repeats[0], warmup=cfg.warmup)
    prof.save(profile_table_path(prof))
    return prof


def profile_table_path(prof: OperatorProfile) -> Path:
    """Where :func:`profile` writes the table of `prof`: ``<model>__<target>.profile.json``
    in the directory above its ETDump's ``raw/``."""
    dump = Path(prof.etdump)
    return dump.parent.parent / (dump.name.rsplit(".r0.", 1)[0] + ".profile.json")
