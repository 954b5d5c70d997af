"""CREPE beside DIO against the synthetic corpus's true F0: raw chroma accuracy, RMSE in cents,
voicing and cost per audio second (issue 28, item 2).

Usage::

    .venv/bin/python benchmarks/pitch_judges.py [--corpus DIR] [--json OUT] [--max-clips N] \
        [--seconds S] [--estimators dio,crepe-tiny,crepe-full] [--styles sung,spoken] \
        [--full-hop-ms MS] [--quick]

**Clips.** The held-out ("test" in ``meta.json``) songs of a corpus written by ``compress data
synth`` (:func:`models.data.corpus.synthesize_corpus`): ``--corpus DIR``, else the command's
default corpus (4 singers, 2 minutes, seed 0, 16 kHz) synthesised into a temporary folder
(~20 s). Every clip of that layout carries its true F0: ``labels/<singer>/<song>_<style>.npz``
holds ``f0`` (float32 Hz, 0 = unvoiced) and ``phonemes``, one frame every ``label_hop``
samples (``meta.json``; 128 at 16 kHz = 8 ms), ``1 + T // hop`` frames, frame i being the
synthesiser's per-sample F0 *at sample* ``i * hop`` (:func:`models.data.synth.frame_labels`).
That F0 is the glottal source's, jitter included, and is 0 where the smoothed voicing gate of
the phoneme (vowels, nasals, liquids) is below one half: silence, fricatives and plosives are
unvoiced. Both styles have it, so both are measured, each in its own rows: ``sung`` (the
``dataset_raw/`` clips; the acceptance is judged on these) and ``spoken`` (the same lyrics read,
``nus48e/<singer>/read/``; context). Per style, at most ``--max-clips`` (default 8) clips are
taken round-robin over the songs, each song starting one singer later (the default corpus has
2 held-out songs × 4 singers: 8 sung and 8 spoken clips). ``--seconds S`` cuts S seconds from
the middle of each clip (default: the whole clip), starting on a label frame.

**Estimators.** All get the clip at 16 kHz (resampled with soxr if the corpus is not 16 kHz):

* ``dio`` — the project's F0 (:func:`models.data.features.dio_f0`: pyworld DIO + StoneMask,
  50..1100 Hz, hop 128 = 8 ms);
* ``crepe-tiny`` / ``crepe-full`` — :func:`models.judges.crepe_f0`, Viterbi decoding, the
  default periodicity threshold (0.21), 50..1100 Hz (the same range as DIO), hop 160 = 10 ms;
  ``--full-hop-ms`` sets the hop of ``crepe-full`` only (default 10; full costs ~58 ms per
  frame, ~6 s per audio second at 10 ms).

**Alignment.** The three grids share one convention — frame i describes the instant
``i * hop / rate`` after the clip's first sample: the labels sample the F0 there, DIO's
``temporal_positions`` are its analysis-window centres ``i * frame_period``, and CREPE's
frames are centred on sample ``i * hop`` of the signal zero-padded by half a window. Each
estimate is put on the label times (``align``): between the two estimate frames that bracket
a label time, the F0 is interpolated linearly in log-frequency (cents) when both are voiced,
else the nearest of the two is taken, voiced or not (0 stays 0: no voicing is invented or
bridged); label times past the last estimate frame take the last one. DIO at hop 128 on a
16-kHz corpus with ``label_hop`` 128 lands exactly on the label frames (no interpolation).
Checked on the default corpus: shifting each estimate by -8..+8 ms before aligning, the RMSE
is lowest within ±1 ms of no shift (DIO and CREPE tiny on two sung clips, CREPE full on 5 s of
one), so no offset hides between the grids. CREPE resamples with soxr itself only when the
input is not 16 kHz, which it always is here.

**Metrics** per clip, on the label frames (:func:`models.metrics.f0_metrics`, mir_eval 0.8):

* RCA — raw chroma accuracy: the share of *truly voiced* frames whose estimate lies within 50
  cents of the true F0 modulo octaves. A frame the estimator calls unvoiced counts as a miss
  (mir_eval takes 0 Hz as 0 cents), so the RCA also carries the estimator's voicing recall;
* RMSE — in cents, over the frames voiced in both (octave errors included, unfolded);
* voicing recall (share of truly voiced frames estimated voiced) and false alarm (share of
  truly unvoiced frames estimated voiced);
* seconds per audio second — wall time of the estimator call alone (resampling to 16 kHz,
  loading, the metrics excluded), one torch / BLAS thread, after one untimed warm-up call per
  estimator (model loading, caches), summed over the clips and divided by their duration.

Printed: per style and estimator, clips, RCA mean ± standard error (``std(ddof=1)/sqrt(n)``
over clips), RMSE mean ± standard error, mean voicing recall and false alarm, seconds per
audio second; then the acceptance of issue 28 on the sung clips — "CREPE full RCA ≥ 0.95" and
"within 0.02 of DIO" (``|mean paired difference| ≤ 0.02``; a CREPE ahead of DIO by more than
0.02 fails the literal condition and is said to be ahead) — and the same lines for the spoken
clips and for crepe-tiny as context. ``--json OUT``::

    {"corpus", "synthesised", "sample_rate", "label_hop", "seconds", "quick",
     "clips": [{"id", "style", "singer", "song", "path", "start_s", "seconds", "frames",
                "voiced_frames"}],
     "estimators": {name: {"hop_s", "note",
                           "clips": [{"id", "style", "rca", "rmse_cents", "voiced_both",
                                      "recall", "false_alarm", "seconds", "audio_seconds"}],
                           "styles": {style: {"clips", "rca": {"mean", "stderr", "values"},
                                              "rmse_cents": {...}, "recall", "false_alarm",
                                              "seconds_per_audio_second"}}}},
     "acceptance": {style: {model: {"rca", "rca_holds", "diff_vs_dio", "stderr",
                                    "within_holds"}}},
     "total_seconds"}

(``NaN`` values are written as ``null``.) ``--quick`` (for the test): 2 clips × 3 s per style,
estimators ``dio`` and ``crepe-tiny``. Progress goes to stderr; a missing corpus, a corpus
without labels or without held-out clips, or an unknown estimator stop the benchmark with a
one-line error (exit status 2).

Caveats: the corpus is synthetic — one harmonic-plus-noise formant voice per singer, steady
(jitter 0.05–0.2 %), no reverberation or accompaniment — so it is the easy case for every
estimator; rankings on real singing may differ. The true voicing boundary is the synthesiser's
gate, not an acoustic one: a few frames at every vowel onset / offset are ambiguous, which
weighs on voicing recall / false alarm and, through recall, on RCA. With 8 clips per style the
standard errors are wide; the paired difference is the fair comparison. The timings are wall
clock on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATE = 16000  # every estimator sees 16-kHz audio
DIO_HOP = 128  # the project's hop (8 ms)
CREPE_HOP_MS = 10.0
ESTIMATORS = ("dio", "crepe-tiny", "crepe-full")
STYLES = ("sung", "spoken")
QUICK_ESTIMATORS = ("dio", "crepe-tiny")
QUICK_CLIPS, QUICK_SECONDS = 2, 3.0
ACCEPT_RCA, ACCEPT_WITHIN = 0.95, 0.02
WARMUP_SECONDS = 1.0


class BenchError(Exception):
    """A problem reported as one line with exit status 2 (missing corpus, no clips...)."""


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"pitch_judges: {message}", file=sys.stderr, flush=True)


# ---- clips ----------------------------------------------------------------------------------
@dataclass
class Clip:
    """One held-out clip cut to its measured span, with its true F0 on the label frames."""

    id: str
    style: str
    singer: str
    song: str
    path: Path
    labels: Path
    wav16: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    ref_f0: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    start_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.wav16.size / RATE

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "style": self.style, "singer": self.singer, "song": self.song,
                "path": str(self.path), "start_s": round(self.start_s, 4),
                "seconds": round(self.seconds, 4), "frames": int(self.ref_f0.size),
                "voiced_frames": int(np.count_nonzero(self.ref_f0 > 0))}


def read_meta(root: Path) -> dict[str, Any]:
    """``meta.json`` of a ``compress data synth`` corpus (one-line errors otherwise)."""
    if not root.is_dir():
        raise BenchError(f"--corpus {root}: no such corpus folder")
    path = root / "meta.json"
    if not path.is_file():
        raise BenchError(f"--corpus {root}: no meta.json; expected a corpus written by "
                         "`compress data synth`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: unreadable ({exc})") from None
    missing = [k for k in ("sample_rate", "label_hop", "clips") if k not in meta]
    if missing:
        raise BenchError(f"{path}: missing {', '.join(missing)}; not a `compress data synth` "
                         "corpus")
    return meta


def held_out_clips(root: Path, meta: dict[str, Any], styles: Sequence[str],
                   max_clips: int) -> list[Clip]:
    """Per style, up to `max_clips` test-split clips, round-robin over the songs (round i
    takes song k's singer i + k), whose audio and labels exist."""
    out: list[Clip] = []
    for style in styles:
        rows = [c for c in meta["clips"] if c.get("split") == "test" and c.get("style") == style]
        if not rows:
            continue
        lacking = [c for c in rows if not c.get("labels") or not (root / c["labels"]).is_file()]
        if lacking:
            raise BenchError(f"--corpus {root}: {len(lacking)} of the {len(rows)} held-out "
                             f"{style} clips have no true-F0 labels (e.g. "
                             f"{lacking[0].get('labels') or lacking[0]['id']}); the labels/ "
                             "folder of `compress data synth` is needed (without --corpus the "
                             "default corpus is synthesised with its labels)")
        absent = [c for c in rows if not (root / c["path"]).is_file()]
        if absent:
            raise BenchError(f"--corpus {root}: {len(absent)} of the {len(rows)} held-out "
                             f"{style} clips have no audio (e.g. {absent[0]['path']})")
        by_song: dict[str, list[dict[str, Any]]] = {}
        for c in rows:
            by_song.setdefault(c["song"], []).append(c)
        queues = [sorted(by_song[s], key=lambda c: c["singer"]) for s in sorted(by_song)]
        ordered = [q[(i + k) % len(q)] for i in range(max(map(len, queues)))
                   for k, q in enumerate(queues) if i < len(q)]
        out += [Clip(c["id"], style, c["singer"], c["song"], root / c["path"],
                     root / c["labels"]) for c in ordered[:max_clips]]
    return out


def load_clip(clip: Clip, sample_rate: int, hop: int, seconds: float | None) -> Clip:
    """Read the clip at the corpus rate, cut `seconds` from its middle starting on a label
    frame (whole clip when None or longer), keep its label frames, resample to 16 kHz."""
    from models.audio import load_audio, resample
    from models.errors import AudioError

    try:
        wav, _ = load_audio(clip.path, sample_rate=sample_rate)
        with np.load(clip.labels) as z:
            f0 = np.asarray(z["f0"], dtype=np.float64)
    except (AudioError, OSError, RuntimeError, ValueError, KeyError) as exc:
        raise BenchError(f"clip {clip.id}: unreadable audio or labels ({exc})") from None
    if f0.size != 1 + wav.size // hop:
        raise BenchError(f"clip {clip.id}: {f0.size} label frames for {wav.size} samples; "
                         f"expected 1 + T // {hop} = {1 + wav.size // hop}")
    n = wav.size if seconds is None else min(int(round(seconds * sample_rate)), wav.size)
    first = ((wav.size - n) // 2) // hop  # first label frame of the cut
    start = first * hop
    cut = wav[start : start + n]
    clip.ref_f0 = f0[first : first + 1 + cut.size // hop]
    clip.wav16 = np.ascontiguousarray(resample(cut, sample_rate, RATE), dtype=np.float32)
    clip.start_s = start / sample_rate
    return clip


def ensure_corpus(corpus: str | None, tmp: Path) -> tuple[Path, bool]:
    """(corpus root, synthesised?): `corpus` when given, else the `compress data synth`
    default corpus written into `tmp`."""
    if corpus is not None:
        return Path(corpus).expanduser().resolve(), False
    from models.data.corpus import CorpusConfig, synthesize_corpus

    root = tmp / "corpus"
    say(f"no --corpus: synthesising the `compress data synth` default corpus into {root}")
    t0 = time.perf_counter()
    summary = synthesize_corpus(root, CorpusConfig(), progress=False)
    say(f"corpus: {summary.line()} ({time.perf_counter() - t0:.0f} s)")
    return root, True


# ---- estimators -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimator:
    """An F0 estimator on 16-kHz audio: ``fn(wav) -> (times_s, f0_hz)`` (0 = unvoiced)."""

    name: str
    hop_s: float
    fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    note: str = ""


def make_estimator(name: str, full_hop_ms: float) -> Estimator:
    """The estimator called `name` (see the module docstring)."""
    if name == "dio":
        from models.data.features import dio_f0

        def dio(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            f0, _ = dio_f0(x, RATE, hop_length=DIO_HOP)
            return np.arange(f0.size) * (DIO_HOP / RATE), f0

        return Estimator(name, DIO_HOP / RATE, dio, "pyworld DIO + StoneMask, hop 128")
    if name in ("crepe-tiny", "crepe-full"):
        from models.judges import crepe_f0

        model = name.split("-", 1)[1]
        hop = int(round((full_hop_ms if model == "full" else CREPE_HOP_MS) * RATE / 1000.0))
        if hop < 1:
            raise BenchError(f"--full-hop-ms {full_hop_ms}: below one sample")

        def crepe(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            times, f0, _ = crepe_f0(x, RATE, hop_length=hop, model=model, decoder="viterbi")
            return times, f0

        note = f"Viterbi, periodicity >= 0.21, hop {hop} ({1000.0 * hop / RATE:g} ms)"
        if model == "full" and hop != round(CREPE_HOP_MS * RATE / 1000.0):
            note += " (not the 10-ms default: --full-hop-ms)"
        return Estimator(name, hop / RATE, crepe, note)
    raise BenchError(f"--estimators: unknown estimator {name!r}; valid: {', '.join(ESTIMATORS)}")


def align(est_times: np.ndarray, est_f0: np.ndarray, ref_times: np.ndarray) -> np.ndarray:
    """The estimate on the reference times (module docstring, **Alignment**): log-frequency
    interpolation between two voiced neighbours, else the nearer neighbour as it is."""
    t = np.asarray(est_times, dtype=np.float64)
    f = np.asarray(est_f0, dtype=np.float64)
    if t.size == 1:
        return np.full(ref_times.shape, f[0])
    i = np.clip(np.searchsorted(t, ref_times, side="right") - 1, 0, t.size - 2)
    j = i + 1
    w = np.clip((ref_times - t[i]) / (t[j] - t[i]), 0.0, 1.0)
    both = (f[i] > 0) & (f[j] > 0)
    nearest = np.where(w <= 0.5, f[i], f[j])
    with np.errstate(divide="ignore", invalid="ignore"):
        interp = np.exp2((1.0 - w) * np.log2(np.where(both, f[i], 1.0))
                         + w * np.log2(np.where(both, f[j], 1.0)))
    return np.where(both, interp, nearest)


def clip_scores(ref: np.ndarray, est: np.ndarray, frame_s: float) -> dict[str, Any]:
    """RCA, RMSE (cents, voiced in both), voicing recall and false alarm of one clip."""
    from models.metrics import f0_metrics

    m = f0_metrics(ref, est, frame_s)
    rv, ev = ref > 0, est > 0
    recall = float(np.mean(ev[rv])) if rv.any() else math.nan
    false_alarm = float(np.mean(ev[~rv])) if (~rv).any() else math.nan
    return {"rca": m["raw_chroma_accuracy"], "rmse_cents": m["f0_rmse_cents"],
            "voiced_both": m["voiced_frames"], "recall": recall, "false_alarm": false_alarm}


# ---- statistics -----------------------------------------------------------------------------
def describe(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "stderr", "values"}`` over the finite values (stderr NaN below two)."""
    a = np.asarray(values, dtype=np.float64)
    ok = a[np.isfinite(a)]
    mean = float(ok.mean()) if ok.size else math.nan
    se = float(ok.std(ddof=1) / math.sqrt(ok.size)) if ok.size > 1 else math.nan
    return {"mean": mean, "stderr": se, "values": [float(v) for v in a]}


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of ``a - b`` clip by clip and its standard error (NaN below two clips)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
    return float(d.mean()), se


def no_nan(obj: Any) -> Any:
    """`obj` with every NaN / Inf float replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [no_nan(v) for v in obj]
    return obj


# ---- run ------------------------------------------------------------------------------------
def measure(est: Estimator, clips: list[Clip], hop_s: float) -> list[dict[str, Any]]:
    """Scores and timing of `est` on every clip (after one untimed warm-up call)."""
    est.fn(clips[0].wav16[: int(WARMUP_SECONDS * RATE)])
    rows = []
    for k, clip in enumerate(clips, 1):
        t0 = time.perf_counter()
        times, f0 = est.fn(clip.wav16)
        took = time.perf_counter() - t0
        ref_times = np.arange(clip.ref_f0.size) * hop_s
        s = clip_scores(clip.ref_f0, align(times, f0, ref_times), hop_s)
        rows.append({"id": clip.id, "style": clip.style, **s, "seconds": took,
                     "audio_seconds": clip.seconds})
        say(f"{est.name} {k}/{len(clips)} {clip.id}: RCA {s['rca']:.3f}, RMSE "
            f"{s['rmse_cents']:.1f} c, {took / clip.seconds:.3f} s per audio s")
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-style statistics of one estimator's clip rows."""
    out: dict[str, Any] = {}
    for style in dict.fromkeys(r["style"] for r in rows):
        rs = [r for r in rows if r["style"] == style]
        out[style] = {
            "clips": len(rs),
            "rca": describe([r["rca"] for r in rs]),
            "rmse_cents": describe([r["rmse_cents"] for r in rs]),
            "recall": describe([r["recall"] for r in rs])["mean"],
            "false_alarm": describe([r["false_alarm"] for r in rs])["mean"],
            "seconds_per_audio_second": sum(r["seconds"] for r in rs)
            / sum(r["audio_seconds"] for r in rs),
        }
    return out


def acceptance(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per style and CREPE model: RCA ≥ 0.95? within 0.02 of DIO (paired over clips)?"""
    out: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        if not name.startswith("crepe-"):
            continue
        for style, st in res["styles"].items():
            rca = st["rca"]["mean"]
            entry: dict[str, Any] = {"rca": rca, "rca_holds": bool(rca >= ACCEPT_RCA)}
            if "dio" in results and style in results["dio"]["styles"]:
                diff, se = paired(st["rca"]["values"],
                                  results["dio"]["styles"][style]["rca"]["values"])
                entry.update(diff_vs_dio=diff, stderr=se,
                             within_holds=bool(abs(diff) <= ACCEPT_WITHIN))
            out.setdefault(style, {})[name.split("-", 1)[1]] = entry
    return out


def _pm(s: dict[str, Any], fmt: str) -> str:
    se = "n/a" if not math.isfinite(s["stderr"]) else format(s["stderr"], fmt)
    return f"{format(s['mean'], fmt)} ± {se}"


def print_table(results: dict[str, dict[str, Any]], styles: Sequence[str]) -> None:
    print(f"{'style':7s} {'estimator':11s} {'clips':>5s} {'RCA mean ± se':>17s} "
          f"{'RMSE cents ± se':>17s} {'v.recall':>8s} {'f.alarm':>8s} {'s/audio s':>10s}")
    for style in styles:
        for name, res in results.items():
            st = res["styles"].get(style)
            if st is None:
                continue
            print(f"{style:7s} {name:11s} {st['clips']:5d} {_pm(st['rca'], '.4f'):>17s} "
                  f"{_pm(st['rmse_cents'], '.1f'):>17s} {st['recall']:8.3f} "
                  f"{st['false_alarm']:8.3f} {st['seconds_per_audio_second']:10.4f}")


def print_acceptance(acc: dict[str, dict[str, Any]]) -> None:
    order = [s for s in STYLES if s in acc]
    if "sung" not in acc:
        print("acceptance not judged: it is on the sung clips, and none was measured with "
              "CREPE (--styles / --estimators)")
    for style in order:
        for model in ("full", "tiny"):
            e = acc[style].get(model)
            if e is None:
                continue
            tag = "" if (style, model) == ("sung", "full") else " [context]"
            print(f"{style}: CREPE {model} RCA ≥ {ACCEPT_RCA:g}: "
                  f"{'HOLDS' if e['rca_holds'] else 'FAILS'} ({e['rca']:.4f}){tag}")
            if "diff_vs_dio" in e:
                se = "n/a" if not math.isfinite(e["stderr"]) else f"{e['stderr']:.4f}"
                verdict = "HOLDS" if e["within_holds"] else "FAILS"
                ahead = (" — CREPE is ahead of DIO"
                         if not e["within_holds"] and e["diff_vs_dio"] > 0 else "")
                print(f"{style}: CREPE {model} within {ACCEPT_WITHIN:g} of DIO: {verdict} "
                      f"({e['diff_vs_dio']:+.4f} ± {se} paired){ahead}{tag}")
    if "sung" in acc and "full" not in acc["sung"]:
        print("CREPE full RCA ≥ 0.95: not measured (crepe-full not among --estimators)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="a `compress data synth` corpus folder (default: "
                    "synthesise the default corpus into a temporary folder)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--max-clips", type=int, default=None,
                    help="at most N held-out clips per style (default 8)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="seconds cut from the middle of each clip (default: the whole clip)")
    ap.add_argument("--estimators", default=None,
                    help=f"comma-separated, of {','.join(ESTIMATORS)} (default: all)")
    ap.add_argument("--styles", default=",".join(STYLES),
                    help="clip styles, of sung,spoken (default: both)")
    ap.add_argument("--full-hop-ms", type=float, default=CREPE_HOP_MS,
                    help="hop of crepe-full in ms (default 10)")
    ap.add_argument("--quick", action="store_true",
                    help="2 clips x 3 s per style, estimators dio and crepe-tiny")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except BenchError as exc:
        print(f"pitch_judges: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    import torch

    from compress.cli_util import quiet_dependencies

    quiet_dependencies(logging.WARNING)
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scipy / scikit-learn
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    max_clips = args.max_clips if args.max_clips is not None else (
        QUICK_CLIPS if args.quick else 8)
    seconds = args.seconds if args.seconds is not None else (
        QUICK_SECONDS if args.quick else None)
    if max_clips < 1 or (seconds is not None and not seconds > 0):
        raise BenchError(f"--max-clips {max_clips} / --seconds {seconds}: expected >= 1 / > 0")
    names = [s.strip() for s in (args.estimators or ",".join(
        QUICK_ESTIMATORS if args.quick else ESTIMATORS)).split(",") if s.strip()]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not names or not styles or any(s not in STYLES for s in styles):
        raise BenchError(f"--estimators {args.estimators!r} / --styles {args.styles!r}: "
                         f"expected some of {','.join(ESTIMATORS)} / {','.join(STYLES)}")
    ests = [make_estimator(n, args.full_hop_ms) for n in dict.fromkeys(names)]
    t_start = time.perf_counter()
    with limits, tempfile.TemporaryDirectory(prefix="pitch_judges_") as tmp:
        root, synthesised = ensure_corpus(args.corpus, Path(tmp))
        meta = read_meta(root)
        sr, hop = int(meta["sample_rate"]), int(meta["label_hop"])
        clips = held_out_clips(root, meta, styles, max_clips)
        if not clips:
            raise BenchError(f"corpus {root}: no held-out ('test' split) clip of style "
                             f"{'/'.join(styles)} in meta.json")
        clips = [load_clip(c, sr, hop, seconds) for c in clips]
    counts = ", ".join(f"{sum(c.style == s for c in clips)} {s}" for s in styles)
    say(f"{len(clips)} clip(s) ({counts}), {sum(c.seconds for c in clips):.1f} s of audio; "
        f"labels every {hop} samples at {sr} Hz")
    results: dict[str, dict[str, Any]] = {}
    with limits:
        for est in ests:
            rows = measure(est, clips, hop / sr)
            results[est.name] = {"hop_s": est.hop_s, "note": est.note, "clips": rows,
                                 "styles": summarise(rows)}
    acc = acceptance(results)
    total = time.perf_counter() - t_start
    where = "synthesised default corpus" if synthesised else str(root)
    cut = "whole clips" if seconds is None else f"{seconds:g} s from the middle of each clip"
    print(f"F0 vs the true F0 of held-out clips ({where}; {cut}; label frames every "
          f"{1000.0 * hop / sr:g} ms)")
    for est in ests:
        print(f"  {est.name}: {est.note}")
    print_table(results, styles)
    print_acceptance(acc)
    print(f"total {total:.0f} s")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"corpus": None if synthesised else str(root), "synthesised": synthesised,
               "sample_rate": sr, "label_hop": hop, "seconds": seconds,
               "quick": bool(args.quick), "clips": [c.to_json() for c in clips],
               "estimators": results, "acceptance": acc, "total_seconds": total}
        out.write_text(json.dumps(no_nan(doc), indent=1) + "\n")
        say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
