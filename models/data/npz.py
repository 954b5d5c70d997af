"""Reproducible ``.npz`` files: atomic writes with fixed zip timestamps.

``np.savez`` stamps each zip entry with the wall clock, so two identical runs would differ
byte-wise; :func:`write_npz` writes the same arrays to the same bytes (and never leaves a partial
file: it writes a temporary file next to the target and renames it).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from models.fileio import atomic_path


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write `arrays` to `path` (keys sorted, no pickles, 1980-01-01 timestamps), atomically
    (:func:`models.fileio.atomic_path`)."""
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh, \
            zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
