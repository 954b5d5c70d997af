"""`compress data synth`: write the deterministic synthetic singing corpus.

``data`` is a command group; ``synth`` is its sub-command. The corpus layout is documented in
:mod:`models.data` (dataset_raw, musdb, nus48e, labels, meta.json).
"""

from __future__ import annotations

import argparse
import time

from compress.cli_util import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "data",
        help="datasets: synthesise the singing corpus",
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
        "--sample-rate", type=int, default=16000, help="sample rate in Hz (default 16000)"
    )


def _no_subcommand(args: argparse.Namespace) -> int:
    from compress.errors import CompressError

    raise CompressError("missing sub-command; valid: synth (see compress data --help)")


def run_synth(args: argparse.Namespace) -> int:
    from models.data.corpus import CorpusConfig, synthesize_corpus

    cfg = CorpusConfig(
        singers=args.singers, minutes=args.minutes, seed=args.seed, sample_rate=args.sample_rate
    )
    t0 = time.perf_counter()
    summary = synthesize_corpus(args.out, cfg)
    dt = time.perf_counter() - t0
    print(f"wrote corpus to {summary.root.resolve()}")
    print(f"{summary.line()} in {dt:.1f} s")
    return 0
