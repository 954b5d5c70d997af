"""`compress bench`: measure `.pte` programs on the host or on adb devices, and compare results.

A failure is one line on stderr and an exit code that says which fault it was: the table is
`device_bench.errors.EXIT_CODES` (1 any other failure, 2 usage, 3 disconnected, 4 unauthorized,
5 offline, 6 storage full, 7 runner killed, 8 too hot, 9 adb server), printed by ``--help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.cli_util import add_command, print_table

if TYPE_CHECKING:
    from device_bench.errors import BenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        help="benchmark .pte files on the host or on phones over adb; compare results",
        example="compress bench model.pte --serial R5CX30ABCDE --threads 4 --json out.json",
        run=run,
        description="Benchmark each MODEL.pte on the host (default, or --host) or on adb "
        "devices (--serial, repeatable, or --all-devices; devices run in parallel), with the "
        "native runner (--mode runner) or inside the sample Android app (--mode app). "
        "Result files (*.json, bench_result.v1) given as inputs are added to the comparison.",
    )
    from device_bench.errors import exit_code_table

    p.epilog = (f"{p.epilog}\n\nexit codes (a failure is one line on stderr; a run that "
                "stopped keeps its measured\nrepeats in OUT_DIR/<model>__<target>.partial.json, "
                f"named in that line):\n{exit_code_table()}")
    p.add_argument("inputs", nargs="+", metavar="MODEL.pte|RESULT.json")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serial", action="append", default=[], metavar="S",
                       help="adb serial of a device (repeatable)")
    where.add_argument("--all-devices", action="store_true", help="every online adb device")
    where.add_argument("--host", action="store_true", help="this machine (the default)")
    p.add_argument("--mode", choices=["runner", "app"], default="runner",
                   help="on devices: the native runner in an adb shell (default), or the "
                   "sample app's benchmark activity started with `am start` (android_app/; "
                   "the program runs through ExecuTorch's Java API as in a user's app)")
    p.add_argument("--apk", type=Path, default=None, metavar="APP.apk",
                   help="with --mode app: install (or update) the app from this APK first")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="max seconds for one run on a device: the runner, or the app writing "
                   "its result (default 900)")
    p.add_argument("--threads", type=int, default=1, help="runner threads (0: runtime default)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--iterations", type=int, default=20, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per model; flagged when their p50s differ by > 5%%")
    p.add_argument("--audio-seconds", type=float, default=None,
                   help="audio seconds per forward call, for the real-time factor (default: "
                   "the chunk length in the program's sidecar, when it has one)")
    p.add_argument("--input-file", type=Path, default=None, metavar="FILE",
                   help="real inputs for every program: .npz (arrays in input order), .pt "
                   "(a tensor or a list of tensors) or .raw (the runner's bytes); default: "
                   "the example inputs the export wrote next to each program, else seeded "
                   "random values")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="write the result(s) (one object, or an array for several)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where raw runner output and partial results are kept "
                   "(default: next to --json, else ./runs/bench/<time>)")
    p.add_argument("--profile", action="store_true",
                   help="also run each program once more with ExecuTorch's ETDump profiler "
                   "(the timed repeats stay unprofiled) and print where its time goes per "
                   "operator, with the operators' total beside that run's measured latency; "
                   "the ETDump goes to OUT_DIR/profile/raw/<model>__<target>.r0.etdp, the full "
                   "table to OUT_DIR/profile/<model>__<target>.profile.json (OUT_DIR: see "
                   "--out-dir)")
    p.add_argument("--markdown", type=Path, default=None, help="write the comparison table")
    p.add_argument("--csv", type=Path, default=None, help="write the comparison as CSV")
    p.add_argument("--plot", type=Path, default=None, help="write a p50 latency plot (PNG)")
    p.add_argument("--port", type=int, default=None, help="adb server port (default 5037)")
    p.add_argument("--no-pin", action="store_true", help="do not pin to the big cores")
    p.add_argument("--cooldown-timeout", type=float, default=120.0,
                   help="max seconds to wait for the device to cool down before each repeat; "
                   "hot at the start: measured anyway and flagged hot_at_start; hot mid-run: "
                   "the run stops, its repeats kept as partial (exit 8)")
    p.add_argument("--no-start-server", action="store_true",
                   help="fail instead of starting the adb server")


def run(args: argparse.Namespace) -> int:
    """`compress bench`: every failure one line on stderr, the exit code its error's
    (`device_bench.errors.EXIT_CODES`)."""
    from device_bench.errors import BenchError

    try:
        return bench(args)
    except BenchError as exc:
        print(f"compress bench: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a runner's output tail can span several)."""
    return "; ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())


def exit_code(failures: list[BenchError]) -> int:
    """The exit code for these failures: theirs when they agree, else 1 (0 for none)."""
    from device_bench.errors import EXIT_FAILURE, EXIT_OK

    codes = {f.exit_code for f in failures}
    if not codes:
        return EXIT_OK
    return codes.pop() if len(codes) == 1 else EXIT_FAILURE


def bench(args: argparse.Namespace) -> int:
    """Measure and compare (`run` without the error handling); returns the exit code."""
    from device_bench.adb import AdbServer
    from device_bench.api import measure_many
    from device_bench.compare import plot, rows, to_csv, to_markdown
    from device_bench.errors import BenchError, DeviceError
    from device_bench.protocol import BenchConfig, save_results
    from device_bench.result import BenchResult

    ptes = [Path(x) for x in args.inputs if not x.endswith(".json")]
    loaded: list[BenchResult] = []
    for x in args.inputs:
        if x.endswith(".json"):
            loaded.extend(BenchResult.load(x))
    for p in ptes:
        if p.suffix != ".pte":
            raise BenchError(f"input {p} is neither a .pte program nor a .json result")
        if not p.is_file():
            raise BenchError(f"model file {p} does not exist")
    check_mode(args)
    cfg = BenchConfig(
        threads=args.threads, warmup=args.warmup, iterations=args.iterations,
        repeats=args.repeats, audio_seconds=args.audio_seconds, pin=not args.no_pin,
        cooldown_timeout_s=args.cooldown_timeout, start_server=not args.no_start_server,
        run_timeout_s=args.timeout,
    )
    server = AdbServer(port=args.port)
    targets: list[str]
    if args.all_devices:
        server.ensure(start=cfg.start_server)
        targets = [f"adb:{s}" for s, st in sorted(server.states().items()) if st == "device"]
        if not targets:
            raise DeviceError(f"no online adb device on port {server.port}")
    elif args.serial:
        targets = [f"adb:{s}" for s in args.serial]
    else:
        targets = ["host"]
    if args.mode == "app":
        targets = ["app:" + t.split(":", 1)[1] for t in targets]
        if args.apk is not None and ptes:
            from device_bench.app import install_apk

            for t in targets:
                install_apk(server, t.split(":", 1)[1], args.apk, start=cfg.start_server)
    if args.out_dir is not None:
        out_dir = args.out_dir
    elif args.json is not None:
        out_dir = args.json.parent / f"{args.json.stem}_raw"
    else:
        out_dir = Path("runs") / "bench" / time.strftime("%Y%m%d-%H%M%S")

    per_program = {str(p): program_config(p, cfg, args.input_file, out_dir) for p in ptes}
    jobs = [(p, t) for p in ptes for t in targets]
    outcomes = measure_many(jobs, cfg, out_dir, server, per_program) if jobs else []
    new = [o for o in outcomes if isinstance(o, BenchResult)]
    failures = [o for o in outcomes if not isinstance(o, BenchResult)]
    if len(jobs) == 1 and failures:
        raise failures[0]
    results = loaded + new
    if args.json is not None and new:
        save_results(new, args.json)
        print(f"wrote {args.json}")
    if results:
        table = rows(results)
        print_table(table, ["model", "device", "soc", "threads", "p50_ms", "p90_ms", "min_ms",
                            "trimmean_ms", "load_ms", "pss_mb", "rtf", "spread_pct", "status"])
    for r in new:
        if "replication_spread_above_threshold" in r.flags:
            print(f"warning: {r.model['name']} on {r.target}: repeats differ by "
                  f"{r.replication['spread'] * 100:.1f} % (> 5 %); re-run on a cooler, idle "
                  "device", file=sys.stderr)
    if args.markdown is not None:
        args.markdown.write_text(to_markdown(results))
    if args.csv is not None:
        args.csv.write_text(to_csv(results))
    if args.plot is not None and results:
        plot(results, args.plot)
    if args.profile:
        failures += print_profiles(jobs, per_program, out_dir, server)
    for f in failures:
        print(f"compress bench: error: {one_line(f)}", file=sys.stderr)
    return exit_code(failures)


def check_mode(args: argparse.Namespace) -> None:
    """--mode app needs devices; --apk needs --mode app; --profile needs the runner."""
    from device_bench.errors import BenchError

    if args.mode == "app":
        if not (args.serial or args.all_devices):
            raise BenchError("--mode app runs on phones: give --serial S (or --all-devices)")
        if args.profile:
            raise BenchError("--profile needs the native runner (--mode runner): the app has "
                             "no ETDump profiler")
    elif args.apk is not None:
        raise BenchError("--apk is for --mode app (the app's APK to install)")
    if not args.timeout > 0:
        raise BenchError(f"--timeout {args.timeout}: expected seconds > 0")


def print_profiles(jobs: list[tuple[Path, str]], per_program: dict[str, Any], out_dir: Path,
                   server: Any, top: int = 20) -> list[BenchError]:
    """Profile each (program, target) job once (`device_bench.api.profile`) and print its
    per-operator table and check; return the errors (one job's failure does not stop the
    others)."""
    from device_bench.api import profile, profile_table_path
    from device_bench.errors import BenchError

    errors: list[BenchError] = []
    for pte, target in jobs:
        try:
            prof = profile(pte, target, per_program[str(pte)], out_dir, server)
        except BenchError as exc:
            errors.append(type(exc)(f"profile of {pte.name} on {target}: {exc}"))
            continue
        print(f"\nprofile: {pte.name} on {target}, ms per forward over {prof.forwards} timed "
              "forward calls (ETDump; the profiler's own cost is in these numbers)")
        print_table(prof.display_rows(top), ["operator", "kind", "calls", "ms/forward", "share"])
        print(prof.check_line())
        for note in prof.notes:
            print(f"note: {note}")
        print(f"ETDump: {prof.etdump}\ntable: {profile_table_path(prof)}")
    return errors


def read_inputs(path: Path) -> list[Any]:
    """Tensors of an ``.npz`` (``input_0``, ``input_1``, ... in index order, else file order)
    or ``.pt`` (one tensor, or a list / tuple of them) input file."""
    from device_bench.errors import BenchError

    if not path.is_file():
        raise BenchError(f"input file {path} does not exist")
    if path.suffix == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if all(n.startswith("input_") and n[6:].isdigit() for n in names):
                    names.sort(key=lambda n: int(n[6:]))
                return [z[n] for n in names]
        except (OSError, ValueError) as exc:
            raise BenchError(f"input file {path}: not a readable .npz ({exc})") from exc
    if path.suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle or a damaged file: one line, not a traceback
            raise BenchError(f"input file {path}: not a tensor file ({exc})") from exc
        items = list(obj) if isinstance(obj, (list, tuple)) else [obj]
        if not items or not all(isinstance(t, torch.Tensor) for t in items):
            raise BenchError(f"input file {path}: expected a tensor or a list of tensors")
        return items
    raise BenchError(f"input file {path}: expected .npz, .pt or .raw")


def program_config(pte: Path, cfg: Any, input_file: Path | None, out_dir: Path) -> Any:
    """`cfg` for one program: its inputs (`input_file`, else the example inputs named by the
    program's sidecar, else none: seeded random values) and, unless `cfg` has them (from the
    command line), its audio seconds per call from the sidecar's chunk length."""
    import json
    from dataclasses import replace

    from device_bench.errors import BenchError
    from device_bench.protocol import write_input_file

    side = pte.with_suffix(".json")
    meta: dict[str, Any] = {}
    sidecar: dict[str, Any] = {}
    example = None
    if side.is_file():
        try:
            sidecar = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"sidecar {side} is not readable JSON ({exc}); move it away to "
                             "bench without it") from exc
        meta = sidecar.get("metadata") or {}
        if sidecar.get("example_inputs"):
            example = side.parent / sidecar["example_inputs"]
    raw = None
    source = input_file or (example if example is not None and example.is_file() else None)
    if source is None:
        ints = [(i, d) for i, d in enumerate(sidecar.get("inputs") or [])
                if "int" in str(d.get("dtype", ""))]
        for i, d in ints:
            print(f"compress bench: {pte.name}: input {i} ({d.get('dtype')} "
                  f"{d.get('shape')}) is an index that random values can put out of range; "
                  "give real inputs with --input-file FILE", file=sys.stderr)
    if source is not None and source.suffix == ".raw":
        raw = str(source)
    elif source is not None:
        raw = str(write_input_file(read_inputs(source), out_dir / f"{pte.stem}.inputs.raw"))
    seconds = cfg.audio_seconds
    if seconds is None:
        if meta.get("chunk_seconds"):
            seconds = float(meta["chunk_seconds"])
        elif meta.get("chunk_samples") and meta.get("sample_rate"):
            seconds = float(meta["chunk_samples"]) / float(meta["sample_rate"])
    return replace(cfg, input_file=raw, audio_seconds=seconds)
