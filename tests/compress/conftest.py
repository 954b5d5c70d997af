"""Shared fixtures for the compress tests: launching a script under ``torchrun``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DIST_VARS}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def clean_env() -> dict[str, str]:
    """This process's environment without torchrun's variables, one OpenMP thread."""
    return _clean_env()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def torchrun() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``torchrun(script, *args, nproc=2, timeout=180)``: run `script` on `nproc` local ranks
    (a free port, a clean environment); the completed process with its captured output."""

    def run(script: Path, *args: object, nproc: int = 2,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(script), *map(str, args)]
        return subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True,
                              timeout=timeout)

    return run
