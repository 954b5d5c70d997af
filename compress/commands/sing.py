"""`compress sing`: turn speech into singing along a melody with a speech-to-singing model."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from compress.cli_util import add_command

    p = add_command(
        sub,
        "sing",
        help="sing a speech recording to a melody (MIDI, F0 file or sung reference) with a "
        "speech-to-singing checkpoint (sts-*) or its .pte",
        example="compress sing --model runs/sts/model.safetensors --speech speech.wav "
        "--melody tune.mid --out sung.wav\n"
        "  compress sing --model sts-demo_xnnpack_fp32.pte --speech speech.wav "
        "--melody reference_singing.wav --out sung.wav --render griffin-lim --gl-iters 60\n"
        "  compress sing --model runs/sts/model.safetensors --speech speech.wav "
        "--melody tune.mid --out sung.wav --vocoder runs/demo/01_teacher/model.safetensors",
        run=run,
        description="Speech-to-singing (Parekh et al., ICASSP 2020): the speech's silences are "
        "removed and it is time-stretched by one factor to the melody's length (§2.1), the "
        "network maps its log-magnitude spectrogram and the melody image to singing (§2.2), "
        "and the harmonic-plus-noise vocoder of LHQ-SVC sings that spectrogram (the envelope) "
        "at the melody's F0 (the source); --render griffin-lim makes the waveform with the "
        "paper's Griffin-Lim instead (§2.4), whose pitch is the one the network drew. The "
        "melody is a MIDI file (the first track "
        "with notes, or --track; overlapping notes become the highest), a 'time_s, hz' F0 "
        "file (.csv/.txt) or a sung reference whose pYIN F0 is used. The output lasts as long "
        "as the melody, at 16 kHz; its raw chroma accuracy against the melody is printed. A "
        ".pte runs in the ExecuTorch runtime in consecutive fixed chunks (no overlap).",
    )
    p.add_argument("--model", required=True, metavar="CKPT|X.pte",
                   help="speech-to-singing checkpoint (file or directory) or exported program")
    p.add_argument("--speech", required=True,
                   help="speech recording (any format libsndfile reads; mixed to mono, "
                   "resampled to 16 kHz)")
    p.add_argument("--melody", required=True, metavar="MELODY",
                   help="target melody: .mid/.midi, .csv/.txt (time_s, hz; 0 = unvoiced) or "
                   "a sung reference recording")
    p.add_argument("--out", required=True, help="output wav (16 kHz, mono)")
    p.add_argument("--gl-iters", type=int, default=None, metavar="N",
                   help="Griffin-Lim iterations (default 100; fewer is faster, rougher); "
                   "implies --render griffin-lim")
    p.add_argument("--render", choices=("griffin-lim", "vocoder"), default=None,
                   help="waveform synthesis: vocoder (default; the melody's F0 drives it: "
                   "RCA 0.97 on unseen espeak-ng speech) or griffin-lim (the paper's; 0.49 "
                   "with the 1000-step sts-demo)")
    p.add_argument("--vocoder", default=None, metavar="CKPT",
                   help="LHQ-SVC checkpoint whose harmonic-plus-noise vocoder renders "
                   "(--render vocoder; default: the untrained DSP vocoder)")
    p.add_argument("--track", type=int, default=None, metavar="I",
                   help="MIDI track index to read (default: the first track with notes)")


def _load_speech(path: str) -> tuple[Any, str]:
    """Mono float32 speech at 16 kHz with the project's loader, and a note on what changed."""
    import soundfile as sf

    from models.audio import load_audio, resample
    from models.sts.preprocess import SAMPLE_RATE

    wav, sr = load_audio(path, sample_rate=None, channels=1)
    changes = []
    try:
        channels = int(sf.info(path).channels)
    except (RuntimeError, TypeError, ValueError):  # load_audio read it, so this is unlikely
        channels = 1
    if channels > 1:
        changes.append(f"mixed {channels} channels to mono")
    if sr != SAMPLE_RATE:
        wav = resample(wav, sr, SAMPLE_RATE)
        changes.append(f"resampled from {sr} Hz to {SAMPLE_RATE} Hz")
    return wav, " and ".join(changes)


def run(args: argparse.Namespace) -> int:
    from compress.errors import CompressError
    from models.audio import write_wav
    from models.sts import StsError
    from models.sts.infer import StsProgram, load_sts, melody_rca, sing
    from models.sts.melody import load_melody
    from models.sts.preprocess import SAMPLE_RATE
    from models.sts.vocode import load_vocoder

    if args.gl_iters is not None and args.gl_iters < 1:
        raise CompressError(f"--gl-iters {args.gl_iters}: expected >= 1")
    if args.track is not None and args.track < 0:
        raise CompressError(f"--track {args.track}: expected a track index >= 0")
    render = args.render or ("griffin-lim" if args.gl_iters is not None else "vocoder")
    if args.gl_iters is not None and render != "griffin-lim":
        raise CompressError("--gl-iters is for --render griffin-lim; drop one of them")
    gl_iters = 100 if args.gl_iters is None else args.gl_iters
    if args.vocoder and render != "vocoder":
        raise CompressError("--vocoder renders with the vocoder; drop --render griffin-lim or "
                            "--vocoder")
    t0 = time.perf_counter()
    try:
        model = load_sts(args.model)
        vocoder = load_vocoder(args.vocoder) if render == "vocoder" else None
        melody = load_melody(args.melody, track=args.track)
        speech, changed = _load_speech(args.speech)
        if changed:
            print(f"{args.speech}: {changed}", file=sys.stderr)
        print(f"melody {melody.description}", file=sys.stderr)
        try:
            wav, info = sing(model, speech, melody, gl_iters=gl_iters,
                             log=lambda line: print(line, file=sys.stderr), render=render,
                             vocoder=vocoder)
        except StsError as exc:
            text = str(exc)
            if text.startswith("speech"):  # name the file the message is about
                text = f"{args.speech}: {text}"
            raise StsError(text) from None
        out = write_wav(args.out, wav, SAMPLE_RATE)
        rca = melody_rca(wav, melody)
    except StsError as exc:
        raise CompressError(str(exc)) from None
    if isinstance(model, StsProgram):
        what = (f"program {model.path} ({info['network_calls']} chunk(s) of "
                f"{model.frames} frames)" if model.frames else f"program {model.path}")
    else:
        what = f"checkpoint {args.model}"
    synthesis = (f"{gl_iters} Griffin-Lim iterations" if render == "griffin-lim" else
                 f"rendered by the {'DSP' if args.vocoder is None else args.vocoder} vocoder at "
                 "the melody's F0")
    rca_text = "n/a (output shorter than one analysis window)" if rca != rca else f"{rca:.1%}"
    print(f"wrote {out}: {info['seconds']:.2f} s of singing at {SAMPLE_RATE} Hz in "
          f"{time.perf_counter() - t0:.1f} s with the {what}; stretch factor "
          f"{info['stretch_factor']:.2f}, {synthesis}; raw chroma "
          f"accuracy of its pYIN F0 against the melody: {rca_text}")
    return 0
