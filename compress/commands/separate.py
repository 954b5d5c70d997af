"""`compress separate`: split a song into vocals and accompaniment with a separator."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from compress.cli_util import add_command, add_device_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "separate",
        help="split a song into vocals.wav and accompaniment.wav (a CWS separator checkpoint "
        "or its .pte)",
        example="compress separate --model runs/sep/model.safetensors --input song.flac "
        "--out stems/\n"
        "  compress separate --model cws-student_xnnpack_int8.pte --input song.wav --out stems/",
        run=run,
        description="Separate a recording into its singing voice and its accompaniment: the "
        "step before `compress train` on your own songs (LHQ-SVC §IV.A trains on separated "
        "vocals). Long songs stream through in overlapping, crossfaded chunks: the file is "
        "read, resampled, separated and written block by block, so memory does not grow "
        "with the song's length; the stems are written at the input's sample rate and channel "
        "count. A .pte runs in the ExecuTorch runtime chunk by chunk, as the phone does.",
    )
    p.add_argument("--model", required=True, metavar="CKPT|X.pte",
                   help="separator checkpoint (file or directory) or exported program")
    p.add_argument("--input", required=True, help="audio file (any format libsndfile reads)")
    p.add_argument("--out", required=True, help="output directory for the two stems")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length (default: 6 s for a checkpoint; a .pte's own chunk)")
    p.add_argument("--overlap-seconds", type=float, default=None,
                   help="crossfade between chunks (default: 0.5 s, at most a quarter chunk)")
    add_device_argument(p, "a checkpoint's separation")


def _program(runner: Any, sample_rate: int, channels: int) -> Any:
    """A fixed-chunk separator ``.pte`` seen as a module ``(1, C, T) -> (1, 2, C, T)``."""
    from torch import nn

    class Program(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            object.__setattr__(self, "runner", runner)
            self.sample_rate, self.channels = sample_rate, channels

        def forward(self, mix: Any) -> Any:
            return self.runner(mix.contiguous())[0]

    return Program()


def load_separator(path: str) -> tuple[Any, float | None, str]:
    """``(module, the program's chunk seconds or None, what)`` for a checkpoint or a .pte."""
    from compress.errors import CompressError

    if str(path).endswith(".pte"):
        from export.errors import ExportError
        from export.runtime import PteRunner, load_pte_metadata

        p = Path(path)
        if not p.is_file():
            raise CompressError(f"{p}: no such program file")
        try:
            meta = load_pte_metadata(p)
            runner = PteRunner(p)
        except ExportError as exc:
            raise CompressError(f"{p}: not a loadable ExecuTorch program ({exc})") from None
        if meta.get("family") == "separation" and meta.get("component") == "stream":
            raise CompressError(f"{p}: a streaming program (one chunk and its state in, the "
                                "next state out) for an app to call chunk by chunk; give "
                                "compress separate the separator's checkpoint or its "
                                "whole-chunk .pte")
        if meta.get("family") != "separation" or meta.get("dynamic_length"):
            raise CompressError(f"{p}: holds {meta.get('family', '?')}/"
                                f"{meta.get('component', '?')}, not a fixed-chunk separator")
        sr, ch, n = (int(meta[k]) for k in ("sample_rate", "channels", "chunk_frames"))
        return _program(runner, sr, ch), n / sr, f"program {p.name}"
    from models import registry
    from models.checkpoint import load_model

    model, header = load_model(path)
    if registry.get(header.model).family != "separation":
        raise CompressError(f"checkpoint {path} holds {header.model!r}, not a separator "
                            "(see `compress models`)")
    return model.eval(), None, f"checkpoint {header.model}"


def run(args: argparse.Namespace) -> int:
    from compress.cli_util import resolve_device
    from compress.errors import CompressError
    from models.separation.infer import separate_file

    model, pte_chunk, what = load_separator(args.model)
    if pte_chunk is None:
        model.to(resolve_device(args.device))
    elif args.chunk_seconds is not None and abs(args.chunk_seconds - pte_chunk) > 1e-6:
        raise CompressError(f"--chunk-seconds {args.chunk_seconds:g}: the program takes "
                            f"chunks of {pte_chunk:g} s exactly")
    chunk = pte_chunk or args.chunk_seconds or 6.0
    overlap = args.overlap_seconds if args.overlap_seconds is not None else min(0.5, chunk / 4)
    t0 = time.perf_counter()
    out = Path(args.out)
    info = separate_file(model, args.input, out, chunk, overlap,
                         progress=None if sys.stderr.isatty() else False)
    print(f"wrote {out / 'vocals.wav'} and {out / 'accompaniment.wav'}: "
          f"{info['seconds']:.1f} s of audio ({info['channels']} channel(s), "
          f"{info['sample_rate']} Hz) in {time.perf_counter() - t0:.1f} s with the {what} "
          f"({model.sample_rate} Hz, {chunk:g} s chunks, read and written as a stream)")
    return 0
