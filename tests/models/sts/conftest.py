"""Shared fixtures of the speech-to-singing tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch / BLAS thread (tests/conftest.py)."""
    yield
