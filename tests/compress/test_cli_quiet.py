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
