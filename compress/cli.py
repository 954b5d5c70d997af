"""The `compress` command line: a thin layer over the library API.

``get_parser()`` builds the parser from the command modules listed in ``COMMAND_MODULES``;
``main(argv)`` runs one command and turns the project's errors into one clear line on stderr
and a non-zero exit (1 for a failed command, 2 for a usage error, 3-9 for the device faults of
`device_bench.errors.EXIT_CODES`, 130 when interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from compress.cli_util import filter_native_stderr, quiet_dependencies

# One module per command, in the order `compress --help` lists them.
COMMAND_MODULES: list[str] = [
    "compress.commands.data",
    "compress.commands.bench",
    "compress.commands.devices",
    "compress.commands.export",
    "compress.commands.models",
    "compress.commands.validate",
    "compress.commands.train",
    "compress.commands.convert",
    "compress.commands.separate",
    "compress.commands.sing",
    "compress.commands.eval",
    "compress.commands.run",
]


def _error_types() -> tuple[type[BaseException], ...]:
    from compress.errors import CompressError
    from device_bench.errors import BenchError
    from export.errors import ExportError
    from models.errors import ModelsError

    return (ModelsError, CompressError, ExportError, BenchError)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress",
        description="Compress audio models and deploy them to Android phones.",
        epilog="example:\n  compress data synth --out corpus --singers 4 --minutes 2\n"
        "  compress models --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    quiet_dependencies(level)
    if argv is None and level > logging.INFO:
        # the console command (not a caller passing argv): the native runtime's own stderr
        # lines (cpuinfo, threadpool) only with -v
        filter_native_stderr()
    errors = _error_types()
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        print(f"compress {args.command}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))  # device faults: device_bench.errors
    except OSError as exc:
        from models.fileio import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"compress {args.command}: error: no space left on device{where}: free some "
              "space or write to another directory, then run the command again",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"compress {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
