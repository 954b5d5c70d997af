"""Which pretrained judge can decide on naturalness for singing? A ladder of known
degradations applied to held-out sung clips, scored by :func:`models.judges.dnsmos`,
:func:`~models.judges.plcmos` and :func:`~models.judges.distill_mos` (issue 28, item 1).

Usage::

    .venv/bin/python benchmarks/judges.py [--clips DIR_OR_FILES...] [--run RUN_DIR] \
        [--json OUT] [--max-clips N] [--seconds S] [--seed S] [--convert-clips N] [--quick]
    .venv/bin/python benchmarks/judges.py --pool LADDER_JSON... [--json OUT]

**Clips.** Held-out singing, mono, resampled to 16 kHz by :func:`models.audio.load_audio`,
``--seconds`` (default 6) cut from the middle of each (a shorter clip is used whole), at most
``--max-clips`` (default 8) of them:

* ``--clips``: the given audio files, or every wav / flac / ogg / mp3 under the given folders;
  the files of one folder are taken round-robin over its sub-folders (singers, in a
  ``dataset_raw/<singer>/`` layout; sorted within each), so the first N span the singers
  rather than one singer's songs;
* else ``--run RUN_DIR`` (a finished ``compress run`` of the LHQ-SVC recipe): the sung clips of
  the held-out songs of the run's corpus (``00_data/corpus``, else the root recorded in
  ``00_data/done.json``), read with :class:`models.data.datasets.SingingCorpus` as the recipe
  reads them. The corpus marks whole songs ``"test"`` (``meta.json``); the recipe
  (:meth:`compress.recipes.lhq_svc.LHQSVCRecipe.load_data`) trains the teacher and every
  training stage on the other songs only and divides the held-out ones into ``val`` (student
  decisions: evolution, int8 sensitivity; never trained on) and ``test`` (the report's clips).
  Both halves are taken — neither was heard by the teacher — and the ``val`` / ``test`` label
  is printed beside each clip. For ``configs/default.yaml`` that is song002 (val) and song005
  (test) of the four singers: 8 clips. Clips are taken round-robin over the songs, each song
  starting one singer later, so a ``--max-clips`` below 8 still covers both songs and
  different singers;
* else the corpus of ``compress data synth`` with its defaults (4 singers, 2 minutes, seed 0;
  the corpus ``configs/default.yaml`` runs on) is synthesised into a temporary folder
  (~30 s) and its held-out songs are taken as above.

**Rungs** (each applied to every clip; every random draw from ``--seed``):

* ``clean`` — the clip as loaded;
* ``noise_30db`` / ``noise_20db`` / ``noise_10db`` — white Gaussian noise at that SNR against
  the clip's mean power;
* ``lowpass_4k`` / ``lowpass_2k`` — a 10th-order Butterworth low-pass run forwards and
  backwards (``scipy.signal.sosfiltfilt``: zero phase, 20th-order magnitude, -6 dB at the
  cut-off);
* ``mulaw_8bit`` — μ-law (μ = 255) companding quantised to 256 levels and expanded back;
* ``griffin_lim`` — |STFT| kept (n_fft 1024, hop 256, Hann), the phase rebuilt by
  ``librosa.griffinlim`` (32 iterations, its default momentum, random initial phase);
* only with ``--run``, the **conversions** (not degradations of the same clip: other voice,
  other key, so they get their own section, compared with the ``clean`` source clips and with
  each other). Each clip is converted to the singer after its own in the run's singer list (as
  the run's scores and report do; a clip of unknown singer to the singers in turn) with the
  pitch shift ``compress convert --pitch auto`` would choose (whole semitones from the source's
  median DIO F0 to the target's median stored in the teacher checkpoint; 0 when the clip has
  too little voicing), by the same library calls ``compress convert`` makes:

  - ``int8_pte`` — the run's student program ``07_export/*-student_*int8*.pte`` through
    :func:`compress.svc_adapter.load_pte_svc` (chunked and crossfaded as the app does; its
    sampler, step count and temperature are baked in);
  - ``teacher_2step_t1`` / ``teacher_50step_t1`` — ``01_teacher/model.safetensors``
    (:func:`models.checkpoint.load_model`) with ``SVCPipeline.convert_long``: DDIM, 2 or 50
    steps, temperature 1 (the checkpoint's own default is 0), DIO F0, the same ``--seed``.

  ``--convert-clips N`` converts only the first N clips (default: all); the section says how
  many it used. Outputs are clipped to [-1, 1] as ``compress convert`` writes them (the count
  of clipped samples per rung is printed and saved); so are degraded clips, should noise push
  a peak past full scale.

**Judges.** DNSMOS SIG, BAK, OVRL (P.835) and P808; PLCMOS v2 (the second candidate whose
weights ship in a wheel, also in speechmos); Distill-MOS (the third, in ``distillmos``), all
higher-is-better on 1..5. Printed per
rung: n, mean ± standard error (``std(ddof=1) / sqrt(n)``) with the std, and the mean paired
difference from ``clean`` over the same clips with its standard error.

**Verdict** per judge, on the chains clean → noise_30db → noise_20db → noise_10db, clean →
lowpass_4k → lowpass_2k, clean → mulaw_8bit and clean → griffin_lim (restricted to the rungs
run): *monotonic* if the mean falls at every step of every chain; each step where it does not
is listed with the paired difference, its standard error and whether the rise is within 2
standard errors (noise) or not. A judge *qualifies* for decisions only if its mean falls from
clean to the worst (last) rung of every chain **and** every degraded rung scores below clean
on average. The verdict the project acts on is that of DNSMOS P.808 (``P808``), the default
``evolve.naturalness_judge``; OVRL's, the first candidate's, is printed beside it, the others
are shown for context.

``--json OUT``::

    {"clips": [{"name", "path", "singer", "split", "seconds", "start_s"}], "sample_rate",
     "seed", "quick", "rungs": {rung: {judge: {"mean", "stderr", "std", "values"}}},
     "vs_clean": {rung: {judge: {"diff", "stderr"}}}, "chains": [[rung, ...]],
     "verdicts": {judge: {"monotonic", "qualifies", "violations": [...], "reasons": [...]}},
     "decision_judge": "p808",
     "conversions": null | {"clips", "targets", "shifts", "shift_choice", "rungs",
                            "vs_clean", "steps_50_vs_2", "capped", "teacher", "pte",
                            "temperature", "notes"},
     "seconds": {rung: total_seconds}, "clipped": {rung: samples}, "total_seconds"}

``--pool A.json B.json ...`` scores nothing: it concatenates the clips of earlier ``--json``
outputs (ladders run on different recordings, rates or clip lengths) per rung and judge, and
prints the pooled table and verdicts by the same rule (rungs and judges common to all; the
JSON has ``rungs``, ``vs_clean``, ``chains``, ``verdicts``, ``judges``, ``clips`` and
``pooled_from``). More clips shrink the standard errors, so a step that rose within noise in
one ladder is settled by the pool.

``--quick`` (for the test): 2 clips × 5 s, rungs clean / noise_10db / lowpass_2k / mulaw_8bit
only, no conversions. Progress goes to stderr; a missing run folder, no clips or an unreadable
clip stop the benchmark with a one-line error (exit status 2).

Caveats: DNSMOS and Distill-MOS were trained on speech, not singing; our corpus is synthetic
(formant voices, ``models.data.synth``), so a ladder that holds here is necessary, not
sufficient, for real singers. Distill-MOS pads a clip shorter than its 7.68-s segment with
silence and rates some of the corpus's voices near its floor (1.4–1.7 for its lowest voice,
median F0 147 Hz), where a degradation has little room to lower the score. DNSMOS tiles a clip
shorter than its 9.01-s window (a 6-s clip is scored as 12 s, a 3-s one as 12 s), so the scores
of short clips weigh the same audio several times. With 8 clips the standard errors are wide; a
step "within 2 standard errors" is noise, not evidence either way. The conversions move each
clip into the target singer's key (up to ±21 semitones between the corpus's bass and soprano),
and DNSMOS scores the same synthetic voice lower the higher it sings, so "conversion vs clean"
mixes quality with register; the 50-step vs 2-step comparison (same clip, target, shift and
seed) is the clean sensitivity test.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 16000  # DNSMOS's rate: every clip is scored at 16 kHz
JUDGES = ("sig", "bak", "ovrl", "p808", "plcmos", "distillmos")
DECISION_JUDGE = "p808"  # the default evolve.naturalness_judge (compress/config.py)
LADDER = ("clean", "noise_30db", "noise_20db", "noise_10db", "lowpass_4k", "lowpass_2k",
          "mulaw_8bit", "griffin_lim")
QUICK_RUNGS = ("clean", "noise_10db", "lowpass_2k", "mulaw_8bit")
CONVERSIONS = ("int8_pte", "teacher_2step_t1", "teacher_50step_t1")
CHAINS = (("clean", "noise_30db", "noise_20db", "noise_10db"),
          ("clean", "lowpass_4k", "lowpass_2k"),
          ("clean", "mulaw_8bit"),
          ("clean", "griffin_lim"))
NOISE_SNR_DB = {"noise_30db": 30.0, "noise_20db": 20.0, "noise_10db": 10.0}
LOWPASS_HZ = {"lowpass_4k": 4000.0, "lowpass_2k": 2000.0}
LOWPASS_ORDER = 10  # per pass; sosfiltfilt runs it twice
MU = 255  # mu-law: 256 levels
GL_ITERS, GL_N_FFT, GL_HOP = 32, 1024, 256
TEACHER_STEPS = {"teacher_2step_t1": 2, "teacher_50step_t1": 50}
TEMPERATURE = 1.0
QUICK_CLIPS, QUICK_SECONDS = 2, 5.0  # 5 s: DNSMOS doubles it to 10 s, one window


class BenchError(Exception):
    """A problem reported as one line with exit status 2 (missing run, no clips, bad clip)."""


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"judges: {message}", file=sys.stderr, flush=True)


# ---- clips ----------------------------------------------------------------------------------
@dataclass
class ClipInfo:
    """One held-out clip, cut and at 16 kHz."""

    name: str
    path: Path
    singer: str | None = None
    split: str = ""
    wav: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    start_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "singer": self.singer,
                "split": self.split, "seconds": round(self.wav.size / RATE, 4),
                "start_s": round(self.start_s, 4)}


def clips_from_paths(paths: Sequence[str]) -> list[ClipInfo]:
    """Audio files given on the command line (folders: every audio file under them)."""
    from models.data.datasets import AUDIO_EXTENSIONS

    out: list[ClipInfo] = []
    for text in paths:
        p = Path(text).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise BenchError(f"--clips {p}: no audio file ({', '.join(AUDIO_EXTENSIONS)}) "
                                 "under this folder")
            by_dir: dict[Path, list[Path]] = {}
            for f in found:
                by_dir.setdefault(f.parent, []).append(f)
            queues = [by_dir[d] for d in sorted(by_dir)]
            files = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        elif p.is_file():
            files = [p]
        else:
            raise BenchError(f"--clips {p}: no such file or folder")
        out += [ClipInfo(name=f.stem if f == p else str(f.relative_to(p).with_suffix("")),
                         path=f, singer=f.parent.name) for f in files]
    return out


def held_out_clips(corpus_root: Path, labels: dict[str, str] | None = None) -> list[ClipInfo]:
    """The sung clips of the corpus's held-out ("test") songs, round-robin over the songs;
    `labels` maps a song to the run's split name (``val`` / ``test``)."""
    from models.data.datasets import SingingCorpus
    from models.errors import DataError

    try:
        corpus = SingingCorpus(corpus_root, styles=("sung",), split="test")
    except DataError as exc:
        raise BenchError(f"corpus {corpus_root}: no held-out sung clip ({exc})") from None
    by_song: dict[str, list[Any]] = {}
    for c in corpus.clips:
        by_song.setdefault(c.song, []).append(c)
    queues = [sorted(by_song[s], key=lambda c: c.singer) for s in sorted(by_song)]
    # round i takes song k's singer i + k: the first clips differ in song and in singer
    ordered = [q[(i + k) % len(q)] for i in range(max(map(len, queues), default=0))
               for k, q in enumerate(queues) if i < len(q)]
    return [ClipInfo(name=c.id, path=Path(c.path), singer=c.singer,
                     split=(labels or {}).get(c.song, "held-out")) for c in ordered]


def run_corpus(run: Path) -> tuple[Path, dict[str, str]]:
    """The corpus root of a ``compress run`` folder and its held-out songs' split names."""
    done = run / "00_data" / "done.json"
    splits: dict[str, Any] = {}
    if done.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            splits = json.loads(done.read_text()).get("result", {}).get("splits", {}) or {}
    labels = {s: k for k in ("val", "test") for s in splits.get(k, [])}
    root = run / "00_data" / "corpus"
    if not (root / "meta.json").is_file() and splits.get("root"):
        root = Path(splits["root"])
    if not root.is_dir():
        raise BenchError(f"--run {run}: no corpus (looked for 00_data/corpus and the root in "
                         "00_data/done.json); is it a finished compress run?")
    return root, labels


def load_clip(clip: ClipInfo, seconds: float) -> ClipInfo:
    """Read `clip` at 16 kHz (mono) and cut `seconds` from its middle."""
    from models.audio import load_audio
    from models.errors import AudioError

    try:
        wav, _ = load_audio(clip.path, sample_rate=RATE)
    except (AudioError, OSError, RuntimeError, ValueError) as exc:
        raise BenchError(f"clip {clip.path}: unreadable ({exc})") from None
    n = int(round(seconds * RATE))
    start = max((wav.size - n) // 2, 0)
    clip.wav = np.ascontiguousarray(wav[start : start + n], dtype=np.float32)
    clip.start_s = start / RATE
    if clip.wav.size < RATE // 2:
        raise BenchError(f"clip {clip.path}: {clip.wav.size / RATE:.2f} s, shorter than the "
                         "0.5 s DNSMOS needs")
    return clip


# ---- degradations ---------------------------------------------------------------------------
def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """White Gaussian noise at `snr_db` against the mean power of `x`."""
    power = float(np.mean(np.square(x, dtype=np.float64)))
    sigma = math.sqrt(power / 10.0 ** (snr_db / 10.0))
    return x + sigma * rng.standard_normal(x.size)


def lowpass(x: np.ndarray, cutoff_hz: float, sample_rate: int = RATE) -> np.ndarray:
    """Zero-phase Butterworth low-pass (:data:`LOWPASS_ORDER` per pass, run both ways)."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(LOWPASS_ORDER, cutoff_hz, btype="low", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, np.asarray(x, dtype=np.float64))


def mulaw_8bit(x: np.ndarray, mu: int = MU) -> np.ndarray:
    """μ-law compand, quantise to ``mu + 1`` levels, expand."""
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    q = np.round((y + 1.0) / 2.0 * mu)  # 0 .. mu
    y = 2.0 * q / mu - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu


def griffin_lim(x: np.ndarray, seed: int) -> np.ndarray:
    """|STFT| of `x` with its phase rebuilt by Griffin-Lim (:data:`GL_ITERS` iterations)."""
    import librosa

    mag = np.abs(librosa.stft(np.asarray(x, dtype=np.float32), n_fft=GL_N_FFT,
                              hop_length=GL_HOP))
    return librosa.griffinlim(mag, n_iter=GL_ITERS, hop_length=GL_HOP, n_fft=GL_N_FFT,
                              length=x.size, random_state=seed)


def degrade(rung: str, x: np.ndarray, seed: int, clip_index: int) -> np.ndarray:
    """Rung `rung` of clip `x` (the clip's index seeds its random draws)."""
    if rung == "clean":
        return x
    if rung in NOISE_SNR_DB:
        rng = np.random.default_rng([seed, clip_index, int(NOISE_SNR_DB[rung])])
        return add_noise(x, NOISE_SNR_DB[rung], rng)
    if rung in LOWPASS_HZ:
        return lowpass(x, LOWPASS_HZ[rung])
    if rung == "mulaw_8bit":
        return mulaw_8bit(x)
    if rung == "griffin_lim":
        return griffin_lim(x, seed * 1000 + clip_index)
    raise ValueError(f"unknown rung {rung!r}")


def full_scale(y: np.ndarray) -> tuple[np.ndarray, int]:
    """`y` as float32 clipped to [-1, 1] (as a PCM wav would hold it), and how many samples
    were clipped."""
    y = np.asarray(y, dtype=np.float32)
    n = int(np.count_nonzero(np.abs(y) > 1.0))
    return (np.clip(y, -1.0, 1.0) if n else y), n


# ---- conversions ----------------------------------------------------------------------------
@dataclass
class Converters:
    """The run's models, as ``compress convert`` loads them."""

    speakers: list[str]
    medians: dict[str, float] | None
    hop: int
    teacher: Any = None
    teacher_path: Path | None = None
    pte: Any = None
    pte_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def load_converters(run: Path) -> Converters:
    """The teacher checkpoint and the int8 student program of `run` (either may be missing:
    its rungs are then skipped with a note; both missing is an error)."""
    from compress.errors import CompressError
    from compress.svc_adapter import load_pte_svc
    from models.checkpoint import load_model
    from models.errors import ModelsError

    notes: list[str] = []
    teacher = header = pte = meta = pte_path = None
    tpath = run / "01_teacher" / "model.safetensors"
    if tpath.is_file():
        try:
            teacher, header = load_model(tpath)
        except (ModelsError, OSError) as exc:
            raise BenchError(f"teacher {tpath}: cannot load ({exc})") from None
        if not hasattr(teacher, "convert_long"):
            raise BenchError(f"teacher {tpath} holds {header.model!r}, not an LHQ-SVC pipeline")
    else:
        notes.append(f"no teacher checkpoint {tpath}: teacher rungs skipped")
    programs = sorted((run / "07_export").glob("*-student_*.pte"))
    programs = [p for p in programs if "int8" in p.name] or programs
    if programs:
        pte_path = programs[0]
        try:
            pte, meta = load_pte_svc(pte_path, threads=1)
        except CompressError as exc:
            raise BenchError(str(exc)) from None
    else:
        notes.append(f"no 07_export/*-student_*.pte in {run}: int8_pte skipped")
    if teacher is None and pte is None:
        raise BenchError(f"--run {run}: neither 01_teacher/model.safetensors nor a "
                         "07_export/*-student_*.pte; is it a finished LHQ-SVC compress run?")
    if teacher is not None:
        speakers = [str(s) for s in (header.extra.get("speakers") or teacher.speakers)]
        stats = header.extra.get("f0_stats") or {}
        medians = {s: float(stats[s]["median_hz"]) for s in speakers if s in stats} or None
        hop = int(teacher.hop_length)
    else:
        speakers = list(pte.speakers)
        hz = json.loads(meta["speaker_f0_hz"]) if meta.get("speaker_f0_hz") else None
        medians = dict(zip(speakers, hz, strict=True)) if hz else None
        hop = int(meta.get("hop_length", 128))
    if teacher is not None and pte is not None and list(pte.speakers) != speakers:
        raise BenchError(f"{pte_path}: singers {pte.speakers} differ from the teacher's "
                         f"{speakers}")
    return Converters(speakers, medians, hop, teacher, tpath if teacher is not None else None,
                      pte, pte_path, notes)


def conversion_job(conv: Converters, clip: ClipInfo, index: int) -> tuple[str, float, str]:
    """(target singer, pitch shift in semitones, how the shift was chosen) for `clip`."""
    from models.errors import ModelsError
    from models.lhq_svc.pitch import auto_pitch

    spk = conv.speakers
    if clip.singer in spk:
        target = spk[(spk.index(clip.singer) + 1) % len(spk)]
    else:
        target = spk[index % len(spk)]
    if not conv.medians:
        return target, 0.0, "shift 0 (the run has no per-singer F0 statistics)"
    try:
        choice = auto_pitch(clip.wav, RATE, conv.hop, target, conv.medians, clip.name)
    except ModelsError as exc:
        return target, 0.0, f"shift 0 ({exc})"
    return target, float(choice.semitones), choice.describe()


def at_rate(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    from models.audio import resample

    return x if sr_in == sr_out else resample(np.asarray(x, dtype=np.float32), sr_in, sr_out)


def convert(conv: Converters, rung: str, x: np.ndarray, target: str, shift: float,
            seed: int) -> np.ndarray:
    """`x` (16 kHz) converted to `target` by the model of `rung`, back at 16 kHz."""
    import torch

    model = conv.pte if rung == "int8_pte" else conv.teacher
    sr = int(model.sample_rate)
    wav = at_rate(x, RATE, sr)
    with torch.inference_mode():
        if rung == "int8_pte":
            y = model.convert_long(wav, model.speakers.index(target), shift)
        else:
            y = model.convert_long(wav, conv.speakers.index(target), shift,
                                   steps=TEACHER_STEPS[rung], sampler="ddim", seed=seed,
                                   f0_method="dio", temperature=TEMPERATURE)
    return at_rate(np.asarray(y, dtype=np.float32).reshape(-1), sr, RATE)


# ---- statistics -----------------------------------------------------------------------------
def describe(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "stderr", "std", "values"}`` (std with ddof=1; 0 for one value)."""
    a = np.asarray(values, dtype=np.float64)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"mean": float(a.mean()), "stderr": std / math.sqrt(a.size), "std": std,
            "values": [float(v) for v in a]}


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of ``a - b`` item by item, with its standard error."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    return {"diff": float(d.mean()), "stderr": se}


def verdicts(rungs: dict[str, dict[str, dict[str, Any]]], chains: list[tuple[str, ...]],
             judges: Sequence[str] = JUDGES) -> dict[str, dict[str, Any]]:
    """Per judge: monotonic along every chain? qualifies (clean > worst rung of every chain
    and clean > every degraded rung)? with the steps that rise."""
    out: dict[str, dict[str, Any]] = {}
    for j in judges:
        mean = {r: rungs[r][j]["mean"] for r in rungs}
        vals = {r: rungs[r][j]["values"] for r in rungs}
        violations, reasons, below = [], [], set()
        for chain in chains:
            for a, b in itertools.pairwise(chain):
                if not mean[b] < mean[a]:
                    p = paired(vals[b], vals[a])
                    within = (abs(p["diff"]) <= 2.0 * p["stderr"]) if len(vals[a]) > 1 else None
                    violations.append({"chain": list(chain), "from": a, "to": b, **p,
                                       "within_2se": within})
            if not mean[chain[-1]] < mean["clean"]:
                below.add(chain[-1])
                reasons.append(f"{chain[-1]} (the worst of its chain) does not score below "
                               f"clean ({mean[chain[-1]]:.3f} vs {mean['clean']:.3f})")
        for r in rungs:
            if r != "clean" and r not in below and not mean[r] < mean["clean"]:
                reasons.append(f"{r} does not score below clean ({mean[r]:.3f} vs "
                               f"{mean['clean']:.3f})")
        out[j] = {"monotonic": not violations, "qualifies": not reasons,
                  "violations": violations, "reasons": reasons}
    return out


# ---- printing -------------------------------------------------------------------------------
W = 21  # table column width per judge
def _cell(s: dict[str, Any]) -> str:
    return f"{s['mean']:.3f}±{s['stderr']:.3f} ({s['std']:.3f})"


def _dcell(d: dict[str, float] | None) -> str:
    return "" if d is None else f"{d['diff']:+.3f}±{d['stderr']:.3f}"


def print_table(title: str, rungs: dict[str, dict[str, dict[str, Any]]],
                diffs: dict[str, dict[str, dict[str, float]]], labels: dict[str, str],
                judges: Sequence[str] = JUDGES) -> None:
    """Two tables: mean ± stderr (std) per judge, then the paired difference from clean."""
    head = "".join(f"{j.upper():>{W}s}" for j in judges)
    print(title)
    print(f"{'rung':22s}{'n':>3s}{head}   mean±se (std)")
    for r, stats in rungs.items():
        n = len(stats[judges[0]]["values"])
        print(f"{labels.get(r, r):22s}{n:3d}" + "".join(f"{_cell(stats[j]):>{W}s}"
                                                         for j in judges))
    print(f"{'paired diff vs clean':22s}{'':3s}" + "".join(f"{j.upper():>{W}s}" for j in judges)
          + "   mean±se")
    for r in rungs:
        if r in diffs:
            print(f"{labels.get(r, r):22s}{'':3s}" + "".join(f"{_dcell(diffs[r][j]):>{W}s}"
                                                             for j in judges))


def _noise(within: bool | None) -> str:
    if within is None:
        return "one clip: no standard error"
    return "within 2 se: noise" if within else "beyond 2 se"


def print_verdicts(verdict: dict[str, dict[str, Any]], chains: list[tuple[str, ...]],
                   judges: Sequence[str] = JUDGES) -> None:
    print("verdicts (chains: " + "; ".join(" > ".join(c) for c in chains) + ")")
    for j in judges:
        v = verdict[j]
        if v["monotonic"]:
            line = "monotonic: the mean falls at every step of every chain"
        else:
            steps = [f"{x['from']} -> {x['to']} rises {x['diff']:+.3f} ± {x['stderr']:.3f} "
                     f"({_noise(x['within_2se'])})" for x in v["violations"]]
            line = "NOT monotonic: " + "; ".join(steps)
        print(f"  {j.upper():10s} {line}")
    for j, role in ((DECISION_JUDGE, "the search's naturalness judge"),
                     ("ovrl", "DNSMOS overall, the first candidate")):
        if j not in verdict:
            continue
        v = verdict[j]
        if v["qualifies"]:
            print(f"  {j.upper()} ({role}) QUALIFIES for decisions: it falls on average from "
                  "clean to the worst rung of every chain and every degraded rung scores below "
                  "clean" + ("" if v["monotonic"] else " (though not at every intermediate step)"))
        else:
            print(f"  {j.upper()} ({role}) DOES NOT QUALIFY for decisions: "
                  + "; ".join(v["reasons"]))
    others = [j.upper() for j in judges if j not in ("ovrl", DECISION_JUDGE)
              and verdict[j]["qualifies"]]
    print(f"  (by the same rule: {', '.join(others) or 'none'} of the other judges would "
          "qualify)")


# ---- main -----------------------------------------------------------------------------------
def score(wav: np.ndarray) -> dict[str, float]:
    from models.judges import distill_mos, dnsmos, plcmos

    return {**dnsmos(wav, RATE), "plcmos": plcmos(wav, RATE),
            "distillmos": distill_mos(wav, RATE)}


def gather_clips(args: argparse.Namespace, tmp: Path) -> list[ClipInfo]:
    """The clips the arguments ask for, not yet loaded (see the module docstring)."""
    if args.clips:
        return clips_from_paths(args.clips)
    if args.run:
        root, labels = run_corpus(Path(args.run))
        return held_out_clips(root, labels)
    from models.data.corpus import CorpusConfig, synthesize_corpus

    say(f"no --clips / --run: synthesising the compress data synth corpus into {tmp}")
    synthesize_corpus(tmp / "corpus", CorpusConfig(), progress=False)
    return held_out_clips(tmp / "corpus")


def ladder(clips: list[ClipInfo], rungs: Sequence[str], seed: int
           ) -> tuple[dict[str, list[dict[str, float]]], dict[str, float], dict[str, int]]:
    """DNSMOS of every rung of every clip: (scores per rung, seconds per rung, clipped)."""
    scores: dict[str, list[dict[str, float]]] = {r: [] for r in rungs}
    seconds = dict.fromkeys(rungs, 0.0)
    clipped = dict.fromkeys(rungs, 0)
    for i, clip in enumerate(clips):
        line = []
        for rung in rungs:
            t0 = time.perf_counter()
            y, n = full_scale(degrade(rung, clip.wav, seed, i))
            scores[rung].append(score(y))
            seconds[rung] += time.perf_counter() - t0
            clipped[rung] += n
            line.append(f"{rung} {scores[rung][-1]['ovrl']:.2f}")
        say(f"clip {i + 1}/{len(clips)} {clip.name}: OVRL " + ", ".join(line))
    return scores, seconds, clipped


def conversions(conv: Converters, clips: list[ClipInfo], clean: list[dict[str, float]],
                seed: int, cap: int | None
                ) -> tuple[dict[str, Any], dict[str, float], dict[str, int]]:
    """The conversion rungs on the first `cap` clips, beside those clips' clean scores."""
    rungs = [r for r in CONVERSIONS
             if (conv.pte if r == "int8_pte" else conv.teacher) is not None]
    use = clips[:cap] if cap else clips
    scores: dict[str, list[dict[str, float]]] = {"clean": clean[: len(use)]}
    scores.update({r: [] for r in rungs})
    seconds = dict.fromkeys(rungs, 0.0)
    clipped = dict.fromkeys(rungs, 0)
    targets, shifts, how = [], [], []
    for i, clip in enumerate(use):
        target, shift, why = conversion_job(conv, clip, i)
        targets.append(target)
        shifts.append(shift)
        how.append(why)
        line = []
        for rung in rungs:
            t0 = time.perf_counter()
            y, n = full_scale(convert(conv, rung, clip.wav, target, shift, seed))
            scores[rung].append(score(y))
            seconds[rung] += time.perf_counter() - t0
            clipped[rung] += n
            line.append(f"{rung} {scores[rung][-1]['ovrl']:.2f}")
        say(f"convert {i + 1}/{len(use)} {clip.name} -> {target} ({why}): OVRL "
            + ", ".join(line))
    stats = {r: {j: describe([s[j] for s in v]) for j in JUDGES} for r, v in scores.items()}
    vs_clean = {r: {j: paired(stats[r][j]["values"], stats["clean"][j]["values"])
                    for j in JUDGES} for r in rungs}
    steps = None
    if "teacher_2step_t1" in stats and "teacher_50step_t1" in stats:
        steps = {}
        for j in JUDGES:
            p = paired(stats["teacher_50step_t1"][j]["values"],
                       stats["teacher_2step_t1"][j]["values"])
            steps[j] = {**p, "higher": p["diff"] >= 0.0}
    notes = list(conv.notes)
    if len(use) < len(clips):
        notes.append(f"capped at the first {len(use)} of {len(clips)} clips (--convert-clips)")
    result = {"clips": [c.name for c in use], "targets": targets, "shifts": shifts,
              "shift_choice": how, "rungs": stats, "vs_clean": vs_clean,
              "steps_50_vs_2": steps, "capped": len(use) if len(use) < len(clips) else None,
              "teacher": str(conv.teacher_path) if conv.teacher_path else None,
              "pte": str(conv.pte_path) if conv.pte_path else None,
              "temperature": TEMPERATURE, "notes": notes}
    return result, seconds, clipped


def print_conversions(res: dict[str, Any], n_all: int) -> None:
    n = len(res["clips"])
    print()
    title = (f"conversions: {n} of the {n_all} clips, each to the next singer with the "
             f"--pitch auto shift (teacher: DDIM at temperature {res['temperature']:g}, seed "
             "as --seed; int8_pte: the program's baked-in sampler)")
    diffs = {r: d for r, d in res["vs_clean"].items()}
    print_table(title, res["rungs"], diffs, {"clean": "clean (source)"})
    steps = res["steps_50_vs_2"]
    if steps:
        cells = ", ".join(f"{j.upper()} {_dcell(steps[j])}" for j in JUDGES)
        print(f"  teacher 50-step - 2-step (paired, mean±se): {cells}")
        for j in JUDGES:
            s = steps[j]
            within = abs(s["diff"]) <= 2.0 * s["stderr"] if n > 1 else None
            print(f"  {j.upper():10s} 50-step {'>=' if s['higher'] else '<'} 2-step on average"
                  f" ({_noise(within)})")
    for note in res["notes"]:
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="+", metavar="DIR_OR_FILE",
                    help="held-out singing: audio files or folders (default: the run's held-out "
                    "songs, else a synthesised corpus's)")
    ap.add_argument("--run", help="a finished LHQ-SVC compress run folder (its held-out songs; "
                    "enables the conversion rungs)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--max-clips", type=int, default=None, help="at most N clips (default 8)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="seconds cut from the middle of each clip (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--convert-clips", type=int, default=None, metavar="N",
                    help="convert only the first N clips (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help="2 clips x 5 s, rungs clean/noise_10db/lowpass_2k/mulaw_8bit only")
    ap.add_argument("--pool", nargs="+", metavar="LADDER_JSON",
                    help="score nothing: pool the clips of earlier --json outputs (e.g. ladders "
                    "run on different recordings) into one ladder and verdict")
    args = ap.parse_args(argv)
    if argv is None:
        # run as a script: drop the ExecuTorch runtime's native cpuinfo / threadpool lines
        from compress.cli_util import filter_native_stderr

        filter_native_stderr()
    try:
        return _pool(args) if args.pool else _run(args)
    except BenchError as exc:
        print(f"judges: error: {exc}", file=sys.stderr)
        return 2


def summarise(values: dict[str, dict[str, list[float]]], judges: Sequence[str] = JUDGES
              ) -> dict[str, Any]:
    """Statistics of ``{rung: {judge: [score per clip]}}`` (clip i the same in every rung):
    ``rungs`` (:func:`describe`), ``vs_clean`` (:func:`paired`), the ``chains`` restricted to
    the rungs present and the ``verdicts``."""
    stats = {r: {j: describe(values[r][j]) for j in judges} for r in values}
    vs_clean = {r: {j: paired(stats[r][j]["values"], stats["clean"][j]["values"])
                    for j in judges} for r in values if r != "clean"}
    chains = [tuple(r for r in c if r in values) for c in CHAINS]
    chains = [c for c in chains if len(c) > 1]
    return {"rungs": stats, "vs_clean": vs_clean, "chains": chains,
            "verdicts": verdicts(stats, chains, judges)}


def pool_ladders(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One ladder from several ``--json`` outputs: per rung and judge, the clips of every input
    concatenated (clip i of every rung is the same clip, so the paired differences stay
    paired); only the rungs and judges present in every input; statistics and verdicts as for
    a single run."""
    if not results:
        raise BenchError("--pool: no ladder given")
    rungs = [r for r in LADDER if all(r in res.get("rungs", {}) for res in results)]
    if "clean" not in rungs or len(rungs) < 2:
        raise BenchError("--pool: the ladders share no degraded rung beside clean")
    judges = [j for j in JUDGES if all(j in res["rungs"][r] for res in results for r in rungs)]
    if not judges:
        raise BenchError("--pool: the ladders share no judge")
    out = summarise({r: {j: [v for res in results for v in res["rungs"][r][j]["values"]]
                         for j in judges} for r in rungs}, judges)
    return {**out, "chains": [list(c) for c in out["chains"]], "judges": judges,
            "clips": [c for res in results for c in res.get("clips", [])]}


def _pool(args: argparse.Namespace) -> int:
    results = []
    for name in args.pool:
        try:
            res = json.loads(Path(name).read_text())
            if not isinstance(res, dict) or not isinstance(res.get("rungs"), dict):
                raise ValueError("not a ladder (no 'rungs')")
            if len({len(v["values"]) for per in res["rungs"].values() for v in per.values()}) != 1:
                raise ValueError("not one value per clip in every rung")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BenchError(f"--pool {name}: unreadable ladder ({exc})") from None
        results.append(res)
    out = pool_ladders(results)
    n = len(out["rungs"]["clean"][out["judges"][0]]["values"])
    print_table(f"Judges' degradation ladder, pooled: {n} clip(s) from {len(results)} ladder(s) "
                f"({', '.join(args.pool)})", out["rungs"], out["vs_clean"], {}, out["judges"])
    print_verdicts(out["verdicts"], [tuple(c) for c in out["chains"]], out["judges"])
    if args.json:
        dest = Path(args.json)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps({**out, "pooled_from": list(args.pool),
                                    "decision_judge": DECISION_JUDGE}, indent=1))
        say(f"wrote {dest}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import torch

    from compress.cli_util import quiet_dependencies

    quiet_dependencies(logging.WARNING)
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn / scipy
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    max_clips = args.max_clips if args.max_clips is not None else (
        QUICK_CLIPS if args.quick else 8)
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else 6.0)
    if max_clips < 1 or not seconds > 0:
        raise BenchError(f"--max-clips {max_clips} / --seconds {seconds}: expected >= 1 / > 0")
    if args.run and not Path(args.run).is_dir():
        raise BenchError(f"--run {args.run}: no such run folder")
    rungs = QUICK_RUNGS if args.quick else LADDER
    t_start = time.perf_counter()
    with limits, tempfile.TemporaryDirectory(prefix="judges_") as tmp:
        found = gather_clips(args, Path(tmp))
        if not found:
            raise BenchError("no clips to score")
        clips = [load_clip(c, seconds) for c in found[:max_clips]]
    say(f"{len(clips)} clip(s) of {len(found)} found, {seconds:g} s each from the middle: "
        + ", ".join(f"{c.name}" + (f" ({c.split})" if c.split else "") for c in clips))
    conv = None
    if args.run and not args.quick:
        conv = load_converters(Path(args.run))
        for note in conv.notes:
            say(note)
    with limits:
        raw, took, clipped = ladder(clips, rungs, args.seed)
        summary = summarise({r: {j: [s[j] for s in v] for j in JUDGES} for r, v in raw.items()})
        stats, vs_clean = summary["rungs"], summary["vs_clean"]
        chains, verdict = summary["chains"], summary["verdicts"]
        conv_res = None
        if conv is not None:
            conv_res, ctook, cclipped = conversions(conv, clips, raw["clean"], args.seed,
                                                    args.convert_clips)
            took.update(ctook)
            clipped.update(cclipped)
    where = (f"--run {args.run}" if args.run and not args.clips else
             "--clips" if args.clips else "synthesised corpus")
    print_table(f"Judges' degradation ladder: {len(clips)} held-out singing clip(s) "
                f"({where}), {seconds:g} s each at 16 kHz, seed {args.seed}",
                stats, vs_clean, {})
    print_verdicts(verdict, chains)
    if conv_res is not None:
        print_conversions(conv_res, len(clips))
    if any(clipped.values()):
        print("clipped to full scale: " + ", ".join(f"{r} {n} samples"
                                                    for r, n in clipped.items() if n))
    total = time.perf_counter() - t_start
    print("seconds per rung (make + judge): "
          + ", ".join(f"{r} {s:.1f}" for r, s in took.items()) + f"; total {total:.0f} s")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(
            {"clips": [c.to_json() for c in clips], "sample_rate": RATE, "seed": args.seed,
             "quick": bool(args.quick), "rungs": stats, "vs_clean": vs_clean,
             "chains": [list(c) for c in chains], "verdicts": verdict,
             "decision_judge": DECISION_JUDGE,
             "conversions": conv_res, "seconds": took, "clipped": clipped,
             "total_seconds": total}, indent=1))
        say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
