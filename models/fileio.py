"""Writing result files so that a full disk or a kill never leaves a partial file under the
final name.

Every file the suite writes for a user — checkpoints, training state, audio, feature caches,
exported programs and their sidecars, stage records, reports — goes through
:func:`atomic_path`: the bytes go to a hidden temporary file in the destination directory
(``.NAME.XXXXXXXX.tmp``, see :data:`TMP_GLOB`), are flushed to the disk, and only then renamed
onto the final name (``os.replace``, atomic within one file system). So the final name holds
either the previous complete file or the new complete one.

When the write fails because the file system is full, the libraries underneath say so in
different ways — ``OSError`` ENOSPC for Python's own files and matplotlib, a ``SafetensorError``
"No space left on device (os error 28)" from safetensors, ``RuntimeError`` "unexpected pos"
from ``torch.save``, ``LibsndfileError(2, '')`` from soundfile. :func:`atomic_path` turns all of
them into one :class:`~models.errors.DiskFullError` naming the file and the space left, after
removing the temporary file. A failure is taken for a full disk when its errno says so, or
when the destination file system has less than :data:`FULL_BELOW_BYTES` free at the moment of
the failure, the temporary file still in place.

A process killed with SIGKILL cannot remove its temporary file; :func:`sweep_temporaries`
removes them from a directory that one writer owns (``compress run`` does it for a stage it
resumes, under its run lock).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from models.errors import DiskFullError

TMP_SUFFIX = ".tmp"
TMP_GLOB = ".*" + TMP_SUFFIX
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
FULL_BELOW_BYTES = 1 << 20  # less than 1 MiB left when a write failed: the disk was full


def human_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer can still use on the file system of `directory`."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def is_disk_full(exc: BaseException, directory: str | os.PathLike[str] | None = None) -> bool:
    """Whether `exc`, raised while writing into `directory`, means the file system is full."""
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        text = str(e)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    if directory is not None:
        free = free_bytes(directory)
        return free is not None and free < FULL_BELOW_BYTES
    return False


def disk_full_error(path: Path, exc: BaseException | None = None) -> DiskFullError:
    """The one-line error for `path` not written on a full file system."""
    free = free_bytes(path.parent)
    left = "" if free is None else f", {human_bytes(free)} left"
    said = "" if exc is None else (str(exc).strip().splitlines() or ["write failed"])[0][:80]
    why = "" if exc is None else f" ({type(exc).__name__}: {said})"
    return DiskFullError(
        f"{path}: no space left on its file system{left}{why}; nothing was written under that "
        "name (a previous file there is unchanged): free some space there or write to "
        "another directory, then run the command again")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally the file written
    there is flushed and renamed onto `path`. On any failure the temporary file is removed and
    `path` is left as it was; a full file system raises :class:`DiskFullError`.

    `suffix` is put before ``.tmp`` for writers that pick the format from the file name.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + TMP_SUFFIX,
                                dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except Exception as exc:
        full = is_disk_full(exc, final.parent)  # judged with the temporary file in place
        tmp.unlink(missing_ok=True)  # then the space left is what the user has
        if full:
            raise disk_full_error(final, exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through :func:`atomic_path`; return `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8, ``\\n`` line ends) to `path` through :func:`atomic_path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sweep_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in `directory` (recursively) when a
    writer was killed; return them. Only for a directory no other process is writing."""
    root = Path(directory)
    if not root.is_dir():
        return []
    gone = []
    for p in sorted(root.rglob(TMP_GLOB)):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone
