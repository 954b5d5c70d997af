"""How models are measured: adb devices, the native ExecuTorch runner, protocol and results.

`device_bench` knows only files (`.pte`, JSON) and devices; it imports no other project package.

Main entry points::

    from device_bench import measure, list_devices
    result = measure("model.pte", target="adb:R5CX30ABCDE", warmup=3, iterations=20)
    result.p50_ms, result.to_dict()        # bench_result.v1 (schema/bench_result.v1.json)
"""

from device_bench.errors import BenchError, DeviceError

__all__ = [
    "AdbServer",
    "BenchConfig",
    "BenchError",
    "BenchResult",
    "DeviceError",
    "DeviceInfo",
    "list_devices",
    "measure",
    "measure_many",
    "parse_target",
]


def __getattr__(name: str):  # lazy: importing the package does not import adbutils
    if name in ("measure", "measure_many", "parse_target"):
        from device_bench import api

        return getattr(api, name)
    if name in ("AdbServer", "DeviceInfo", "list_devices"):
        from device_bench import adb

        return getattr(adb, name)
    if name == "BenchConfig":
        from device_bench.protocol import BenchConfig

        return BenchConfig
    if name == "BenchResult":
        from device_bench.result import BenchResult

        return BenchResult
    raise AttributeError(f"module 'device_bench' has no attribute {name!r}")
