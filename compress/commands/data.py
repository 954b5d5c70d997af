"""`compress data synth` / `compress data slice`: make the corpus, cut long recordings.

``data`` is a command group; ``synth`` and ``slice`` are its sub-commands. The corpus layout
is documented in :mod:`models.data` (dataset_raw, musdb, nus48e, labels, meta.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from compress.cli_util import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "data",
        help="datasets: synthesise the singing corpus, slice long recordings",
        example="compress data synth --out runs/demo/corpus --singers 4 --minutes 2 --seed 0",
        run=_no_subcommand,
    )
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = add_command(
        dsub,
        "synth",
        help="write the synthetic singing corpus (dataset_raw, musdb, nus48e, labels, meta.json)",
        example="compress data synth --out runs/demo/corpus --singers 4 --minutes 2 --seed 0",
        run=run_synth,
    )
    s.add_argument("--out", required=True, help="output directory (new, empty, or a corpus)")
    s.add_argument("--singers", type=int, default=4, help="number of singers (default 4)")
    s.add_argument(
        "--minutes",
        type=float,
        default=2.0,
        help="sung audio per singer in minutes, approximately (default 2)",
    )
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument(
        "--voice-noise",
        type=float,
        default=None,
        metavar="SCALE",
        help="scale of the voices' cycle-level jitter / shimmer / aspiration (default 0.25, "
        "models.data.corpus.VOICE_NOISE; 1 = untrained voices, whose retakes score STOI 0.79)",
    )
    s.add_argument(
        "--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)"
    )

    c = add_command(
        dsub,
        "slice",
        help="cut recordings at silences into clips under 30 s, dropping silent ones",
        example="compress data slice song.flac --out dataset_raw/alice --sample-rate 40000",
        run=run_slice,
    )
    c.add_argument("inputs", nargs="+", help="audio files (wav / flac / ogg / mp3)")
    c.add_argument("--out", required=True, help="output directory for <stem>_NNNN.wav clips")
    c.add_argument("--sample-rate", type=int, default=None, help="resample clips to this rate")
    c.add_argument("--threshold-db", type=float, default=-40.0, help="silence threshold (dBFS)")
    c.add_argument("--min-length", type=float, default=5.0, help="shortest clip in seconds")
    c.add_argument("--max-length", type=float, default=30.0, help="longest clip in seconds")
    c.add_argument(
        "--normalize",
        type=float,
        default=None,
        metavar="LUFS",
        help="normalise each clip to this loudness (e.g. -23)",
    )


def run_slice(args: argparse.Namespace) -> int:
    from models.audio import load_audio, normalize_loudness, write_wav
    from models.slicer import SlicerConfig, slice_audio

    cfg = SlicerConfig(
        threshold_db=args.threshold_db, min_length_s=args.min_length, max_length_s=args.max_length
    )
    total = 0
    for path in args.inputs:
        wav, sr = load_audio(path, sample_rate=args.sample_rate, channels=1)
        ranges = slice_audio(wav, sr, cfg)
        stem = Path(path).stem
        for k, (s, e) in enumerate(ranges):
            clip = wav[s:e]
            if args.normalize is not None:
                clip = normalize_loudness(clip, sr, target_lufs=args.normalize)
            write_wav(Path(args.out) / f"{stem}_{k:04d}.wav", clip, sr)
        kept = sum(e - s for s, e in ranges) / sr
        print(f"{path}: {len(ranges)} clips, {kept:.1f} s of {len(wav) / sr:.1f} s kept")
        total += len(ranges)
    print(f"wrote {total} clips to {Path(args.out).resolve()}")
    return 0


def _no_subcommand(args: argparse.Namespace) -> int:
    from compress.errors import CompressError

    raise CompressError("missing sub-command; valid: synth, slice (see compress data --help)")


def run_synth(args: argparse.Namespace) -> int:
    from models.data.corpus import CorpusConfig, synthesize_corpus

    cfg = CorpusConfig(
        singers=args.singers, minutes=args.minutes, seed=args.seed, sample_rate=args.sample_rate,
        **({} if args.voice_noise is None else {"voice_noise": args.voice_noise}),
    )
    t0 = time.perf_counter()
    summary = synthesize_corpus(args.out, cfg)
    dt = time.perf_counter() - t0
    print(f"wrote corpus to {summary.root.resolve()}")
    print(f"{summary.line()} in {dt:.1f} s")
    return 0
