"""Unseen voices: does ``compress convert --pitch auto`` land on the requested singer?

Usage::

    python benchmarks/unseen_voices.py [--run runs/demo] [--checkpoint CKPT] [--corpus DIR]
        [--model X.pte] [--steps 1] [--quick] [--json OUT]

Sources no training stage saw: espeak-ng voices (several accents, male and female variants,
each at its own speaking pitch) reading lyrics, written by espeak-ng as 22.05 kHz wav and then
passed through ``sox`` to a rotating rate (8, 22.05, 48 kHz), channel count (mono, stereo) and
container (wav, flac, ogg; mp3 through libsndfile, which this sox build cannot write) — every
combination of rate, channels and format appears. Each file is converted to every singer of
the checkpoint (or of ``--model X.pte``, run as on the phone) by the real CLI, once with
``--pitch auto`` and once with ``--pitch 0`` (the baseline). Speaker verification with
Resemblyzer (its pretrained weights ship in the wheel) compares each output with each training
singer's mean embedding over held-in clips of the corpus; the output lands on the singer whose
embedding is closest. Printed: the share that lands on the requested singer in each mode, per
singer and per input format, and the auto shifts chosen. Needs ``espeak-ng`` and ``sox``
(installed by ``make``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (espeak-ng voice, description): accents x male / female variants, each with a pitch (-p)
VOICES = [
    ("en-us+m3", "US English, male", 35),
    ("en-us+f2", "US English, female", 60),
    ("en-gb+m1", "British English, male", 45),
    ("en-gb-x-rp+f4", "British RP, female", 70),
    ("en-gb-scotland+m7", "Scottish English, male", 30),
    ("en-029+f3", "Caribbean English, female", 55),
    ("de+m2", "German, male", 40),
    ("es+f1", "Spanish, female", 65),
    ("fr+m4", "French, male", 50),
    ("it+f5", "Italian, female", 75),
]
LYRICS = [
    "Hold the light and let the morning come, we will sing until the night is done.",
    "Over the river the water is calling, softly the evening is falling.",
]
RATES = [8000, 22050, 48000]
CHANNELS = [1, 2]
FORMATS = ["wav", "flac", "ogg", "mp3"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SystemExit(f"unseen_voices: {tool} is not installed (make installs it: apt "
                         f"package {'espeak-ng' if tool == 'espeak-ng' else tool})")
    return path


def render_voices(out: Path, quick: bool) -> list[dict]:
    """espeak-ng -> sox (rate, channels, container); returns one record per file."""
    import soundfile as sf

    espeak, sox = _need("espeak-ng"), _need("sox")
    combos = list(itertools.product(RATES, CHANNELS, FORMATS))  # 24; voices rotate through them
    voices = VOICES[:4] if quick else VOICES
    n_files = len(voices) * (1 if quick else 3)
    rows = []
    for i in range(n_files):
        voice, desc, pitch = voices[i % len(voices)]
        rate, ch, fmt = combos[(i * 7) % len(combos)]  # 7 is coprime with 24: all combos
        text = LYRICS[i % len(LYRICS)]
        raw = out / f"v{i:02d}_espeak.wav"
        subprocess.run([espeak, "-v", voice, "-p", str(pitch), "-s", "120", "-w", str(raw),
                        text], check=True, capture_output=True)
        dst = out / f"v{i:02d}_{voice.replace('+', '_')}_{rate}_{ch}ch.{fmt}"
        if fmt == "mp3":  # this sox has no mp3 writer: sox does rate and channels, then mp3
            tmp = dst.with_suffix(".tmp.wav")
            subprocess.run([sox, str(raw), "-r", str(rate), "-c", str(ch), str(tmp)],
                           check=True, capture_output=True)
            data, sr = sf.read(tmp, dtype="float32")
            sf.write(dst, data, sr, format="MP3")
            tmp.unlink()
        else:
            subprocess.run([sox, str(raw), "-r", str(rate), "-c", str(ch), str(dst)],
                           check=True, capture_output=True)
        raw.unlink()
        info = sf.info(dst)
        rows.append({"file": dst.name, "voice": voice, "description": desc, "rate": rate,
                     "channels": ch, "format": fmt, "seconds": round(info.duration, 2),
                     "file_rate": info.samplerate, "file_channels": info.channels})
    return rows


def singer_references(corpus: Path, singers: list[str], sr: int, per_singer: int
                      ) -> dict[str, np.ndarray]:
    """Mean Resemblyzer embedding of `per_singer` training clips of each singer."""
    from models.lhq_svc.data import load_corpus
    from models.metrics import speaker_embedding

    c = load_corpus(corpus, sample_rate=sr, splits=("train",))
    refs = {}
    for s in singers:
        clips = [x for x in c.clips if x.singer == s][:per_singer]
        if not clips:
            raise SystemExit(f"unseen_voices: corpus {corpus} has no training clip of {s}")
        e = np.mean([speaker_embedding(x.wav, sr) for x in clips], axis=0)
        refs[s] = e / np.linalg.norm(e)
    return refs


def _convert(model_args: list[str], src: Path, singer: str, pitch: str, out: Path,
             steps: int) -> tuple[int, str]:
    from compress.cli import main

    err = io.StringIO()
    args = ["convert", *model_args, "--input", str(src), "--speaker", singer,
            "--output", str(out), "--pitch", pitch]
    if model_args[0] == "--checkpoint":
        args += ["--steps", str(steps)]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(args)
    return rc, err.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo",
                    help="a `compress run` directory (default runs/demo): its student "
                    "checkpoint and its corpus")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="checkpoint to convert with (default: RUN/05_distill/model.safetensors)")
    ap.add_argument("--model", type=Path, default=None,
                    help="an exported *-student_*.pte instead of the checkpoint")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="training corpus for the singers' references (default RUN/00_data/corpus)")
    ap.add_argument("--steps", type=int, default=1, help="sampler steps for a checkpoint")
    ap.add_argument("--refs", type=int, default=8, help="training clips per singer reference")
    ap.add_argument("--quick", action="store_true", help="4 voices, one file each")
    ap.add_argument("--keep", type=Path, default=None, help="keep inputs and outputs here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from compress.cli_util import filter_native_stderr, quiet_dependencies
    from models.checkpoint import read_header
    from models.metrics import cosine, speaker_embedding

    quiet_dependencies(30)
    filter_native_stderr()  # libmpg123's complaints about libsndfile's 8 kHz mp3 frames
    ckpt = args.checkpoint or args.run / "05_distill" / "model.safetensors"
    corpus = args.corpus or args.run / "00_data" / "corpus"
    if args.model is not None:
        from compress.svc_adapter import load_pte_svc

        svc, _ = load_pte_svc(args.model)
        singers, sr = list(svc.speakers), svc.sample_rate
        model_args = ["--model", str(args.model)]
    else:
        if not ckpt.exists():
            raise SystemExit(f"unseen_voices: no checkpoint {ckpt} (run `make demo` first, or "
                             "give --checkpoint)")
        h = read_header(ckpt)
        singers, sr = list(h.extra["speakers"]), int(h.config.get("sample_rate", 16000))
        model_args = ["--checkpoint", str(ckpt)]
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="unseen_voices_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    files = render_voices(work, args.quick)
    print(f"rendered {len(files)} unseen-voice files ({time.time() - t0:.0f} s)", flush=True)
    refs = singer_references(corpus, singers, sr, args.refs)
    from models.audio import load_audio

    rows = []
    for f in files:
        src = work / f["file"]
        x, _ = load_audio(src, sample_rate=sr)
        e_src = speaker_embedding(x, sr)
        f["source_closest"] = max(singers, key=lambda s: cosine(e_src, refs[s]))
        for singer, mode in itertools.product(singers, ("auto", "0")):
            out = work / f"{src.stem}__{singer}_{'auto' if mode == 'auto' else 'p0'}.wav"
            rc, err = _convert(model_args, src, singer, mode, out, args.steps)
            if rc != 0:
                raise SystemExit(f"unseen_voices: convert failed on {src.name}: {err.strip()}")
            shift = None
            if mode == "auto":
                shift = int(err.split("shift ")[1].split()[0]) if "shift " in err else None
            y, _ = load_audio(out, sample_rate=sr, allow_silent=True)
            e = speaker_embedding(y, sr)
            sims = {s: round(cosine(e, refs[s]), 4) for s in singers}
            closest = max(sims, key=lambda s: sims[s])
            rows.append({**f, "target": singer, "pitch": mode, "shift": shift,
                         "closest": closest, "hit": closest == singer, "similarity": sims})
        done = sum(1 for r in rows if r["file"] == f["file"] and r["hit"] and r["pitch"] == "auto")
        print(f"  {f['file']:<44} auto: {done}/{len(singers)} on target", flush=True)

    def share(sel: list[dict]) -> float:
        return float(np.mean([r["hit"] for r in sel])) if sel else float("nan")

    auto = [r for r in rows if r["pitch"] == "auto"]
    base = [r for r in rows if r["pitch"] == "0"]
    summary = {
        "files": len(files), "singers": singers, "conversions_per_mode": len(auto),
        "share_on_target_auto": round(share(auto), 4),
        "share_on_target_pitch0": round(share(base), 4),
        "chance": round(1 / len(singers), 4),
        "per_singer_auto": {s: round(share([r for r in auto if r["target"] == s]), 4)
                            for s in singers},
        "per_format_auto": {k: round(share([r for r in auto if r["format"] == k]), 4)
                            for k in FORMATS},
        "per_rate_auto": {str(k): round(share([r for r in auto if r["rate"] == k]), 4)
                          for k in RATES},
        "per_channels_auto": {str(k): round(share([r for r in auto if r["channels"] == k]), 4)
                              for k in CHANNELS},
        "model": str(args.model or ckpt), "steps": args.steps, "seconds": round(time.time() - t0),
    }
    print()
    print(f"{'mode':<12}{'on requested singer':>22}{'conversions':>14}")
    print(f"{'--pitch auto':<12}{summary['share_on_target_auto']:>22.1%}{len(auto):>14}")
    print(f"{'--pitch 0':<12}{summary['share_on_target_pitch0']:>22.1%}{len(base):>14}")
    print(f"(chance {summary['chance']:.0%}; per singer, auto: " + ", ".join(
        f"{s} {v:.0%}" for s, v in summary["per_singer_auto"].items()) + ")")
    print("per format, auto: " + ", ".join(f"{k} {v:.0%}"
                                           for k, v in summary["per_format_auto"].items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "files": files, "rows": rows},
                                        indent=1))
        print(f"wrote {args.json}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
