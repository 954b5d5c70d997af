"""A full disk while writing a checkpoint, an export or a report (issue 29, item 5): a real
tmpfs of 2 MiB, filled to a few KiB; every writer gives one clear error, and nothing is left
under the final name or as a temporary file."""

from __future__ import annotations

import errno
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.cli import main
from models.audio import write_wav
from models.checkpoint import save_checkpoint
from models.data.npz import write_npz
from models.errors import DiskFullError
from models.fileio import atomic_path, atomic_write_text, is_disk_full, sweep_temporaries

FS_BYTES = 2 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2-MiB tmpfs mounted for this test. `make test` runs as root (it installs system
    packages), so a refused mount is a failure of the set-up, not a reason to skip."""
    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    assert r.returncode == 0, (f"mounting a tmpfs for the disk-full tests failed: "
                               f"{r.stderr.strip()} (run the tests as root, as `make test` does)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int = 8192) -> None:
    """Fill `mnt` until `leave` bytes are free."""
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler.bin", "ab") as f:
        f.write(b"\0" * max(0, free - leave))
    assert shutil.disk_usage(mnt).free <= leave


def temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _checkpoint(path: Path, n: int) -> None:
    save_checkpoint(path, torch.nn.Linear(n, 4), model_name="lin", config={"n": n})


def _plot(path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4 + n // 20000, 4))
    plt.plot(np.random.default_rng(0).standard_normal(n))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=60)
    plt.close(fig)


def _torch_save(path: Path, n: int) -> None:
    with atomic_path(path) as tmp:
        torch.save({"optimizer": torch.ones(n)}, tmp)


WRITERS: dict[str, tuple[str, Callable[[Path, int], None]]] = {
    "checkpoint (safetensors)": ("model.safetensors", _checkpoint),
    "training state (torch.save)": ("train_state.pt", _torch_save),
    "audio (soundfile)": ("out.wav", lambda p, n: write_wav(p, np.zeros(n, np.float32), 16000)),
    "features (npz)": ("f0.npz", lambda p, n: write_npz(p, f0=np.zeros(n, np.float32))),
    "plot (matplotlib)": ("loss.png", _plot),
    "record (text)": ("done.json", lambda p, n: atomic_write_text(p, "x" * n)),
}


@pytest.mark.parametrize("what", sorted(WRITERS))
def test_each_writer_on_a_full_disk_is_one_clear_error_and_keeps_the_old_file(
        small_fs: Path, what: str) -> None:
    name, write = WRITERS[what]
    final = small_fs / "out" / name
    write(final, 100)  # a small first version fits
    before = _sha(final)
    fill(small_fs)
    with pytest.raises(DiskFullError) as info:
        write(final, 400_000)  # ~1.6 MB does not
    msg = str(info.value)
    assert "\n" not in msg and str(final) in msg and "no space left" in msg
    assert "free some space" in msg and re.search(r"[\d.]+ (B|KiB|MiB) left", msg), msg
    assert _sha(final) == before, "the previous file under the final name changed"
    assert temporaries(small_fs) == []


def test_a_report_on_a_full_disk_writes_neither_page(small_fs: Path, tmp_path: Path) -> None:
    from compress.report import write_report
    from tests.compress.test_report import realistic

    data = realistic(tmp_path)
    run = small_fs / "run"
    fill(small_fs, leave=4096)
    with pytest.raises(DiskFullError, match="no space left"):
        write_report(run, data)
    assert not (run / "report.json").exists() and not (run / "report.html").exists()
    assert temporaries(small_fs) == []


def test_export_on_a_full_disk_is_one_line_and_leaves_no_program(small_fs: Path,
                                                                  capsys) -> None:
    out = small_fs / "export"
    fill(small_fs, leave=4096)
    code = main(["export", "lhq-svc-vocoder-unittest", "--format", "pte", "--precision", "fp32",
                 "--out", str(out), "--threads", "1"])
    # the native runtime's own diagnostics ("[cpuinfo_utils.cpp:71] ...") are not ours
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("[")]
    assert code == 1
    assert len(err) == 1 and "compress export: error:" in err[0] and "no space left" in err[0]
    assert str(out) in err[0]
    assert not out.exists() or not any(p.suffix in (".pte", ".json") for p in out.iterdir())
    assert temporaries(small_fs) == []


def test_a_raw_enospc_from_a_library_is_one_line_too(monkeypatch, capsys) -> None:
    import compress.commands.models as models_cmd

    def boom(args):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.bin")

    monkeypatch.setattr(models_cmd, "run", boom)  # registered when main() builds the parser
    assert main(["models"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["compress models: error: no space left on device writing /data/out.bin: free "
                   "some space or write to another directory, then run the command again"]


def test_disk_full_detection() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "x"))
    assert is_disk_full(OSError(errno.EDQUOT, "x"))
    assert is_disk_full(RuntimeError("Error while serializing: I/O error: No space left on "
                                     "device (os error 28)"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("unexpected pos 576 vs 534"), "/")  # room on /


def test_sweep_removes_only_what_a_killed_writer_left(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    left = [tmp_path / ".model.safetensors.k2j3.tmp", tmp_path / "a" / ".done.json.x9.tmp"]
    keep = [tmp_path / "model.safetensors", tmp_path / "a" / "notes.tmp.txt",
            tmp_path / "a" / "done.json"]
    for p in left + keep:
        p.write_text("x")
    assert sorted(sweep_temporaries(tmp_path)) == sorted(left)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in left)
