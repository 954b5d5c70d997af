"""Named quality scores for the search: ``score(model, eval_set) -> float``, higher is better.

An :class:`EvalSet` is a list of conversion jobs on held-out songs (source clip of singer A,
target singer B, pitch shift, B's ground-truth rendering of the same song) plus reference clips
per singer, the sampler settings, and a cache of converted audio keyed by a fingerprint of the
model's weights and architecture, so several scores of one model convert each clip once.

Registered scores (``score_names()``):

* ``speaker_similarity`` — mean Resemblyzer cosine similarity of the output to the target
  singer's reference clips (the "CLIP score" of LHQ-SVC §III.A for audio);
* ``speaker_margin`` — mean of sim(output, B) - sim(output, A);
* ``stoi`` / ``pesq`` — against the target's ground-truth rendering;
* ``neg_lsd`` / ``neg_mcd`` — negated log-spectral / mel-cepstral distance (dB);
* ``chroma_accuracy`` — F0 raw chroma accuracy of the output vs the source melody + shift;
* ``neg_f0_rmse_cents`` — negated F0 RMSE (cents) on frames voiced in both;
* ``sim_stoi`` — the mean of ``speaker_similarity`` and ``stoi``: timbre and intelligibility
  together (the search's score before the judges below; with speaker similarity alone the
  search removed the blocks that carry content — see README);
* ``dnsmos_sig`` / ``dnsmos_bak`` / ``dnsmos_ovrl`` / ``dnsmos_p808`` — Microsoft's DNSMOS
  (:func:`models.judges.dnsmos`, 1..5), reference-free; ``distill_mos`` — Distill-MOS
  (:func:`models.judges.distill_mos`, 1..5), reference-free; ``naturalness`` — the MOS named
  by :attr:`EvalSet.naturalness_judge` (a DNSMOS score or ``distillmos``) mapped to 0..1
  (``(mos - 1) / 4``);
* ``crepe_chroma`` / ``neg_crepe_f0_rmse_cents`` — the pitch scores above with CREPE
  (:func:`models.judges.crepe_f0`, :attr:`EvalSet.pitch_judge` ``tiny`` or ``full``, Viterbi)
  as the estimator of the output's F0: independent of the DIO the model is conditioned on;
* ``combined`` — one score of named parts (:data:`PARTS`), the weighted mean of those whose
  weight (:attr:`EvalSet.weights`, from ``evolve.score_weights``) is positive. A part that
  cannot be computed on an item (``intelligibility`` without a ground truth) is left out of
  that item's mean, with the weights of the others renormalised.

**Default weights** (:data:`DEFAULT_WEIGHTS`), from ``benchmarks/judges.py``'s degradation
ladder on held-out singing (docs/results.md, "Judges"): all four parts 1, naturalness judged
by DNSMOS P.808, the one judge whose weights ship that falls from clean to every rung (white
noise, low-pass, 8-bit mu-law, Griffin-Lim phase) on every corpus measured, and monotonically
along each chain on their pooled clips. DNSMOS OVRL, the first candidate, rises for mu-law;
Distill-MOS hears noise and bandwidth best but not Griffin-Lim phase on some voices. Both stay
selectable (``naturalness_judge: ovrl | distillmos``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import CompressError
from models import metrics

log = logging.getLogger(__name__)

Score = Callable[[torch.nn.Module, "EvalSet"], float]


@dataclass
class EvalItem:
    """One conversion job: `source` (singer `source_speaker`) -> `target_speaker`."""

    id: str
    source: np.ndarray
    source_speaker: str
    target_speaker: str
    shift: float
    reference: np.ndarray | None  # target singer's rendering of the same song
    source_f0: np.ndarray  # Hz per hop (labels or DIO), before the shift
    # "parallel": the target's voice on the source's performance (synthetic corpus);
    # "independent": the target's own rendering of the song; "source": reconstruction
    reference_kind: str = "independent"


@dataclass
class EvalSet:
    items: list[EvalItem]
    sample_rate: int
    hop_length: int
    speaker_refs: dict[str, list[np.ndarray]]
    steps: int = 50
    sampler: str = "ddim"
    seed: int = 0
    f0_method: str = "dio"
    temperature: float | None = None  # None: the pipeline's own
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    pitch_judge: str = "tiny"  # CREPE model of the crepe_* scores
    pitch_stride: int = 2  # CREPE on every k-th frame of the pipeline's (k * 8 ms at 16 kHz)
    naturalness_judge: str = "p808"  # the MOS of the naturalness part
    _cache: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    _judged: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _emb: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def speaker_embedding(self, name: str) -> np.ndarray:
        if name not in self._emb:
            refs = self.speaker_refs.get(name)
            if not refs:
                raise CompressError(f"eval set has no reference clips for speaker {name!r}")
            self._emb[name] = np.mean(
                [metrics.speaker_embedding(r, self.sample_rate) for r in refs], axis=0
            )
        return self._emb[name]


#: the parts of the ``combined`` score: part -> the registered score it reads
PARTS: dict[str, str] = {"similarity": "speaker_similarity", "naturalness": "naturalness",
                         "intelligibility": "stoi", "pitch": "crepe_chroma"}
#: the default weights (module docstring: why)
DEFAULT_WEIGHTS: dict[str, float] = {"similarity": 1.0, "naturalness": 1.0,
                                     "intelligibility": 1.0, "pitch": 1.0}
PITCH_JUDGES = ("tiny", "full")
NATURALNESS_JUDGES = ("p808", "distillmos", "ovrl", "sig", "bak")


def check_weights(weights: dict[str, float]) -> list[str]:
    """What a ``combined`` weight map should be, one phrase per problem (none: valid)."""
    out = [f"a part name (not {k!r})" for k in weights if k not in PARTS]
    out += [f"a finite weight >= 0 for {k} (not {v!r})" for k, v in weights.items()
            if not (isinstance(v, int | float) and np.isfinite(v) and v >= 0)]
    if not out and not any(v > 0 for v in weights.values()):
        out.append("at least one positive weight (all are 0)")
    return out


_PINNED: dict[int, str] = {}
# conversions an eval set keeps, by model fingerprint: a search screens a candidate on the
# first items and may score it in full later, with other candidates screened in between
CONVERSIONS_KEPT = 48


@contextmanager
def fingerprint_pinned(model: torch.nn.Module) -> Iterator[str]:
    """Hash `model` once for a block in which it does not change: every score computed inside
    reuses the fingerprint (one hash of the weights instead of one per score and item)."""
    key = model_fingerprint(model)
    _PINNED[id(model)] = key
    try:
        yield key
    finally:
        _PINNED.pop(id(model), None)


def model_fingerprint(model: torch.nn.Module) -> str:
    if id(model) in _PINNED:
        return _PINNED[id(model)]
    h = hashlib.sha256()
    h.update(repr(getattr(model, "architecture", None)).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def converted(model: torch.nn.Module, eval_set: EvalSet) -> list[np.ndarray]:
    """The model's outputs for every item (cached per model fingerprint)."""
    key = _conversion_key(model, eval_set)
    if key not in eval_set._cache:
        if not hasattr(model, "convert_long"):
            raise CompressError(
                f"scores need an SVC pipeline with convert_long(); got {type(model).__name__}"
            )
        model.eval()
        svc: Any = model  # an SVC pipeline (checked above), typed loosely for its methods
        outs = []
        for item in eval_set.items:
            spk = svc.speaker_index(item.target_speaker)
            kw = {} if eval_set.temperature is None else {"temperature": eval_set.temperature}
            outs.append(svc.convert_long(item.source, spk, item.shift, steps=eval_set.steps,
                                         sampler=eval_set.sampler, seed=eval_set.seed,
                                         f0_method=eval_set.f0_method, **kw))
        while len(eval_set._cache) >= CONVERSIONS_KEPT:  # oldest first (insertion order)
            eval_set._cache.pop(next(iter(eval_set._cache)))
        eval_set._cache[key] = outs
    return eval_set._cache[key]


def _conversion_key(model: torch.nn.Module, eval_set: EvalSet) -> str:
    return (model_fingerprint(model) + f"/{eval_set.steps}/{eval_set.sampler}/{eval_set.seed}"
            f"/{eval_set.temperature}")


def _judged(model: torch.nn.Module, eval_set: EvalSet, judge: str,
            fn: Callable[[EvalItem, np.ndarray], Any]) -> list[Any]:
    """`fn(item, output)` for every item, kept per model and judge (several scores read one
    judge's output: DNSMOS's four, CREPE's chroma and RMSE)."""
    outs = converted(model, eval_set)
    key = _conversion_key(model, eval_set) + "/" + judge
    if key not in eval_set._judged:
        while len(eval_set._judged) >= 4 * CONVERSIONS_KEPT:
            eval_set._judged.pop(next(iter(eval_set._judged)))
        eval_set._judged[key] = [fn(it, y) for it, y in zip(eval_set.items, outs)]
    return eval_set._judged[key]


def _mos_judge(what: str, fn: Callable[[np.ndarray, int], Any], eval_set: EvalSet,
              failed: Any) -> Callable[[EvalItem, np.ndarray], Any]:
    """A reference-free MOS judge for :func:`_judged`: `fn` on the output clipped to full scale
    (as ``compress convert`` writes it); audio it refuses (e.g. under 0.5 s) gives `failed`
    with a warning."""
    from models.judges import JudgeError

    def judge(item: EvalItem, y: np.ndarray) -> Any:
        try:
            return fn(np.clip(y, -1.0, 1.0), eval_set.sample_rate)
        except (metrics.AudioError, JudgeError) as exc:
            log.warning("%s of %s: %s", what, item.id, exc)
            return failed

    return judge


def _dnsmos(model: torch.nn.Module, eval_set: EvalSet, key: str) -> float:
    """One DNSMOS score. P.808 alone skips the P.835 network (~20x its cost): the search's
    naturalness part asks only for it, unless all four parts of this model are known already
    (a report asks for all four and runs both networks once)."""
    from models.judges import DNSMOS_PARTS, dnsmos

    name, parts = "dnsmos", DNSMOS_PARTS
    if key == "p808" and _conversion_key(model, eval_set) + "/dnsmos" not in eval_set._judged:
        name, parts = "dnsmos-p808", ("p808",)
    judge = _mos_judge("DNSMOS", lambda y, sr: dnsmos(y, sr, parts=parts), eval_set, {})
    vals = [d.get(key, float("nan")) for d in _judged(model, eval_set, name, judge)]
    return _mean(vals, f"dnsmos_{key}")


def _distill_mos(model: torch.nn.Module, eval_set: EvalSet) -> float:
    from models.judges import distill_mos

    judge = _mos_judge("Distill-MOS", distill_mos, eval_set, float("nan"))
    return _mean(_judged(model, eval_set, "distillmos", judge), "distill_mos")


def naturalness(model: torch.nn.Module, eval_set: EvalSet) -> float:
    """The MOS :attr:`EvalSet.naturalness_judge` on 0..1: ``(mos - 1) / 4``."""
    judge = eval_set.naturalness_judge
    if judge not in NATURALNESS_JUDGES:
        raise CompressError(f"naturalness judge {judge!r}; valid: "
                            f"{', '.join(NATURALNESS_JUDGES)}")
    if judge == "distillmos":
        return (_distill_mos(model, eval_set) - 1.0) / 4.0
    return (_dnsmos(model, eval_set, judge) - 1.0) / 4.0


def _crepe(model: torch.nn.Module, eval_set: EvalSet, key: str) -> float:
    """CREPE (:attr:`EvalSet.pitch_judge`) on the output against the source melody + shift,
    on every :attr:`EvalSet.pitch_stride`-th frame of the pipeline's: CREPE's hop is
    ``stride * hop`` in 16-kHz samples, so its frame i is at ``i * stride * hop / rate``, the
    time of the reference's frame ``i * stride``. Stride 2 (16 ms at the demo's rate) halves
    CREPE's cost (tiny, one thread: 0.30 vs 0.69 s per audio second on a loaded host) and
    keeps Viterbi's 220-cent-per-frame limit above a singer's vibrato."""
    from models.data.features import crepe_f0_frames
    from models.errors import ModelsError
    from models.judges import JudgeError

    if eval_set.pitch_judge not in PITCH_JUDGES:
        raise CompressError(f"pitch judge {eval_set.pitch_judge!r}; valid: "
                            f"{', '.join(PITCH_JUDGES)}")
    sr, hop, k = eval_set.sample_rate, eval_set.hop_length, max(1, int(eval_set.pitch_stride))

    def judge(item: EvalItem, y: np.ndarray) -> dict[str, float]:
        try:  # CREPE on frames of k hops: frame i is the reference's frame i * k
            est, _ = crepe_f0_frames(y, sr, k * hop, eval_set.pitch_judge)
            ref = (item.source_f0 * 2.0 ** (item.shift / 12.0))[::k]
            return metrics.f0_metrics(ref, est, k * hop / sr)
        except (ModelsError, JudgeError) as exc:  # e.g. an output under one frame, or NaN
            log.warning("CREPE on %s: %s", item.id, exc)
            return {"raw_chroma_accuracy": float("nan"), "f0_rmse_cents": float("nan")}

    vals = [d[key] for d in _judged(model, eval_set, f"crepe-{eval_set.pitch_judge}-{k}", judge)]
    return _mean(vals, f"crepe {key}")


def combined_parts(model: torch.nn.Module, eval_set: EvalSet) -> dict[str, float]:
    """The weighted parts of ``combined`` that could be computed: ``part -> value``."""
    problems = check_weights(eval_set.weights)
    if problems:
        raise CompressError(f"combined score weights {eval_set.weights}: expected "
                            + "; ".join(problems) + f" (parts: {', '.join(PARTS)})")
    out: dict[str, float] = {}
    for part, w in eval_set.weights.items():
        if w <= 0:
            continue
        try:
            out[part] = float(get_score(PARTS[part])(model, eval_set))
        except CompressError as exc:  # e.g. no ground truth for intelligibility
            log.debug("combined score: part %s left out: %s", part, exc)
    return out


def combined(model: torch.nn.Module, eval_set: EvalSet) -> float:
    """The weighted mean of the parts (module docstring)."""
    parts = combined_parts(model, eval_set)
    if not parts:
        raise CompressError("combined score: none of its weighted parts could be computed")
    w = {k: eval_set.weights[k] for k in parts}
    return float(sum(w[k] * v for k, v in parts.items()) / sum(w.values()))


def _mean(values: list[float], what: str) -> float:
    """Mean over the items whose `what` is finite; the others are left out with a warning
    (e.g. an F0 RMSE with no frame voiced in both contours is NaN), none left is an error."""
    vals = [float(v) for v in values if np.isfinite(v)]
    if len(vals) < len(values):
        log.warning("score %s: %d of %d eval items gave a non-finite value and are left out of "
                    "the mean", what, len(values) - len(vals), len(values))
    if not vals:
        raise CompressError(f"score {what}: no item of the eval set could be scored "
                            f"({len(values)} item(s), none finite)")
    return float(np.mean(vals))


def _with_reference(model: torch.nn.Module, eval_set: EvalSet, fn: Callable) -> float:
    outs = converted(model, eval_set)
    vals = [fn(it.reference, y, eval_set.sample_rate) for it, y in zip(eval_set.items, outs)
            if it.reference is not None]
    if not vals:
        raise CompressError(f"score {fn.__name__}: no eval item has a reference rendering")
    return _mean(vals, fn.__name__)


def speaker_similarity(model: torch.nn.Module, eval_set: EvalSet) -> float:
    outs = converted(model, eval_set)
    sr = eval_set.sample_rate
    return _mean([metrics.cosine(metrics.speaker_embedding(y, sr),
                                 eval_set.speaker_embedding(it.target_speaker))
                  for it, y in zip(eval_set.items, outs)], "speaker_similarity")


def speaker_margin(model: torch.nn.Module, eval_set: EvalSet) -> float:
    outs = converted(model, eval_set)
    sr = eval_set.sample_rate
    vals = []
    for it, y in zip(eval_set.items, outs):
        e = metrics.speaker_embedding(y, sr)
        vals.append(metrics.cosine(e, eval_set.speaker_embedding(it.target_speaker))
                    - metrics.cosine(e, eval_set.speaker_embedding(it.source_speaker)))
    return _mean(vals, "speaker_margin")


def _f0(model: torch.nn.Module, eval_set: EvalSet, key: str) -> float:
    outs = converted(model, eval_set)
    vals = []
    for it, y in zip(eval_set.items, outs):
        est = metrics.f0_contour(y, eval_set.sample_rate, eval_set.hop_length)
        ref = it.source_f0 * 2.0 ** (it.shift / 12.0)
        vals.append(metrics.f0_metrics(ref, est, eval_set.hop_length / eval_set.sample_rate)[key])
    return _mean(vals, key)


_SCORES: dict[str, Score] = {
    "speaker_similarity": speaker_similarity,
    "speaker_margin": speaker_margin,
    "stoi": lambda m, e: _with_reference(m, e, metrics.stoi),
    "pesq": lambda m, e: _with_reference(m, e, metrics.pesq),
    "neg_lsd": lambda m, e: -_with_reference(m, e, metrics.log_spectral_distance),
    "neg_mcd": lambda m, e: -_with_reference(m, e, metrics.mel_cepstral_distance),
    "chroma_accuracy": lambda m, e: _f0(m, e, "raw_chroma_accuracy"),
    "neg_f0_rmse_cents": lambda m, e: -_f0(m, e, "f0_rmse_cents"),
    "sim_stoi": lambda m, e: 0.5 * (speaker_similarity(m, e)
                                    + _with_reference(m, e, metrics.stoi)),
    "dnsmos_sig": lambda m, e: _dnsmos(m, e, "sig"),
    "dnsmos_bak": lambda m, e: _dnsmos(m, e, "bak"),
    "dnsmos_ovrl": lambda m, e: _dnsmos(m, e, "ovrl"),
    "dnsmos_p808": lambda m, e: _dnsmos(m, e, "p808"),
    "distill_mos": _distill_mos,
    "naturalness": naturalness,
    "crepe_chroma": lambda m, e: _crepe(m, e, "raw_chroma_accuracy"),
    "neg_crepe_f0_rmse_cents": lambda m, e: -_crepe(m, e, "f0_rmse_cents"),
    "combined": combined,
}


def score_names() -> list[str]:
    return sorted(_SCORES)


def get_score(name: str) -> Score:
    try:
        return _SCORES[name]
    except KeyError:
        raise CompressError(f"unknown score {name!r}; valid: {', '.join(score_names())}") from None


def register_score(name: str, fn: Score) -> None:
    if name in _SCORES:
        raise CompressError(f"score {name!r} is already registered")
    _SCORES[name] = fn


# ---- building eval sets from a corpus -----------------------------------------------------
def build_eval_set(
    data: str | Path,
    speakers: list[str],
    *,
    sample_rate: int = 16000,
    hop_length: int = 128,
    max_items: int | None = 8,
    seconds: float | None = 6.0,
    split: str = "test",
    steps: int = 50,
    sampler: str = "ddim",
    seed: int = 0,
    reconstruction: bool = False,
    f0_method: str = "dio",
) -> EvalSet:
    """A→B jobs on the corpus's held-out songs (B = next singer; A→A if `reconstruction`).

    The reference is B's *parallel* rendering when the corpus has one (B's voice on A's
    performance, ``models.data.corpus``; the shift is then exactly the key difference it was
    rendered with), else B's own rendering of the song (other timing and expression), with the
    shift B's key minus A's key (median F0 ratio, rounded to semitones). Clips are cut to
    `seconds`. Speaker references are the singers' train-split clips.
    """
    from models.audio import load_audio
    from models.lhq_svc.data import load_corpus

    corpus = load_corpus(data, sample_rate=sample_rate, hop_length=hop_length)
    unknown = sorted(set(corpus.singers) - set(speakers))
    if unknown:
        raise CompressError(f"corpus singers {unknown} are not speakers of the model "
                            f"({', '.join(speakers)})")
    n = None if seconds is None else int(seconds * sample_rate)
    refs: dict[str, list[np.ndarray]] = {}
    for c in corpus.split("train"):
        if len(refs.setdefault(c.singer, [])) < 3:
            refs[c.singer].append(c.wav[: n or None])
    items = []
    held = corpus.split(split)
    if not held:
        raise CompressError(f"corpus {data}: no clips in the {split!r} split")
    for c in held:
        i = corpus.singers.index(c.singer)
        target = c.singer if reconstruction else corpus.singers[(i + 1) % len(corpus.singers)]
        ref = corpus.by(target, c.song)
        src_f0 = c.label_f0 if c.label_f0 is not None else c.f0
        shift = 0.0
        par = None if reconstruction else corpus.parallel_reference(c.id, target)
        reference = None if ref is None else ref.wav
        kind = "source" if reconstruction else "independent"
        if par is not None:
            reference, _ = load_audio(par.path, sample_rate=sample_rate)
            shift, kind = par.shift, "parallel"
        elif ref is not None and not reconstruction:
            rf0 = ref.label_f0 if ref.label_f0 is not None else ref.f0
            m = min(len(src_f0), len(rf0))
            both = (src_f0[:m] > 0) & (rf0[:m] > 0)
            if both.any():
                shift = float(np.round(12 * np.median(np.log2(rf0[:m][both] / src_f0[:m][both]))))
        frames = None if n is None else n // hop_length + 1
        items.append(EvalItem(
            id=f"{c.id}->{target}", source=c.wav[: n or None], source_speaker=c.singer,
            target_speaker=target, shift=shift,
            reference=None if reference is None else reference[: n or None],
            source_f0=src_f0[:frames], reference_kind=kind,
        ))
        if max_items is not None and len(items) >= max_items:
            break
    return EvalSet(items=items, sample_rate=sample_rate, hop_length=hop_length,
                   speaker_refs=refs, steps=steps, sampler=sampler, seed=seed,
                   f0_method=f0_method)


def evaluate(model: torch.nn.Module, eval_set: EvalSet,
             names: list[str] | None = None) -> dict[str, Any]:
    """Every requested score plus per-item speaker decisions (sim to B > sim to A)."""
    out: dict[str, Any] = {}
    for name in names or score_names():
        fn = get_score(name)  # an unknown name is the caller's error: raise it
        try:
            out[name] = fn(model, eval_set)
        except (CompressError, metrics.AudioError) as exc:
            # one score that cannot be computed on this eval set (e.g. no references, PESQ
            # finds no utterance) is reported as None with its reason; the others still count
            log.warning("score %s could not be computed: %s", name, exc)
            out[name] = None
            out.setdefault("errors", {})[name] = str(exc)
    outs = converted(model, eval_set)
    wins = []
    for it, y in zip(eval_set.items, outs):
        if it.target_speaker == it.source_speaker:
            continue
        e = metrics.speaker_embedding(y, eval_set.sample_rate)
        wins.append(metrics.cosine(e, eval_set.speaker_embedding(it.target_speaker))
                    > metrics.cosine(e, eval_set.speaker_embedding(it.source_speaker)))
    if wins:
        out["target_closer_fraction"] = float(np.mean(wins))
    out["items"] = len(eval_set.items)
    return out
