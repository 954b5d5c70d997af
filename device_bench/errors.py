"""The exception family of the `device_bench` package."""

from __future__ import annotations


class BenchError(Exception):
    """Base class of every error raised on purpose by `device_bench`."""


class DeviceError(BenchError):
    """A device is missing, unauthorized, offline or dropped the connection."""
