"""The ``load_benchmark`` fixture: a script of ``benchmarks/`` imported by its path (the folder
is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(stem: str) -> ModuleType:
    """``benchmarks/<stem>.py`` as the module ``<stem>_bench``, registered in ``sys.modules``
    before it runs (as importlib's recipe does: dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(f"{stem}_bench",
                                                  ROOT / "benchmarks" / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("sts_table")``: ``benchmarks/sts_table.py`` as a module."""
    return _load
