"""`compress bench`: measure `.pte` programs on the host or on adb devices, and compare results."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from compress.cli_util import add_command, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        help="benchmark .pte files on the host or on phones over adb; compare results",
        example="compress bench model.pte --serial R5CX30ABCDE --threads 4 --json out.json",
        run=run,
        description="Benchmark each MODEL.pte on the host (default, or --host) or on adb "
        "devices (--serial, repeatable, or --all-devices; devices run in parallel). "
        "Result files (*.json, bench_result.v1) given as inputs are added to the comparison.",
    )
    p.add_argument("inputs", nargs="+", metavar="MODEL.pte|RESULT.json")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serial", action="append", default=[], metavar="S",
                       help="adb serial of a device (repeatable)")
    where.add_argument("--all-devices", action="store_true", help="every online adb device")
    where.add_argument("--host", action="store_true", help="this machine (the default)")
    p.add_argument("--threads", type=int, default=1, help="runner threads (0: runtime default)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--iterations", type=int, default=20, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per model; flagged when their p50s differ by > 5%%")
    p.add_argument("--audio-seconds", type=float, default=None,
                   help="audio seconds per forward call, for the real-time factor")
    p.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="write the result(s) (one object, or an array for several)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where raw runner output and partial results are kept "
                   "(default: next to --json, else ./runs/bench/<time>)")
    p.add_argument("--markdown", type=Path, default=None, help="write the comparison table")
    p.add_argument("--csv", type=Path, default=None, help="write the comparison as CSV")
    p.add_argument("--plot", type=Path, default=None, help="write a p50 latency plot (PNG)")
    p.add_argument("--port", type=int, default=None, help="adb server port (default 5037)")
    p.add_argument("--no-pin", action="store_true", help="do not pin to the big cores")
    p.add_argument("--cooldown-timeout", type=float, default=120.0,
                   help="max seconds to wait for the device to cool down before each repeat")
    p.add_argument("--no-start-server", action="store_true",
                   help="fail instead of starting the adb server")


def run(args: argparse.Namespace) -> int:
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
    cfg = BenchConfig(
        threads=args.threads, warmup=args.warmup, iterations=args.iterations,
        repeats=args.repeats, audio_seconds=args.audio_seconds, pin=not args.no_pin,
        cooldown_timeout_s=args.cooldown_timeout, start_server=not args.no_start_server,
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
    if args.out_dir is not None:
        out_dir = args.out_dir
    elif args.json is not None:
        out_dir = args.json.parent / f"{args.json.stem}_raw"
    else:
        out_dir = Path("runs") / "bench" / time.strftime("%Y%m%d-%H%M%S")

    jobs = [(p, t) for p in ptes for t in targets]
    outcomes = measure_many(jobs, cfg, out_dir, server) if jobs else []
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
    for f in failures:
        print(f"compress bench: error: {f}", file=sys.stderr)
    return 1 if failures else 0
