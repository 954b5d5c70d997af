"""`compress sing` on speech it never saw: espeak-ng sentences sung to MIDI melodies, judged by
the raw chroma accuracy (RCA, §3.1 of Parekh et al. 2020) of the output's pYIN contour against
the melody.

Usage::

    .venv/bin/python benchmarks/sts_sing.py --model runs/sts/model.safetensors \
        [--json OUT] [--voices en,en-us+f3,...] [--sentences 6] [--melodies-per-sentence 1] \
        [--seed 0] [--gl-iters 100] [--render both|griffin-lim|vocoder] [--vocoder CKPT] \
        [--keep DIR]

For every voice × sentence: espeak-ng renders the sentence (its own rate, 22.05 kHz, read back
and resampled to 16 kHz by the project's loader), a seeded random melody is written as a MIDI
file with ``mido`` (notes of 0.25–0.6 s stepping by at most a fourth inside one octave and a
half around the voice's register, one rest of 0.2 s in the middle; as long as the speech
× 1.0–1.4), and :func:`models.sts.infer.sing` turns them into singing exactly as ``compress
sing`` does (MIDI read by :func:`models.sts.melody.load_melody`, §2.1 pre-processing, the
network or ``.pte``), rendered both ways ``compress sing`` offers (``--render both``, the
default): Griffin-Lim (§2.4, the paper's; the pitch is what the network drew) and the
harmonic-plus-noise vocoder at the melody's F0 (``--render vocoder``; ``--vocoder CKPT``, else
the untrained DSP vocoder; the pitch comes from the melody, the network gives the envelope).
The RCA is computed on each output wav alone: pYIN (librosa) against the MIDI notes. Printed:
one row per item and, per rendering, the mean RCA with its standard error and the share of
items with RCA ≥ 0.7. ``--keep DIR`` keeps the speech, MIDI and sung files to listen to.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SENTENCES = (
    "the morning light was falling on the river",
    "she carried a lantern through the empty hall",
    "we walked along the road until the evening came",
    "every window in the town was open to the sea",
    "a small bird sang above the garden gate",
    "he never told anyone about the silver key",
)
#: espeak-ng voices: British / American English, male and female variants
VOICES = ("en", "en-us", "en+f3", "en-us+f2", "en+m3")
#: MIDI note range of the melody, by the voice's register (female variants a fifth higher)
LOW_NOTE, HIGH_NOTE = 50, 66  # D3 .. F#4
FEMALE_SHIFT = 7


def speak(text: str, voice: str, path: Path) -> None:
    """espeak-ng `text` in `voice` into the wav `path` (one-line error when it fails)."""
    res = subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0 or not path.is_file() or path.stat().st_size < 1000:
        raise SystemExit(f"sts_sing: espeak-ng -v {voice} failed: {res.stderr.strip()[:200]}")


def write_melody(path: Path, seconds: float, rng: np.random.Generator, shift: int) -> list[int]:
    """A seeded melody of about `seconds` as a one-track MIDI file; returns its notes."""
    import mido

    tpb, tempo = 480, 500_000  # 120 bpm: 960 ticks per second
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    lo, hi = LOW_NOTE + shift, HIGH_NOTE + shift
    note = int(rng.integers(lo + 3, hi - 3))
    t, notes, rest_done, wait = 0.0, [], False, 0
    while t < seconds:
        if not rest_done and t > seconds / 2:
            wait, rest_done = int(0.2 * 960), True
            t += 0.2
        dur = float(rng.uniform(0.25, 0.6))
        ticks = int(round(dur * 960))
        track.append(mido.Message("note_on", note=note, velocity=80, time=wait))
        track.append(mido.Message("note_off", note=note, velocity=0, time=ticks))
        notes.append(note)
        wait = 0
        t += dur
        note = int(np.clip(note + rng.integers(-5, 6), lo, hi))
    mid.save(str(path))
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an sts-* checkpoint or its .pte")
    ap.add_argument("--json", help="write the records here")
    ap.add_argument("--voices", default=",".join(VOICES))
    ap.add_argument("--sentences", type=int, default=len(SENTENCES),
                    help=f"how many of the {len(SENTENCES)} sentences (default: all)")
    ap.add_argument("--melodies-per-sentence", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gl-iters", type=int, default=100)
    ap.add_argument("--render", choices=("both", "griffin-lim", "vocoder"), default="both")
    ap.add_argument("--vocoder", default=None, metavar="CKPT",
                    help="LHQ-SVC checkpoint with a harmonic-plus-noise vocoder (default: the "
                    "untrained DSP vocoder)")
    ap.add_argument("--keep", help="keep the speech, MIDI and sung files in this folder")
    args = ap.parse_args(argv)

    from compress.cli_util import quiet_dependencies
    from models.audio import load_audio, write_wav
    from models.sts import StsError
    from models.sts.infer import load_sts, melody_rca, sing
    from models.sts.melody import load_melody
    from models.sts.preprocess import SAMPLE_RATE
    from models.sts.vocode import RENDERS, load_vocoder

    quiet_dependencies(logging.WARNING)
    renders = RENDERS if args.render == "both" else (args.render,)
    try:
        model = load_sts(args.model)
        vocoder = load_vocoder(args.vocoder) if "vocoder" in renders else None
    except StsError as exc:
        raise SystemExit(f"sts_sing: {exc}") from None
    rng = np.random.default_rng(args.seed)
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        for v_i, voice in enumerate(args.voices.split(",")):
            shift = FEMALE_SHIFT if "+f" in voice else 0
            for s_i, text in enumerate(SENTENCES[:max(args.sentences, 1)]):
                for m_i in range(args.melodies_per_sentence):
                    stem = f"{v_i}_{voice.replace('+', '_')}_{s_i}_{m_i}"
                    wav_path = work / f"{stem}_speech.wav"
                    speak(text, voice, wav_path)
                    speech, _ = load_audio(wav_path, SAMPLE_RATE)
                    seconds = speech.size / SAMPLE_RATE * float(rng.uniform(1.0, 1.4))
                    mid_path = work / f"{stem}.mid"
                    notes = write_melody(mid_path, seconds, rng, shift)
                    melody = load_melody(mid_path)
                    rca: dict[str, float] = {}
                    took: dict[str, float] = {}
                    for render in renders:
                        t0 = time.perf_counter()
                        out, info = sing(model, speech, melody, gl_iters=args.gl_iters,
                                         log=lambda s: None, render=render, vocoder=vocoder)
                        took[render] = time.perf_counter() - t0
                        rca[render] = melody_rca(out, melody)
                        if keep:
                            write_wav(work / f"{stem}_sung_{render}.wav", out, SAMPLE_RATE)
                    rows.append({"voice": voice, "sentence": s_i, "melody": m_i,
                                 "notes": notes, "speech_seconds": speech.size / SAMPLE_RATE,
                                 "sung_seconds": info["seconds"],
                                 "stretch_factor": info["stretch_factor"], "rca": rca,
                                 "seconds": took})
                    scores = ", ".join(f"{r} {v:.3f}" for r, v in rca.items())
                    print(f"{voice:10s} sentence {s_i} melody {m_i}: {len(notes)} notes, "
                          f"stretch x{info['stretch_factor']:.2f}, RCA {scores} "
                          f"({sum(took.values()):.1f} s)", file=sys.stderr)
    summary = {}
    n_voices = len(args.voices.split(","))
    for render in renders:
        rcas = np.array([r["rca"][render] for r in rows if math.isfinite(r["rca"][render])])
        sem = float(rcas.std(ddof=1) / math.sqrt(rcas.size)) if rcas.size > 1 else 0.0
        share = float(np.mean(rcas >= 0.7)) if rcas.size else float("nan")
        summary[render] = {"rca_mean": float(rcas.mean()) if rcas.size else float("nan"),
                           "rca_stderr": sem, "share_ge_0_7": share, "items": int(rcas.size)}
        print(f"{render:12s} {len(rows)} items ({n_voices} voices x {args.sentences} sentences "
              f"x {args.melodies_per_sentence}): RCA {summary[render]['rca_mean']:.3f} ± "
              f"{sem:.3f}, {share:.0%} of items >= 0.7 (model {args.model})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"model": str(args.model), "seed": args.seed, "gl_iters": args.gl_iters,
             "vocoder": args.vocoder or "dsp", "renders": summary, "items": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
