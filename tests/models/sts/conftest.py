"""Shared fixtures of the speech-to-singing tests."""

from __future__ import annotations

import contextlib

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch and one BLAS thread for every test here: the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        yield
    torch.set_num_threads(threads)
