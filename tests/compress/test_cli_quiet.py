"""Dependency warnings stay out of the terminal unless -v."""

from __future__ import annotations

import logging
import types
import warnings

from compress.cli_util import NOISY_LOGGERS, quiet_dependencies


def _warn_from(module: str, category: type[Warning], text: str) -> None:
    m = types.ModuleType(module)
    exec(f"import warnings\ndef go(): warnings.warn({text!r}, {category.__name__})", m.__dict__)
    m.go()


def test_quiet_dependencies_hides_their_warnings_and_keeps_ours() -> None:
    levels = {n: logging.getLogger(n).level for n in NOISY_LOGGERS}
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            quiet_dependencies(logging.WARNING)
            _warn_from("torch.fx", FutureWarning, "theirs future")
            _warn_from("torchao.quant", UserWarning, "theirs user")
            _warn_from("compress.pipeline", UserWarning, "ours user")
            _warn_from("models.audio", UserWarning, "ours too")
        assert sorted(str(w.message) for w in rec) == ["ours too", "ours user"]
        assert logging.getLogger("torchao").getEffectiveLevel() == logging.ERROR
        from torch._logging import _internal

        _internal._init_logs()  # torch sets its own logger back to WARNING here
        assert logging.getLogger("torch.utils._pytree").getEffectiveLevel() == logging.ERROR
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            quiet_dependencies(logging.INFO)  # -v: everything shows
            _warn_from("torch.fx", FutureWarning, "theirs future")
        assert [str(w.message) for w in rec] == ["theirs future"]
    finally:
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)


def _stderr_of(code: str) -> str:
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return p.stderr


def test_the_native_runtime_lines_are_filtered_and_everything_else_passes() -> None:
    """The ExecuTorch runtime writes its threadpool line to file descriptor 2 itself; with the
    filter installed it is dropped, while Python's own stderr and a traceback at exit pass."""
    raw = _stderr_of("from export.runtime import set_executorch_threads\n"
                     "set_executorch_threads(1)\n")
    assert "[threadpool.cpp:" in raw  # what a user saw before the filter
    out = _stderr_of(
        "import os, sys\n"
        "from compress.cli_util import filter_native_stderr\n"
        "filter_native_stderr()\n"
        "from export.runtime import set_executorch_threads\n"
        "set_executorch_threads(1)\n"
        "os.write(2, b'[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\\n')\n"
        "print('a real problem', file=sys.stderr)\n"
        "os.write(2, b'native line without newline')\n"
        "os.write(2, b'\\n')\n"
        "raise SystemExit('exiting with an error message')\n")
    assert "[threadpool.cpp:" not in out and "[cpuinfo_utils.cpp:" not in out
    assert "a real problem" in out and "native line without newline" in out
    assert "exiting with an error message" in out


def test_dependency_log_records_below_error_are_dropped_ours_kept() -> None:
    """LiteRT's converter logs its notes on the root logger; the filter quiet_dependencies puts
    on the root handlers drops every dependency record below ERROR and keeps ours."""
    from compress.cli_util import NATIVE_NOISE, OwnRecordsOnly

    f = OwnRecordsOnly()

    def rec(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert not f.filter(rec("root", logging.WARNING))
    assert not f.filter(rec("litert_torch.convert", logging.INFO))
    assert f.filter(rec("root", logging.ERROR))
    assert f.filter(rec("models.audio", logging.WARNING))
    assert f.filter(rec("compress.pipeline", logging.INFO))
    for line in (b"I0000 00:00:1796568574.379682   31687 port.cc:153] oneDNN custom operations",
                 b"WARNING: All log messages before absl::InitializeLog() is called are written",
                 b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                 b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length"):
        assert NATIVE_NOISE.match(line), line
    for line in (b"compress export: error: x", b"Traceback (most recent call last):",
                 b"E0000 00:00:1796568574.379682   31687 port.cc:153] a native error"):
        assert not NATIVE_NOISE.match(line), line
