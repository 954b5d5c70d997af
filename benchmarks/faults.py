"""How much bad input does the suite survive? A seeded fault campaign over audio files, run
configs and checkpoints, each outcome classified (issue 29, item 1).

Usage::

    .venv/bin/python benchmarks/faults.py [--json OUT] [--quick] [--seed S] [--cli N]
        [--timeout S] [--keep DIR]

**Inputs** (all generated from ``--seed`` into a temporary folder; ``--keep DIR`` keeps them):

* **audio** — empty files under every extension, one sample, a header and no data, valid files
  cut at random bytes, WAV headers whose data / RIFF sizes lie (too small, too large, 4 GiB),
  random bytes named ``.wav`` / ``.flac`` / ``.ogg`` / ``.mp3`` (and random bytes behind each
  format's magic), random bit flips in valid WAV / FLAC / OGG files, NaN / Inf / denormal
  float samples, DC and full-scale square waves, 8-bit unsigned, 16 / 24 / 32-bit int, 32 /
  64-bit float, 1 to 8 channels, rates from 1 kHz to 384 kHz, an 8-hour silent file declared
  by its header (a 44-byte file), a directory named ``x.wav`` and a file without read
  permission;
* **configs** (``compress validate`` and ``compress run``, which must say the same thing):
  wrong types, unknown keys, out-of-range values, deep nesting, a YAML billion-laughs
  document, an empty file, binary garbage, a list at the top;
* **checkpoints and programs**: bit flips and truncations of a saved ``lhq-svc-unittest``
  checkpoint, a pickle renamed ``.safetensors``, random bytes, a checkpoint of another family
  given to another family's command, a newer schema, a ``.pte`` truncated or of another model.

**Entry points.** Every audio input goes through :func:`models.audio.load_audio` (the loader
every command uses); every input it accepts, and every 5th it rejects, then goes, in the same
worker, through ``compress convert`` with a checkpoint of ``lhq-svc-unittest``, ``compress
separate`` with ``cws-unet5-unittest`` and ``compress sing`` with ``sts-unittest`` (as the
console command runs them: :func:`compress.cli.main` in process). ``--cli N`` (default 60) of
the audio inputs also run as a real ``python -m compress convert`` process. Configs run
``compress validate``, and ``compress run`` when validate rejects them: both must refuse with
one line naming the file (a config validate accepts would start a real run: it is counted
*handled* and not run). Checkpoints run ``compress
convert`` / ``export`` / ``eval``-style loading through :func:`models.checkpoint.load_model`
and ``compress convert --model``.

**Outcomes** per input and entry point:

* *clean error* — exit status 1 with one ``compress CMD: error:`` line on stderr that names
  the input's file (beside it only the native runtime's own diagnostic lines, which the
  message refers to, and a command's progress lines; for the library: a
  :class:`~models.errors.ModelsError` whose one-line message names the file);
* *handled* — success, with finite output (a warning allowed: e.g. a truncated file converts
  its readable part);
* *crash* — any other exception, a traceback, more than one stderr line, a message that does
  not name the file, non-finite output, or a dead worker (a signal);
* *hang* — no answer within ``--timeout`` seconds (default 60): the worker is killed and
  restarted.

Each case runs in a worker process (one at a time, torch on one thread) that keeps the three
models loaded, so a hang or a signal loses one case, not the campaign. Prints one row per
case ``{case, inputs, clean_error, handled, crash, hang}`` and the totals; ``--json OUT``
writes them with every crash's message. Exit status 0 when there is no crash and no hang.

``--quick``: a few inputs per case (about 60), no real processes (the test's sample).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUTCOMES = ("clean_error", "handled", "crash", "hang")


@dataclass
class Input:
    case: str
    path: str
    kind: str  # "audio" | "config" | "checkpoint" | "program"
    note: str = ""


@dataclass
class Result:
    case: str
    path: str
    entry: str
    outcome: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class Row:
    case: str
    inputs: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))


# ---- audio generators ---------------------------------------------------------------------
def _tone(n: int, sr: int, channels: int = 1, rng: random.Random | None = None) -> np.ndarray:
    t = np.arange(n) / sr
    f = 220.0 * (1 + (rng.random() if rng else 0.0))
    x = 0.3 * np.sin(2 * np.pi * f * t)
    return np.stack([x * (0.8 ** c) for c in range(channels)], axis=1).astype(np.float64)


def _write(path: Path, data: np.ndarray, sr: int, subtype: str, fmt: str | None = None) -> Path:
    import soundfile as sf

    sf.write(str(path), data, sr, subtype=subtype, format=fmt)
    return path


def _wav_bytes(n: int = 1600, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    import soundfile as sf

    sf.write(buf, _tone(n, sr), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _encoded(fmt: str, n: int, sr: int, rng: random.Random) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sub = {"FLAC": "PCM_16", "OGG": "VORBIS", "WAV": "PCM_16", "MP3": "MPEG_LAYER_III"}[fmt]
    sf.write(buf, _tone(n, sr, rng=rng), sr, subtype=sub, format=fmt)
    return buf.getvalue()


def _header(data_bytes: int, sr: int = 16000, channels: int = 1, bits: int = 16,
            riff: int | None = None, fmt_tag: int = 1) -> bytes:
    """A canonical 44-byte RIFF / WAVE header declaring `data_bytes` of data."""
    block = channels * bits // 8
    riff_size = 36 + data_bytes if riff is None else riff
    return (b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, fmt_tag, channels, sr, sr * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes & 0xFFFFFFFF))


def audio_inputs(root: Path, rng: random.Random, scale: int) -> list[Input]:
    """Every audio case; `scale` multiplies the random cases (1 full, small for --quick)."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    out: list[Input] = []

    def add(case: str, name: str, data: bytes | None = None, note: str = "") -> Path:
        p = root / f"{len(out):05d}_{name}"
        if data is not None:
            p.write_bytes(data)
        out.append(Input(case, str(p), "audio", note))
        return p

    def n(k: int) -> int:
        return max(1, k * scale // 10)

    for ext in ("wav", "flac", "ogg", "mp3", "aiff", "txt"):
        add("empty", f"empty.{ext}", b"")
    for i in range(n(10)):
        sr = rng.choice([8000, 16000, 44100, 48000])
        sub = rng.choice(["PCM_16", "FLOAT", "PCM_24"])
        p = add("one_sample", f"one_{i}.wav")
        _write(p, _tone(1, sr), sr, sub)
    for i in range(n(10)):
        add("header_only", f"header_{i}.wav",
            _header(0, rng.choice([8000, 16000, 48000]), rng.choice([1, 2]),
                    rng.choice([8, 16, 24, 32])))
    good = _wav_bytes(16000)
    for i in range(n(200)):
        cut = rng.randrange(1, len(good))
        add("truncated_wav", f"trunc_{i}.wav", good[:cut], f"{cut} of {len(good)} bytes")
    for fmt, ext in (("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")):
        try:
            enc = _encoded(fmt, 24000, 16000, rng)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            continue  # this libsndfile cannot write the format
        for i in range(n(20)):
            cut = rng.randrange(1, len(enc))
            add(f"truncated_{ext}", f"trunc_{i}.{ext}", enc[:cut], f"{cut} of {len(enc)}")
        for i in range(n(30)):
            b = bytearray(enc)
            for _ in range(rng.choice([1, 2, 8, 64])):
                pos = rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
            add(f"bitflip_{ext}", f"flip_{i}.{ext}", bytes(b))
    for i in range(n(100)):
        b = bytearray(good)
        for _ in range(rng.choice([1, 2, 8, 64])):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        add("bitflip_wav", f"flip_{i}.wav", bytes(b))
    body = good[44:]
    for i in range(n(30)):
        add("header_size_tiny", f"tiny_{i}.wav", _header(rng.randrange(0, 64)) + body)
    for i in range(n(30)):
        lie = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFF0, len(body) * 1000])
        add("header_size_huge", f"huge_{i}.wav", _header(lie, riff=rng.choice([None, 4, lie]))
            + body)
    for ext in ("wav", "flac", "ogg", "mp3"):
        for i in range(n(50)):
            add("random_bytes", f"rand_{i}.{ext}", rng.randbytes(rng.randrange(1, 65536)))
    for magic, ext in ((b"RIFF", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3"),
                       (b"\xff\xfb", "mp3")):
        for i in range(n(12)):
            add("magic_then_garbage", f"magic_{i}.{ext}",
                magic + rng.randbytes(rng.randrange(0, 8192)))
    for i in range(n(30)):
        x = _tone(8000, 16000)
        kind = ("nan", "inf", "-inf", "denormal", "all_nan")[i % 5]
        if kind == "all_nan":
            x[:] = np.nan
        elif kind == "denormal":
            x = np.full_like(x, 1e-42)
        else:
            idx = rng.sample(range(x.shape[0]), k=max(1, x.shape[0] // rng.choice([2, 100, 8000])))
            x[idx] = float(kind)
        p = add("nonfinite_samples", f"nonfinite_{kind}_{i}.wav")
        _write(p, x.astype(np.float32), 16000, "FLOAT")
    for i in range(n(20)):
        sr = 16000
        x = np.full((sr, 1), rng.choice([1.0, -1.0, 0.5, 0.0]))
        if i % 2:
            x = np.sign(np.sin(2 * np.pi * 110 * np.arange(sr) / sr))[:, None]
        p = add("dc_or_square", f"dc_{i}.wav")
        _write(p, x, sr, rng.choice(["PCM_16", "FLOAT"]))
    subtypes = [("PCM_U8", "wav"), ("PCM_16", "wav"), ("PCM_24", "wav"), ("PCM_32", "wav"),
                ("FLOAT", "wav"), ("DOUBLE", "wav"), ("PCM_S8", "flac"), ("PCM_24", "flac")]
    for i in range(n(40)):
        sub, ext = subtypes[i % len(subtypes)]
        p = add("bit_depths", f"depth_{sub}_{i}.{ext}")
        _write(p, _tone(8000, 16000, rng=rng), 16000, sub)
    for i in range(n(40)):
        ch = 1 + i % 8
        p = add("channels_1_to_8", f"ch{ch}_{i}.wav")
        _write(p, _tone(8000, 16000, ch, rng), 16000, "PCM_16")
    rates = [1000, 2000, 4000, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000,
             176400, 192000, 352800, 384000]
    for i in range(n(64)):
        sr = rates[i % len(rates)]
        p = add("rates_1k_to_384k", f"sr{sr}_{i}.wav")
        _write(p, _tone(max(2, sr // 4), sr, rng=rng), sr, "PCM_16")
    for i in range(max(2, n(5))):
        sr = rng.choice([16000, 44100])
        add("declared_8_hours", f"eight_hours_{i}.wav", _header(8 * 3600 * sr * 2, sr))
    d = root / "a_directory.wav"
    d.mkdir(exist_ok=True)
    out.append(Input("directory", str(d), "audio"))
    p = add("no_read_permission", "locked.wav", good)
    os.chmod(p, 0)
    if os.geteuid() == 0:
        out[-1].note = "running as root: the permission bits do not stop reading"
    return out


# ---- configs ----------------------------------------------------------------------------------
def config_inputs(root: Path, rng: random.Random, scale: int) -> list[Input]:
    root.mkdir(parents=True, exist_ok=True)
    docs: list[tuple[str, str | bytes]] = [
        ("empty_file", ""),
        ("only_comments", "# nothing here\n"),
        ("top_level_list", "- a\n- b\n"),
        ("top_level_scalar", "42\n"),
        ("wrong_type", "evolve: {max_rounds: many}\n"),
        ("wrong_type", "train: {steps: [1, 2]}\n"),
        ("wrong_type", "data: {minutes: true}\n"),
        ("wrong_type", "model: yes\n"),
        ("unknown_key", "evolve: {max_round: 3}\n"),
        ("unknown_key", "frobnicate: 1\n"),
        ("unknown_key", "bench: {iterations: 3, tagets: [host]}\n"),
        ("out_of_range", "evolve: {budget_fraction: 1.5}\n"),
        ("out_of_range", "train: {steps: -5}\n"),
        ("out_of_range", "latency: {threads: 0}\n"),
        ("out_of_range", "export: {chunk_seconds: 0}\n"),
        ("out_of_range", "evolve: {score_weights: {pitch: -1}}\n"),
        ("unknown_model", "model: {name: no-such-model}\n"),
        ("bad_target", "latency: {target: 'gpu:0'}\n"),
        ("missing_checkpoint", "model: {checkpoint: /nonexistent/model.safetensors}\n"),
        ("deep_nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n"),
        ("deep_nesting", "evolve: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n"),
        ("billion_laughs", "a: &a [x, x, x, x, x, x, x, x, x]\n"
         + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                   for p, c in zip("abcdefgh", "bcdefghi", strict=True))
         + "train: {steps: *i}\n"),
        ("tabs_and_bad_yaml", "train:\n\tsteps: 3\n"),
        ("tabs_and_bad_yaml", "train: {steps: 3\n"),
        ("duplicate_keys", "train: {steps: 3}\ntrain: {steps: 4}\n"),
        ("binary_garbage", rng.randbytes(512)),
        ("binary_garbage", b"\x00\xff" * 300),
        ("not_utf8", "name: caf\xe9\n".encode("latin-1")),
    ]
    for _ in range(max(1, 10 * scale // 10)):
        docs.append(("binary_garbage", rng.randbytes(rng.randrange(1, 4096))))
    out = []
    for i, (case, text) in enumerate(docs):
        p = root / f"{i:03d}_{case}.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        out.append(Input(case, str(p), "config"))
    return out


# ---- checkpoints and programs -------------------------------------------------------------------
def checkpoint_inputs(root: Path, rng: random.Random, scale: int, models: dict[str, str]
                      ) -> list[Input]:
    root.mkdir(parents=True, exist_ok=True)
    ck = Path(models["svc"]).read_bytes()
    out: list[Input] = []

    def add(case: str, name: str, data: bytes, kind: str = "checkpoint") -> None:
        p = root / f"{len(out):04d}_{name}"
        p.write_bytes(data)
        out.append(Input(case, str(p), kind))

    for i in range(max(2, 40 * scale // 10)):
        b = bytearray(ck)
        # flips in the JSON header (the first KB) or in the tensors
        region = (8, min(len(b), 4096)) if i % 2 else (4096, len(b))
        for _ in range(rng.choice([1, 4, 32])):
            pos = rng.randrange(*region)
            b[pos] ^= 1 << rng.randrange(8)
        add("ckpt_bitflip", f"flip_{i}.safetensors", bytes(b))
    for i in range(max(2, 20 * scale // 10)):
        add("ckpt_truncated", f"trunc_{i}.safetensors", ck[: rng.randrange(0, len(ck))])
    import pickle

    add("pickle_renamed", "pickle.safetensors", pickle.dumps({"state_dict": {"w": [1, 2]}}))
    add("pickle_renamed", "pickle.pt", pickle.dumps({"model": "lhq-svc-unittest"}))
    add("random_bytes", "random.safetensors", rng.randbytes(4096))
    add("empty", "empty.safetensors", b"")
    add("other_family", "separator.safetensors", Path(models["sep"]).read_bytes())
    add("other_family", "sts.safetensors", Path(models["sts"]).read_bytes())
    header_len = struct.unpack("<Q", ck[:8])[0]
    header = json.loads(ck[8:8 + header_len])
    meta = dict(header.get("__metadata__", {}))
    ours = json.loads(meta["lhq_mobile"])  # models.checkpoint's header (HEADER_KEY)
    ours["schema_version"] = 999
    meta["lhq_mobile"] = json.dumps(ours)
    header["__metadata__"] = meta
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    add("newer_schema", "newer.safetensors", struct.pack("<Q", len(hb)) + hb
        + ck[8 + header_len:])
    pte = Path(models["pte"]).read_bytes()
    for i in range(max(2, 10 * scale // 10)):
        add("pte_truncated", f"trunc_{i}.pte", pte[: rng.randrange(0, len(pte))], "program")
    add("pte_other_model", "separator.pte", Path(models["sep_pte"]).read_bytes(), "program")
    add("pte_random", "random.pte", rng.randbytes(2048), "program")
    return out


# ---- the worker -------------------------------------------------------------------------------
_W: dict[str, Any] = {}


def _worker_init(models: dict[str, str], out_dir: str) -> None:
    import logging

    import torch

    torch.set_num_threads(1)
    from compress.cli_util import quiet_dependencies

    quiet_dependencies(logging.WARNING)
    logging.getLogger().setLevel(logging.ERROR)
    _W.update(models=models, out=Path(out_dir))


def _names_file(msg: str, path: str) -> bool:
    p = Path(path)
    return path in msg or p.name in msg


#: lines that are not the command's message: the ExecuTorch runtime's own diagnostics
#: (``[program.cpp:114] File size is too small ...``; the console command hides the cpuinfo /
#: threadpool ones, :data:`compress.cli_util.NATIVE_NOISE`, and keeps the runtime's errors,
#: which the command's message points to), libmpg123's, and a command's progress lines
_NOT_THE_MESSAGE = re.compile(r"^(\[[\w/]+\.(cpp|cc|c|h):\d+\]|\[src/libmpg123/|Warning: "
                              r"Xing|Note: |melody .*: F0 contour|WARNING |INFO )")


def _cli(argv: list[str], path: str) -> tuple[str, str]:
    """`compress ARGV` in process: (outcome, message). A clean error is exit status 1 with one
    ``compress CMD: error:`` line naming the file (other lines: :data:`_NOT_THE_MESSAGE`)."""
    from compress.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    except BaseException as exc:  # every escape is a crash to count
        return "crash", f"{type(exc).__name__}: {exc}"
    return classify(rc, err.getvalue(), path)


def classify(rc: int, stderr: str, path: str) -> tuple[str, str]:
    """The outcome of a command (in process or a real process) from its exit status and
    stderr (module docstring, **Outcomes**)."""
    if "Traceback (most recent call last)" in stderr:
        return "crash", stderr[-500:]
    lines = [line for line in stderr.splitlines()
             if line.strip() and not _NOT_THE_MESSAGE.match(line)]
    if rc == 0:
        return "handled", ""
    if rc == 1 and len(lines) == 1 and _names_file(lines[0], path):
        return "clean_error", lines[0]
    # `compress validate` lists every problem: "FILE: N problem(s)" and one "  - " line each
    if (rc == 1 and len(lines) > 1 and _names_file(lines[0], path)
            and lines[0].rstrip().endswith(("problem", "problems"))
            and all(line.startswith("  - ") for line in lines[1:])):
        return "clean_error", "; ".join(line[4:] for line in lines[1:])
    return "crash", f"exit {rc}: " + " | ".join(lines)[:500]


def _library_load(path: str) -> tuple[str, str]:
    from models.audio import load_audio
    from models.errors import ModelsError

    try:
        wav, sr = load_audio(path, sample_rate=16000)
    except ModelsError as exc:
        msg = str(exc)
        if "\n" not in msg and _names_file(msg, path):
            return "clean_error", msg
        return "crash", f"unnamed or multi-line error: {msg[:300]}"
    except BaseException as exc:
        return "crash", f"{type(exc).__name__}: {exc}"[:500]
    if wav.size == 0 or not np.isfinite(wav).all() or sr != 16000:
        return "crash", f"bad output: {wav.shape}, finite {np.isfinite(wav).all()}, sr {sr}"
    return "handled", ""


def run_case(inp: dict[str, Any], entry: str) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    path, models, out = inp["path"], _W["models"], _W["out"]
    res = out / "out"
    if entry == "load_audio":
        o, m = _library_load(path)
    elif entry == "convert":
        o, m = _cli(["convert", "--model", models["svc"], "--input", path, "--speaker",
                     "singer00", "--output", str(res / "c.wav"), "--steps", "1"], path)
    elif entry == "separate":
        o, m = _cli(["separate", "--model", models["sep"], "--input", path, "--out",
                     str(res / "sep")], path)
    elif entry == "sing":
        o, m = _cli(["sing", "--model", models["sts"], "--speech", path, "--melody",
                     models["melody"], "--out", str(res / "s.wav")], path)
    elif entry == "validate":
        o, m = _cli(["validate", path], path)
    elif entry == "run":
        o, m = _cli(["run", path, "--out", str(res / "run_should_not_start")], path)
    elif entry == "load_model":
        from models.checkpoint import load_model
        from models.errors import ModelsError

        try:
            load_model(path)
            o, m = "handled", ""
        except ModelsError as exc:
            msg = str(exc)
            o, m = (("clean_error", msg) if _names_file(msg, path) and "\n" not in msg
                    else ("crash", f"unnamed or multi-line: {msg[:300]}"))
        except BaseException as exc:
            o, m = "crash", f"{type(exc).__name__}: {exc}"[:500]
    elif entry == "convert_model":
        o, m = _cli(["convert", "--model", path, "--input", models["song"], "--speaker",
                     "singer00", "--output", str(res / "m.wav"), "--steps", "1"], path)
    else:
        raise ValueError(entry)
    return o, m, time.perf_counter() - t0


ENTRIES = {"audio": ("load_audio", "convert", "separate", "sing"),
           "config": ("validate", "run"),
           "checkpoint": ("load_model", "convert_model"),
           "program": ("convert_model",)}


def run_input(camp: Campaign, inp: Input, index: int) -> list[Result]:
    """Every entry point of `inp`'s kind. An audio input the loader rejects fails the same way
    in every command (they all load through it): the commands run on every input the loader
    accepts, and on every 5th one it rejects (their one-line error is checked, not re-proved
    for each)."""
    entries = ENTRIES[inp.kind]
    first = camp.run(inp, entries[0])
    out = [first]
    if inp.kind == "audio" and first.outcome != "handled" and index % 5:
        return out
    if inp.kind == "config" and first.outcome == "handled":
        return out  # a valid config: `compress run` would start working
    for entry in entries[1:]:
        out.append(camp.run(inp, entry))
    if inp.kind == "config" and out[-1].outcome == "clean_error":
        # the same problems, validate's list against run's one line ("...: p1; p2")
        said = out[-1].message.split(" in config: ", 1)[-1]
        if first.outcome == "clean_error" and "problem" in out[-1].message \
                and said != first.message:
            out[-1] = Result(inp.case, inp.path, "run", "crash",
                             f"validate and run disagree: {first.message!r} vs {said!r}",
                             out[-1].seconds)
    return out


class Campaign:
    """Runs cases in one worker process, restarting it after a hang or a dead worker."""

    def __init__(self, models: dict[str, str], out_dir: Path, timeout: float) -> None:
        self.models, self.out_dir, self.timeout = models, out_dir, timeout
        self.ctx = mp.get_context("spawn")
        self.pool: Any = None

    def _pool(self) -> Any:
        if self.pool is None:
            self.pool = self.ctx.Pool(1, initializer=_worker_init,
                                      initargs=(self.models, str(self.out_dir)),
                                      maxtasksperchild=200)
        return self.pool

    def run(self, inp: Input, entry: str) -> Result:
        t0 = time.perf_counter()
        try:
            o, m, secs = self._pool().apply_async(run_case, (asdict(inp), entry)).get(
                self.timeout)
        except mp.TimeoutError:
            self.close()
            return Result(inp.case, inp.path, entry, "hang",
                          f"no answer in {self.timeout:g} s", time.perf_counter() - t0)
        except Exception as exc:
            self.close()
            return Result(inp.case, inp.path, entry, "crash", f"worker died: {exc}",
                          time.perf_counter() - t0)
        return Result(inp.case, inp.path, entry, o, m, secs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None


def real_process(inp: Input, models: dict[str, str], out: Path, timeout: float) -> Result:
    """``python -m compress convert`` as a user runs it."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "compress", "convert", "--model", models["svc"], "--input",
           inp.path, "--speaker", "singer00", "--output", str(out / "cli.wav"), "--steps", "1"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
    except subprocess.TimeoutExpired:
        return Result(inp.case, inp.path, "cli_process", "hang", f"no exit in {timeout:g} s",
                      time.perf_counter() - t0)
    o, m = classify(p.returncode, p.stderr, inp.path)
    return Result(inp.case, inp.path, "cli_process", o, m, time.perf_counter() - t0)


# ---- models for the entry points ----------------------------------------------------------------
def make_models(root: Path) -> dict[str, str]:
    """Seeded untrained checkpoints of the three families, a program, a song and a melody."""
    import soundfile as sf
    import torch

    from export.api import export_model
    from export.common import fill_zero_parameters
    from models import registry
    from models.checkpoint import save_checkpoint

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    torch.manual_seed(0)
    svc = registry.build("lhq-svc-unittest", speakers=["singer00", "singer01"]).eval()
    out["svc"] = str(save_checkpoint(root / "svc", svc, model_name="lhq-svc-unittest",
                                     config=svc.config, architecture=svc.architecture,
                                     extra={"speakers": svc.speakers}))
    for key, name in (("sep", "cws-unet5-unittest"), ("sts", "sts-unittest")):
        m = registry.build(name).eval()
        fill_zero_parameters(m)  # an output layer initialised to 0 would make a silent model
        out[key] = str(save_checkpoint(root / key, m, model_name=name,
                                       config=registry.get(name).config()))
    out["pte"] = str(export_model("lhq-svc-decoder-unittest", "pte", "fp32", root / "pte").path)
    out["sep_pte"] = str(export_model(out["sep"], "pte", "fp32", root / "sep_pte").path)
    song = root / "song.wav"
    sf.write(song, _tone(16000, 16000)[:, 0].astype(np.float32), 16000)
    out["song"] = str(song)
    melody = root / "melody.csv"
    melody.write_text("".join(f"{t / 100:.2f},{220.0 if t < 100 else 247.0}\n"
                              for t in range(200)))
    out["melody"] = str(melody)
    return out


# ---- main -------------------------------------------------------------------------------------
def summarise(results: list[Result]) -> list[Row]:
    rows: dict[str, Row] = {}
    seen: dict[str, set[str]] = {}
    for r in results:
        row = rows.setdefault(r.case, Row(r.case))
        seen.setdefault(r.case, set()).add(r.path)
        row.counts[r.outcome] += 1
    for case, row in rows.items():
        row.inputs = len(seen[case])
    return list(rows.values())


def print_table(rows: list[Row], results: list[Result]) -> None:
    print(f"{'case':26s} {'inputs':>6s} {'runs':>5s} " + " ".join(f"{o:>11s}" for o in OUTCOMES))
    tot = dict.fromkeys(OUTCOMES, 0)
    for row in rows:
        runs = sum(row.counts.values())
        print(f"{row.case:26s} {row.inputs:6d} {runs:5d} "
              + " ".join(f"{row.counts[o]:11d}" for o in OUTCOMES))
        for o in OUTCOMES:
            tot[o] += row.counts[o]
    print(f"{'total':26s} {sum(r.inputs for r in rows):6d} {sum(tot.values()):5d} "
          + " ".join(f"{tot[o]:11d}" for o in OUTCOMES))
    bad = [r for r in results if r.outcome in ("crash", "hang")]
    for r in bad[:40]:
        print(f"  {r.outcome.upper()} {r.case} {r.entry} {Path(r.path).name}: {r.message}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the rows, totals and every crash / hang here")
    ap.add_argument("--quick", action="store_true", help="a small sample of every case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cli", type=int, default=60,
                    help="audio inputs also run as a real `python -m compress convert` process")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a hang")
    ap.add_argument("--keep", help="keep the generated inputs in this folder")
    ap.add_argument("--only", choices=("audio", "config", "checkpoint"), nargs="+",
                    help="only these kinds of input")
    args = ap.parse_args(argv)
    import logging

    from compress.cli_util import quiet_dependencies

    quiet_dependencies(logging.WARNING)  # dependency warnings stay out of the terminal
    t_start = time.time()
    rng = random.Random(args.seed)
    scale = 1 if args.quick else 10
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="faults_"))
    try:
        print("faults: making the models the entry points use ...", file=sys.stderr)
        models = make_models(tmp / "models")
        kinds = args.only or ["audio", "config", "checkpoint"]
        inputs: list[Input] = []
        if "audio" in kinds:
            inputs += audio_inputs(tmp / "audio", rng, scale)
        if "config" in kinds:
            inputs += config_inputs(tmp / "config", rng, scale)
        if "checkpoint" in kinds:
            inputs += checkpoint_inputs(tmp / "ckpt", rng, scale, models)
        (tmp / "work" / "out").mkdir(parents=True, exist_ok=True)
        camp = Campaign(models, tmp / "work", args.timeout)
        results: list[Result] = []
        print(f"faults: {len(inputs)} inputs", file=sys.stderr)
        try:
            for i, inp in enumerate(inputs):
                results += run_input(camp, inp, i)
                if (i + 1) % 50 == 0:
                    print(f"faults: {i + 1}/{len(inputs)} inputs, {len(results)} runs "
                          f"({time.time() - t_start:.0f} s)", file=sys.stderr)
        finally:
            camp.close()
        if not args.quick and args.cli > 0:
            audio = [inp for inp in inputs if inp.kind == "audio"]
            pick = random.Random(args.seed + 1).sample(audio, min(args.cli, len(audio)))
            print(f"faults: {len(pick)} inputs through `python -m compress convert`",
                  file=sys.stderr)
            for inp in pick:
                results.append(real_process(inp, models, tmp / "work" / "out", args.timeout))
        rows = summarise(results)
        print_table(rows, results)
        n_inputs = len(inputs)
        tot = {o: sum(r.counts[o] for r in rows) for o in OUTCOMES}
        print(f"faults: {n_inputs} inputs, {len(results)} runs: {tot['crash']} crash(es), "
              f"{tot['hang']} hang(s) in {time.time() - t_start:.0f} s")
        if args.json:
            doc = {"seed": args.seed, "quick": bool(args.quick), "inputs": n_inputs,
                   "runs": len(results), "totals": tot,
                   "rows": [{"case": r.case, "inputs": r.inputs, **r.counts} for r in rows],
                   "failures": [asdict(r) for r in results if r.outcome in ("crash", "hang")],
                   "notes": sorted({f"{i.case}: {i.note}" for i in inputs
                                    if i.note and i.case in ("no_read_permission",)}),
                   "seconds": time.time() - t_start}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(doc, indent=2))
        return 0 if tot["crash"] == 0 and tot["hang"] == 0 else 1
    finally:
        if not args.keep:
            for p in tmp.rglob("*"):
                with contextlib.suppress(OSError):
                    os.chmod(p, 0o700)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from compress.cli_util import filter_native_stderr

    filter_native_stderr()  # the runtime's own stderr lines (cpuinfo, threadpool)
    sys.exit(main())
