"""`compress convert`: convert a singing recording to another singer with a checkpoint."""

from __future__ import annotations

import argparse
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    from compress.cli_util import add_command, add_device_argument

    p = add_command(
        sub,
        "convert",
        help="convert a wav file to a target singer with an LHQ-SVC checkpoint",
        example="compress convert --checkpoint ckpt/demo --input in.wav --speaker singer01 "
        "--output out.wav --pitch 2",
        run=run,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file or directory")
    p.add_argument("--input", required=True, help="input audio (any format libsndfile reads)")
    p.add_argument("--speaker", required=True, help="target speaker name (see the error list)")
    p.add_argument("--output", required=True, help="output wav")
    p.add_argument("--pitch", type=float, default=0.0, help="pitch shift in semitones")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
    p.add_argument("--sampler", choices=["ddim", "ancestral"], default="ddim")
    p.add_argument("--kappa", type=float, default=0.0, help="ancestral noise interpolation κ")
    p.add_argument("--f0", choices=["dio", "torch"], default="dio",
                   help="F0 estimator: DIO (as in training) or the on-device torch one")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length for long inputs (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p, "a checkpoint's conversion")
    p.add_argument("--temperature", type=float, default=None,
                   help="scale of the sampler's starting noise, 0..2 (default: the checkpoint's)")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from compress.cli_util import resolve_device
    from compress.errors import CompressError
    from models.audio import load_audio, write_wav
    from models.checkpoint import load_model
    from models.lhq_svc.pipeline import SVCPipeline, check_temperature

    device = resolve_device(args.device)
    if args.steps < 1:
        raise CompressError(f"--steps {args.steps}: expected >= 1")
    if args.temperature is not None:
        try:
            check_temperature(args.temperature)
        except ValueError as exc:
            raise CompressError(f"--temperature: {exc}") from None
    model, header = load_model(args.checkpoint)
    if not hasattr(model, "convert_long"):
        raise CompressError(f"checkpoint {args.checkpoint} holds {header.model!r}, which is not "
                            "an LHQ-SVC pipeline")
    speakers = list(header.extra.get("speakers") or model.speakers)
    if args.speaker not in speakers:
        raise CompressError(f"unknown speaker {args.speaker!r}; valid: {', '.join(speakers)}")
    wav, sr = load_audio(args.input, sample_rate=model.sample_rate)
    t0 = time.time()
    bar = tqdm(desc="convert", unit="chunk", disable=not sys.stderr.isatty())
    if isinstance(model, SVCPipeline):
        model.to(device)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with torch.inference_mode():
        out = model.convert_long(wav, speakers.index(args.speaker), args.pitch, steps=args.steps,
                                 sampler=args.sampler, kappa=args.kappa, seed=args.seed,
                                 chunk_seconds=args.chunk_seconds, progress=progress,
                                 f0_method=args.f0, temperature=args.temperature)
    bar.close()
    write_wav(args.output, out, sr)
    secs = len(wav) / sr
    print(f"wrote {args.output}: {secs:.1f} s of audio in {time.time() - t0:.1f} s "
          f"(speaker {args.speaker}, pitch {args.pitch:+g}, {args.steps} {args.sampler} steps, "
          f"temperature {model.temperature if args.temperature is None else args.temperature:g})")
    return 0
