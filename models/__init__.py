"""What is compressed: the model registry, model families, audio I/O, data and metrics.

`models` imports none of `compress`, `export` or `device_bench` (see docs/design.md).
"""

from models.errors import AudioError, CheckpointError, DataError, ModelsError, RegistryError

__all__ = ["AudioError", "CheckpointError", "DataError", "ModelsError", "RegistryError"]
