"""Build and locate the native runner bundle (`et_bench_runner` + its shared libraries).

A *runner bundle* is a directory holding the `et_bench_runner` binary and every shared library
it loads (found through RUNPATH=$ORIGIN), one per Android ABI name: `x86_64` for the host build
made here, `arm64-v8a` for phones (built by `device_bench/runner/build_android.sh`). The
protocol pushes the whole directory to the device.

Bundles live under `$DEVICE_BENCH_RUNNER_DIR` (default: `build/runner` in the repository) as
`<root>/<abi>/et_bench_runner`. `python -m device_bench.runner_build` (what `make runner` runs)
builds the host bundle with CMake against the executorch wheel's CMake package; a second run
with unchanged sources does nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from device_bench.errors import BenchError

log = logging.getLogger(__name__)

RUNNER_NAME = "et_bench_runner"
SOURCE_DIR = Path(__file__).resolve().parent / "runner"
_SOURCES = ("CMakeLists.txt", "et_bench_runner.cpp")


def default_runner_root() -> Path:
    """Where runner bundles live: `$DEVICE_BENCH_RUNNER_DIR` or `<repo>/build/runner`."""
    env = os.environ.get("DEVICE_BENCH_RUNNER_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "build" / "runner"


def host_abi() -> str:
    """The Android ABI name that matches this machine (only x86_64 hosts are supported)."""
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a"}.get(machine, machine)


def runner_bundle(abi: str, root: Path | None = None) -> Path:
    """Return the bundle directory for `abi`; raise BenchError when no runner was built for it."""
    root = Path(root) if root is not None else default_runner_root()
    binary = root / abi / RUNNER_NAME
    if not binary.is_file():
        built = sorted(p.parent.name for p in root.glob(f"*/{RUNNER_NAME}")) if root.is_dir() \
            else []
        hint = (
            "build it with `make runner`"
            if abi == host_abi()
            else "build it with device_bench/runner/build_android.sh (see device_bench/README.md)"
        )
        raise BenchError(
            f"no runner for ABI {abi!r}: expected {binary}; runners built: "
            f"{', '.join(built) or 'none'}; {hint}"
        )
    return binary.parent


def executorch_cmake_dir() -> Path:
    """The executorch wheel's CMake package directory (`<site-packages>/executorch/share/cmake`)."""
    for base in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]):
        d = Path(base) / "executorch" / "share" / "cmake"
        if (d / "executorch-config.cmake").is_file():
            return d
    raise BenchError(
        "the executorch wheel's CMake package was not found under site-packages "
        "(expected executorch/share/cmake/executorch-config.cmake); is executorch installed?"
    )


def _cmake() -> str:
    exe = Path(sys.executable).parent / "cmake"
    if exe.is_file():
        return str(exe)
    found = shutil.which("cmake")
    if not found:
        raise BenchError("cmake was not found (pip install 'cmake>=3.28' in the venv)")
    return found


def _up_to_date(binary: Path) -> bool:
    if not binary.is_file():
        return False
    mtime = binary.stat().st_mtime
    return all((SOURCE_DIR / s).stat().st_mtime <= mtime for s in _SOURCES)


def build_host_runner(root: Path | None = None, force: bool = False) -> Path:
    """Build (if needed) and install the host runner bundle; return its directory."""
    root = Path(root) if root is not None else default_runner_root()
    bundle = root / host_abi()
    binary = bundle / RUNNER_NAME
    if not force and _up_to_date(binary):
        log.info("runner is up to date: %s", binary)
        return bundle
    build_dir = root.parent / "runner-cmake" / host_abi()
    cmake = _cmake()
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    steps = [
        [cmake, "-S", str(SOURCE_DIR), "-B", str(build_dir), *gen,
         f"-DCMAKE_PREFIX_PATH={executorch_cmake_dir()}", "-DCMAKE_BUILD_TYPE=Release"],
        [cmake, "--build", str(build_dir), "--parallel", "2"],
        [cmake, "--install", str(build_dir), "--prefix", str(bundle)],
    ]
    for cmd in steps:
        log.info("running: %s", " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BenchError(
                f"building the runner failed at `{' '.join(cmd)}` (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}"
            )
    binary.touch()
    return bundle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Build the host et_bench_runner bundle.")
    p.add_argument("--root", type=Path, default=None, help="bundle root (default build/runner)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bundle = build_host_runner(args.root, force=args.force)
    except BenchError as exc:
        print(f"runner: error: {exc}", file=sys.stderr)
        return 1
    print(bundle / RUNNER_NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
