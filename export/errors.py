"""The exception family of the `export` package."""

from __future__ import annotations


class ExportError(Exception):
    """Base class of every error raised on purpose by `export`."""


class ParityError(ExportError):
    """An exported program does not match PyTorch closely enough; nothing was written."""
