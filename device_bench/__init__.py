"""How models are measured: adb devices, the native ExecuTorch runner, protocol and results.

`device_bench` knows only files (`.pte`, JSON) and devices; it imports no other project package.
"""

from device_bench.errors import BenchError, DeviceError

__all__ = ["BenchError", "DeviceError"]
