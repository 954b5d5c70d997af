"""Peak memory of ``compress separate`` against the song's length (issue 23: a 3-minute stereo
file "finishes with bounded memory").

Builds songs of each ``--seconds`` at ``--rate`` / ``--channels`` from the mixtures of a MUSDB
layout (``--musdb DIR``: ``DIR/{train,test}/<song>/mixture.wav``, concatenated and resampled;
without it a seeded tone-over-noise stand-in), runs ``compress separate --model M`` on each in
its own process, one after the other, and reads that process's own peak RSS from
``os.wait4`` (``ru_maxrss``). The songs are written by a child process of their own: a peak RSS
survives ``fork`` and ``exec``, so a parent holding a 10-minute song would lend its size to
every child's figure (it did: 782 MB for a 600-s song whose separation peaks at 415 MB).
Printed per length: wall seconds, peak RSS (MB), and the ratio of each peak to the shortest
song's — 1.0 when memory does not grow with the song. The stems are checked: both written, at
the input's rate, channel count and length.

Example::

    .venv/bin/python benchmarks/separate_memory.py --model runs/sep/model.safetensors \\
        --musdb runs/demo/00_data/corpus/musdb --seconds 20 180 --json mem.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from models.audio import load_audio, resample


def make_song(seconds: float, rate: int, channels: int, musdb: Path | None) -> np.ndarray:
    """``(T, C)`` float32: the MUSDB mixtures one after the other (looped), or a stand-in."""
    n = int(round(seconds * rate))
    if musdb is None:
        rng = np.random.default_rng(0)
        t = np.arange(n) / rate
        voice = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
        return (voice[:, None] + 0.05 * rng.standard_normal((n, channels))).astype(np.float32)
    files = sorted(musdb.glob("*/*/mixture.wav"))
    if not files:
        raise SystemExit(f"{musdb}: no */*/mixture.wav")
    parts, have = [], 0
    while have < n:
        for f in files:
            wav, sr = load_audio(f, channels=channels)
            wav = wav if wav.ndim == 2 else wav[None]
            wav = resample(wav, sr, rate).T
            parts.append(wav)
            have += wav.shape[0]
            if have >= n:
                break
    return np.concatenate(parts)[:n].astype(np.float32)


def run_separate(model: str, src: Path, out: Path) -> dict[str, Any]:
    """``compress separate`` in a child process: its wall time and its own peak RSS."""
    cmd = [sys.executable, "-m", "compress", "separate", "--model", model, "--input", str(src),
           "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.stdout is not None
    text = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"compress separate failed ({p.returncode}):\n{text}")
    return {"wall_s": wall, "max_rss_mb": usage.ru_maxrss / 1024.0, "output": text.strip()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="separator checkpoint or .pte")
    ap.add_argument("--musdb", type=Path, default=None, help="MUSDB-layout folder (songs)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[20.0, 180.0])
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--write-song", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.write_song is not None:  # the child that writes one song (module docstring)
        song = make_song(args.seconds[0], args.rate, args.channels, args.musdb)
        sf.write(args.write_song, song, args.rate, subtype="PCM_16")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="sepmem_") as tmp:
        for secs in sorted(args.seconds):
            src = Path(tmp) / f"song_{secs:g}s.wav"
            subprocess.run([sys.executable, __file__, "--model", args.model, "--seconds",
                            str(secs), "--rate", str(args.rate), "--channels",
                            str(args.channels), "--write-song", str(src),
                            *(["--musdb", str(args.musdb)] if args.musdb else [])], check=True)
            frames = sf.info(str(src)).frames
            out = Path(tmp) / f"stems_{secs:g}s"
            res = run_separate(args.model, src, out)
            for stem in ("vocals", "accompaniment"):
                info = sf.info(str(out / f"{stem}.wav"))
                if (info.samplerate, info.channels, info.frames) != (
                        args.rate, args.channels, frames):
                    raise SystemExit(f"{stem}.wav: {info.samplerate} Hz, {info.channels} ch, "
                                     f"{info.frames} frames; expected {args.rate}, "
                                     f"{args.channels}, {frames}")
            rows.append({"seconds": secs, "rate": args.rate, "channels": args.channels,
                         "input_mb_float32": frames * args.channels * 4 / 2**20, **res})
            print(f"{secs:8.1f} s  wall {res['wall_s']:7.1f} s  peak RSS "
                  f"{res['max_rss_mb']:7.1f} MB", flush=True)
    base = rows[0]["max_rss_mb"]
    print(f"\n{'seconds':>8} {'wall s':>8} {'peak MB':>8} {'vs shortest':>12}")
    for r in rows:
        r["rss_vs_shortest"] = r["max_rss_mb"] / base
        print(f"{r['seconds']:8.1f} {r['wall_s']:8.1f} {r['max_rss_mb']:8.1f} "
              f"{r['rss_vs_shortest']:12.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
