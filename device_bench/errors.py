"""The exception family of the `device_bench` package, and the exit codes they map to.

Every error carries the exit code `compress bench` returns for it (`exit_code`); `EXIT_CODES`
is the one table of those numbers (the README and `compress bench --help` print it). 1 stays
the generic failure and 2 the usage error, as everywhere in `compress` (`compress/cli.py`);
the codes 3 to 9 tell a script which device fault stopped a benchmark without parsing the
message.
"""

from __future__ import annotations

import textwrap

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DISCONNECTED = 3
EXIT_UNAUTHORIZED = 4
EXIT_OFFLINE = 5
EXIT_STORAGE_FULL = 6
EXIT_RUNNER_KILLED = 7
EXIT_TOO_HOT = 8
EXIT_ADB_SERVER = 9
EXIT_INTERRUPTED = 130

#: exit code -> what it means (in the order the help and the README list them)
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "every benchmark finished",
    EXIT_FAILURE: "any other failure (bad input, no runner for the device's ABI, the runner "
    "reported an error, several benchmarks failed in different ways)",
    EXIT_USAGE: "usage error (unknown option, missing argument)",
    EXIT_DISCONNECTED: "the device is not attached, or its connection dropped mid-run",
    EXIT_UNAUTHORIZED: "the device is unauthorized (accept 'Allow USB debugging?' on it)",
    EXIT_OFFLINE: "the device is offline (adb sees it, but it does not answer)",
    EXIT_STORAGE_FULL: "the device's storage is full (a push failed: No space left on device)",
    EXIT_RUNNER_KILLED: "the runner was killed by a signal on the device (e.g. SIGKILL from "
    "the low-memory killer, SIGSEGV)",
    EXIT_TOO_HOT: "the device got hot mid-run and did not cool down within "
    "--cooldown-timeout",
    EXIT_ADB_SERVER: "the adb server is not running (--no-start-server), could not start, or "
    "stopped mid-run",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_table(width: int = 92) -> str:
    """`EXIT_CODES` as plain text, ``code  meaning`` wrapped to `width` columns (``--help``)."""
    return "\n".join(
        textwrap.fill(meaning, width, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7,
                      break_on_hyphens=False)
        for code, meaning in EXIT_CODES.items()
    )


class BenchError(Exception):
    """Base class of every error raised on purpose by `device_bench`."""

    exit_code = EXIT_FAILURE


class DeviceError(BenchError):
    """A device or the adb server failed in a way none of the subclasses below names."""


class AdbServerError(DeviceError):
    """The adb server is not running, could not be started, or stopped mid-run."""

    exit_code = EXIT_ADB_SERVER


class DeviceDisconnected(DeviceError):
    """The device is not attached, or its connection dropped in the middle of an operation."""

    exit_code = EXIT_DISCONNECTED


class DeviceUnauthorized(DeviceError):
    """The device has not accepted this computer's adb key ('Allow USB debugging?')."""

    exit_code = EXIT_UNAUTHORIZED


class DeviceOffline(DeviceError):
    """adb has a connection to the device, but the device does not answer (state offline)."""

    exit_code = EXIT_OFFLINE


class DeviceStorageFull(DeviceError):
    """A push failed because the device's storage is full (No space left on device)."""

    exit_code = EXIT_STORAGE_FULL


class RunnerKilled(BenchError):
    """The benchmark runner died from a signal on the device (killed or crashed)."""

    exit_code = EXIT_RUNNER_KILLED


class DeviceTooHot(BenchError):
    """The device got hot between repeats and did not cool down within the timeout."""

    exit_code = EXIT_TOO_HOT
