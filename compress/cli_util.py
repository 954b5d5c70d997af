"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    example: str,
    run: Callable[[argparse.Namespace], int],
    description: str = "",
) -> argparse.ArgumentParser:
    """Add a sub-command whose --help ends with an example."""
    p = sub.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run)
    return p


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: Any = None) -> None:
    """Print `rows` as an aligned text table with the given columns."""
    out = out or sys.stdout
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip(), file=out)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


#: packages whose log lines (e.g. torchao's "Failed to load ... .so" on a CPU-only host)
#: a user sees only with ``-v`` (torch resets its own logger's level when it sets up logging
#: again, so the child that warns is named too)
NOISY_LOGGERS = ("torchao", "torch", "torch.utils._pytree", "torch.onnx", "executorch",
                 "matplotlib", "transformers", "litert_torch", "ai_edge_litert", "jax", "absl",
                 "tensorflow")

#: top-level packages whose log records below ERROR reach the terminal without ``-v``
OWN_PACKAGES = ("compress", "models", "export", "device_bench", "benchmarks", "__main__")


class OwnRecordsOnly(logging.Filter):
    """Lets through this project's records and anyone's errors; drops the rest (a
    dependency's warnings, also those logged on the root logger, e.g. LiteRT's conversion
    notes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.name.split(".")[0] in OWN_PACKAGES


def quiet_dependencies(level: int) -> None:
    """Below INFO verbosity, keep dependencies' warnings out of the user's terminal: their
    FutureWarning / DeprecationWarning lines, UserWarnings raised outside this project, and
    the log lines of :data:`NOISY_LOGGERS` below ERROR. ``-v`` shows everything."""
    if level <= logging.INFO:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"(?!(compress|models|export|device_bench)\b)")
    warnings.filterwarnings("ignore", message="Tight layout not applied")  # matplotlib
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, OwnRecordsOnly) for f in handler.filters):
            handler.addFilter(OwnRecordsOnly())
    # TensorFlow / absl native logging (LiteRT conversion): errors only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


DEVICES = ("auto", "cpu", "cuda")


def add_device_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--device auto|cpu|cuda`` (default auto); resolve it with :func:`resolve_device`."""
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help=f"device for {what}: auto (cuda when torch sees a GPU, else cpu), "
                   "cpu or cuda (default: auto)")


def resolve_device(name: str, option: str = "--device") -> str:
    """``"cpu"`` or ``"cuda"`` for a ``--device`` value: ``auto`` is cuda when
    ``torch.cuda.is_available()``, else cpu; ``cuda`` without a usable GPU is a
    CompressError (one line naming the torch build)."""
    import torch

    from compress.errors import CompressError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            build = (f"torch {torch.__version__} is a CPU-only build"
                     if torch.version.cuda is None
                     else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
            raise CompressError(f"{option} cuda: CUDA is not available ({build}); use "
                                f"{option} cpu or {option} auto")
        return "cuda"
    raise CompressError(f"{option} {name!r}: expected one of {', '.join(DEVICES)}")


def add_set_argument(p: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): a config value by dotted key, the value read as YAML
    (:func:`compress.config_io.apply_overrides`)."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted key, the value read as YAML "
                   f"(repeatable), e.g. {example}")


#: lines the ExecuTorch runtime's C++ code writes straight to the process's stderr (file
#: descriptor 2, out of Python's reach): cpuinfo probing ``/sys/devices/soc0`` on every host
#: that is not an Android SoC, and the XNNPACK threadpool being resized; libmpg123's decoder
#: complaints on a damaged mp3 (the audio loader warns about the damage itself); absl's notice
#: that it logs before being initialised and its info lines, and the LiteRT interpreter's
#: XNNPACK notice (``.tflite`` export)
NATIVE_NOISE = re.compile(
    rb"^(\[(cpuinfo_utils|threadpool)\.cpp:\d+\] |\[src/libmpg123/|Warning: Xing stream size"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|I\d{4} [\d:.]+ +\d+ [\w/.]+\.cc:\d+\] |INFO: Created TensorFlow Lite XNNPACK delegate)"
)
_native_filter_on = False


def filter_native_stderr(pattern: re.Pattern[bytes] = NATIVE_NOISE) -> None:
    """Drop the lines of :data:`NATIVE_NOISE` from this process's stderr (and its children's,
    which inherit it); every other line passes unchanged, as it is written. Installed once per
    process: file descriptor 2 becomes a pipe that a thread reads line by line and forwards to
    the original stderr; at exit the original is put back and the pipe drained, so a traceback
    printed at exit still reaches the terminal."""
    global _native_filter_on
    if _native_filter_on:
        return
    sys.stderr.flush()
    orig = os.dup(2)
    r, w = os.pipe()
    os.dup2(w, 2)
    os.close(w)

    def pump() -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(r, 65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not pattern.match(line))
            if out:
                os.write(orig, out)
        if buf and not pattern.match(buf):
            os.write(orig, buf)
        os.close(r)

    thread = threading.Thread(target=pump, name="native-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(orig, 2)  # the pipe's last write end (unless a child still holds it) closes
        thread.join(timeout=2.0)

    atexit.register(restore)
    _native_filter_on = True
