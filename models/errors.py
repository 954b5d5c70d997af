"""The exception family of the `models` package.

Every message says what was given, what was expected and, where there is a fixed set, the valid
choices. The CLI prints `str(exc)` as one line and exits non-zero.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base class of every error raised on purpose by `models`."""


class RegistryError(ModelsError, KeyError):
    """Unknown model name or invalid build override."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ModelsError):
    """A checkpoint file is missing, corrupt, or does not match its model."""


class AudioError(ModelsError):
    """An audio file or array cannot be used (corrupt, empty, silent, NaN, wrong channels...)."""


class DataError(ModelsError):
    """A dataset layout or a cached feature is unusable."""


class DiskFullError(ModelsError, OSError):
    """A file was not written because its file system is full; the final name is untouched."""
