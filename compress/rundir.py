"""A run directory with resumable stages.

Each stage of `compress run` writes into ``RUN/<NN>_<stage>/`` and, last, a ``done.json``
(written to a temporary file and renamed, so it is either complete or absent). On a re-run:

* a stage with a valid ``done.json`` is skipped and its recorded result reused untouched;
* the first stage without one is run again; its directory is wiped first unless the stage
  declares itself ``resumable`` (it then continues from its own checkpoints, e.g. training);
* a run directory made with a different config is refused (start a new ``--out`` instead), so
  results of one config are never mixed with another's;
* one writer at a time: :class:`RunLock` (``RUN/run.lock``) refuses a second ``compress run``
  on the same directory while the first lives, and takes over the lock of one that died;
* every file is written through :func:`models.fileio.atomic_path` (complete or absent), and
  the temporary files of a killed run are removed when the directory is opened again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from models.fileio import atomic_write_text, sweep_temporaries

log = logging.getLogger(__name__)

DONE = "done.json"
CONFIG = "config.json"


LOCK = "run.lock"


class RunLock:
    """The one-writer lock of a run directory: ``RUN/run.lock``, an exclusive ``flock`` held
    on an open file descriptor for the life of the process, the file naming its holder
    (``{"pid", "host", "since", "command"}``).

    The kernel drops a ``flock`` when its process dies, however it dies (``kill -9``
    included), so a lock file whose ``flock`` can be taken is stale: its holder is gone, and
    the new run takes it over with a warning naming the old holder. A lock that cannot be
    taken is held by a live process: :meth:`acquire` raises a one-line :class:`CompressError`
    naming it, before anything in the directory is touched. (On a network file system without
    ``flock`` the lock is advisory at best.)"""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK
        self._fd: int | None = None

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        since = holder.get("since")
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(since)))
                if isinstance(since, int | float) else "an unknown time")
        return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {when}"
                + (f" ({holder['command']})" if holder.get("command") else ""))

    def _read(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            holder = {"unreadable": raw[:80].decode("utf-8", "replace")}
        return holder if isinstance(holder, dict) else {}

    def acquire(self, command: str = "") -> None:
        if self._fd is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise CompressError(
                f"run {self.root} is in use by {self._describe(holder)}; wait for it to "
                "finish, or use another --out") from None
        except OSError as exc:
            os.close(fd)
            raise CompressError(f"run {self.root}: cannot lock {self.path} ({exc})") from None
        old = self._read(fd)
        if old:
            log.warning("run %s: took over the lock of %s, which is no longer running",
                        self.root, self._describe(old))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": command}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the lock file and drop the lock (the file stays: removing it would race a
        second process that opened it already)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def clear_run_dir(root: Path) -> None:
    """Delete everything in a run directory but its lock (``--fresh`` under the lock)."""
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Stage:
    """One pipeline stage: ``run(ctx, out_dir) -> result``.

    The result is a JSON-ready dict, or a typed object with ``to_json()``; ``decode`` turns a
    stored ``done.json`` result back into that object when the stage is reused.
    """

    name: str
    run: Callable[[Any, Path], Any]
    resumable: bool = False
    decode: Callable[[dict[str, Any]], Any] | None = None


@dataclass
class StageRecord:
    index: int
    name: str
    status: str  # "done" | "reused"
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)


class RunDir:
    """The directory of one run: its config, and one sub-directory per stage."""

    def __init__(self, root: str | os.PathLike[str], config: dict[str, Any]) -> None:
        self.root = Path(root)
        self.config = config
        self.digest = config_digest(config)

    def open(self) -> None:
        """Create the run dir, or check that an existing one was made with the same config
        (and remove the temporary files a killed writer left in it)."""
        cfg_path = self.root / CONFIG
        if cfg_path.exists():
            try:
                saved = json.loads(cfg_path.read_text())
            except json.JSONDecodeError as exc:
                raise CompressError(f"run {self.root}: {CONFIG} is corrupt ({exc})") from exc
            if saved.get("digest") != self.digest:
                raise CompressError(
                    f"run {self.root} was made with a different config "
                    f"(digest {saved.get('digest')} vs {self.digest}); "
                    "use another --out, or delete the run directory to start over"
                )
            for p in sweep_temporaries(self.root):
                log.info("removed %s, left by a killed writer", p)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            cfg_path, json.dumps({"digest": self.digest, "config": self.config}, indent=2)
        )

    def stage_dir(self, index: int, name: str) -> Path:
        return self.root / f"{index:02d}_{name}"

    def done_record(self, index: int, name: str) -> dict[str, Any] | None:
        """The stage's done.json content, or None when absent or unreadable."""
        p = self.stage_dir(index, name) / DONE
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is unreadable; the stage will run again", p)
            return None
        if rec.get("digest") != self.digest:
            return None
        return rec

    def mark_done(self, index: int, name: str, result: dict[str, Any], seconds: float) -> None:
        rec = {"stage": name, "digest": self.digest, "seconds": seconds, "result": result}
        atomic_write_text(self.stage_dir(index, name) / DONE, json.dumps(rec, indent=2))


def run_stages(
    run: RunDir,
    stages: Sequence[Stage],
    ctx: Any = None,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> list[StageRecord]:
    """Run `stages` in order in `run`, skipping finished ones; return one record per stage.

    ``ctx`` is shared by the stages: a dict (each stage's result is stored as
    ``ctx[stage.name]``, stage directories as ``ctx["dirs"][stage.name]``) or an object whose
    attributes of the stages' names receive the results (and ``dirs`` the directories),
    before the next stage runs.
    """
    run.open()
    ctx = ctx if ctx is not None else {}
    is_dict = isinstance(ctx, dict)
    dirs: dict[str, Path] = ctx.setdefault("dirs", {}) if is_dict else ctx.dirs

    def put(name: str, value: Any) -> None:
        if is_dict:
            ctx[name] = value
        else:
            setattr(ctx, name, value)

    records = []
    for i, stage in enumerate(stages):
        d = run.stage_dir(i, stage.name)
        dirs[stage.name] = d
        rec = run.done_record(i, stage.name)
        if rec is not None:
            put(stage.name, stage.decode(rec["result"]) if stage.decode else rec["result"])
            r = StageRecord(i, stage.name, "reused", float(rec.get("seconds", 0.0)), rec["result"])
        else:
            if d.exists() and not stage.resumable:
                shutil.rmtree(d)
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            value = stage.run(ctx, d)
            seconds = time.perf_counter() - t0
            result = value.to_json() if hasattr(value, "to_json") else value
            run.mark_done(i, stage.name, result, seconds)
            put(stage.name, value)
            r = StageRecord(i, stage.name, "done", seconds, result)
        records.append(r)
        if on_stage is not None:
            on_stage(r)
    return records
