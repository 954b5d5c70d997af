"""Separation metrics: BSSEval v4 SDR / SIR / SAR (museval), SI-SDR and improvements.

* :func:`bss_eval` — museval's BSSEval v4 (``bss_eval_images`` form, one set of 512-tap
  distortion filters per track, no permutation search: the settings of ``museval.evaluate``
  and SiSEC 2018) on 1-s windows with 1-s hops, per source and window. Windows in which a
  reference or an estimate is all zeros are NaN, as in museval.
* :func:`si_sdr` — scale-invariant SDR (Le Roux et al. 2019) over the whole signal: channels
  taken together, each zero-mean, one optimal scale.
* :func:`separation_scores` — per source: ``sdr``, ``sir``, ``sar``, ``isr`` (the median over
  the windows, NaN windows ignored, as museval aggregates a track), ``si_sdr``, and the
  improvements over the mixture used as the estimate, ``sdri`` and ``si_sdri``; for stereo
  signals also ``ssa_si_sdr`` (:func:`ssa_si_sdr`, our definition of the Vox-TasNet paper's
  stereo separation asymmetry: lower is better).
* :func:`median_over_tracks` — the median of each score over tracks (CWS §3.2: per track over
  frames, then the median over tracks). The paper says it averages over frames; the median
  over frames is what museval and SiSEC report, and what is used here.

Only museval's ``metrics`` module is loaded (from its file): ``import museval`` imports
``musdb`` and ``stempeg``, which need ffmpeg. Its numerical warnings (silent windows, all-NaN
medians) are kept out of the terminal.

Arrays are ``(C, T)`` per signal and ``(S, C, T)`` for the sources, in the order of `names`
(``("vocals", "accompaniment")`` by default), all at one sample rate.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from models.errors import AudioError, ModelsError

SOURCES = ("vocals", "accompaniment")
BSS_METRICS = ("sdr", "isr", "sir", "sar")
SCORES = ("sdr", "sir", "sar", "isr", "si_sdr", "sdri", "si_sdri")
WINDOW_SECONDS = 1.0
HOP_SECONDS = 1.0


@functools.lru_cache(maxsize=1)
def _museval_metrics() -> ModuleType:
    """museval's BSSEval v4 module, without running ``museval/__init__.py``."""
    loaded = sys.modules.get("museval.metrics")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise ModelsError("separation metrics need the 'museval' package (pip install museval)")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    mspec = importlib.util.spec_from_file_location("_museval_bsseval", path)
    if mspec is None or mspec.loader is None or not path.is_file():
        raise ModelsError(f"museval is installed but {path} is missing; reinstall museval")
    module = importlib.util.module_from_spec(mspec)
    with _quiet():
        mspec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _sources(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:  # (S, T): mono sources
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[-1] == 0:
        raise AudioError(f"{name}: expected sources (S, C, T), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{name}: contains NaN/Inf samples")
    return a


def bss_eval(
    references: np.ndarray,
    estimates: np.ndarray,
    sample_rate: int,
    window_seconds: float = WINDOW_SECONDS,
    hop_seconds: float = HOP_SECONDS,
) -> dict[str, np.ndarray]:
    """BSSEval v4 per source and window: ``{"sdr", "isr", "sir", "sar"} -> (S, windows)``.

    `references` and `estimates` are ``(S, C, T)``; an estimate longer than its reference is
    cut, a shorter one padded with zeros (as ``museval.evaluate`` does).
    """
    ref = _sources(references, "references")
    est = _sources(estimates, "estimates")
    if est.shape[:2] != ref.shape[:2]:
        raise AudioError(f"estimates {est.shape[:2]} and references {ref.shape[:2]} must have "
                         "the same (sources, channels)")
    n = ref.shape[-1]
    est = est[..., :n] if est.shape[-1] >= n else np.pad(
        est, ((0, 0), (0, 0), (0, n - est.shape[-1])))
    m = _museval_metrics()
    win = max(1, round(window_seconds * sample_rate))
    hop = max(1, round(hop_seconds * sample_rate))
    with _quiet():
        sdr, isr, sir, sar, _ = m.bss_eval(
            ref.transpose(0, 2, 1), est.transpose(0, 2, 1), window=win, hop=hop,
            compute_permutation=False, framewise_filters=False,
            bsseval_sources_version=False,
        )
    return {"sdr": np.asarray(sdr), "isr": np.asarray(isr), "sir": np.asarray(sir),
            "sar": np.asarray(sar)}


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB of `estimate` against `reference` (``(T,)`` or ``(C, T)``);
    the estimate is cut or zero-padded to the reference's length. NaN for a silent reference.
    """
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    est = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if ref.shape[0] != est.shape[0] or ref.shape[-1] == 0:
        raise AudioError(f"si_sdr: reference {ref.shape} and estimate {est.shape} must be "
                         "non-empty with the same channels")
    n = ref.shape[-1]
    est = est[:, :n] if est.shape[-1] >= n else np.pad(est, ((0, 0), (0, n - est.shape[-1])))
    ref = ref - ref.mean(axis=-1, keepdims=True)
    est = est - est.mean(axis=-1, keepdims=True)
    energy = float(np.sum(ref**2))
    if energy == 0.0:
        return float("nan")
    target = float(np.sum(est * ref)) / energy * ref
    noise = est - target
    num, den = float(np.sum(target**2)), float(np.sum(noise**2))
    if den == 0.0:
        return float("inf")
    if num == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(num / den))


def ssa_si_sdr(reference: np.ndarray, estimate: np.ndarray, sample_rate: int,
               window_seconds: float = 1.0) -> float:
    """Stereo separation asymmetry, SSA SI-SDR (dB; 0 = both channels separated alike).

    The Vox-TasNet paper (arXiv 2401.12068) introduces a metric of this name for attenuation
    inconsistencies between the channels of a stereo estimate; its formula was not available to
    us, so this is **our definition**, built as the paper describes the metric's purpose: in
    each window of `window_seconds` (hop = window) where both reference channels carry signal,
    the SI-SDR of the left and of the right channel of `estimate` against `reference`
    (``(2, T)``); SSA is the mean over windows of ``|SI-SDR_left − SI-SDR_right|``. A residual
    of the unwanted source attenuated by gains ``g_L`` and ``g_R`` (orthogonal to the target)
    gives ``20 log10(g_R / g_L)`` in absolute value; identical channels give 0. NaN when no
    window qualifies.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[0] != 2 or est.shape != ref.shape:
        raise AudioError(f"ssa_si_sdr: stereo reference and estimate (2, T) of one shape "
                         f"expected, got {ref.shape} and {est.shape}")
    n = max(1, int(round(window_seconds * sample_rate)))
    diffs = []
    for s in range(0, ref.shape[1] - n + 1, n):
        r, e = ref[:, s : s + n], est[:, s : s + n]
        if min(float(np.sum(r[0] ** 2)), float(np.sum(r[1] ** 2))) <= 1e-10 * n:
            continue
        left, right = si_sdr(r[0], e[0]), si_sdr(r[1], e[1])
        if np.isfinite(left) and np.isfinite(right):
            diffs.append(abs(left - right))
    return float(np.mean(diffs)) if diffs else float("nan")


def _nanmedian(x: np.ndarray) -> float:
    with _quiet():
        return float(np.nanmedian(x)) if x.size else float("nan")


def separation_scores(
    references: np.ndarray,
    estimates: np.ndarray,
    mixture: np.ndarray | None,
    sample_rate: int,
    names: Sequence[str] = SOURCES,
    *,
    window_seconds: float = WINDOW_SECONDS,
    hop_seconds: float = HOP_SECONDS,
) -> dict[str, dict[str, float]]:
    """Scores of one track, ``{source: {score: dB}}`` (see the module docstring).

    `mixture` ``(C, T)`` gives ``sdri`` / ``si_sdri`` (the scores of the estimate minus those
    of the mixture used as the estimate of every source; this costs a second BSSEval pass);
    None leaves them out.
    """
    ref = _sources(references, "references")
    est = _sources(estimates, "estimates")
    if len(names) != ref.shape[0]:
        raise AudioError(f"names {list(names)} do not match {ref.shape[0]} reference sources")
    frames = bss_eval(ref, est, sample_rate, window_seconds, hop_seconds)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(names):
        s = {k: _nanmedian(frames[k][j]) for k in ("sdr", "sir", "sar", "isr")}
        s["si_sdr"] = si_sdr(ref[j], est[j])
        if ref.shape[1] == 2:
            s["ssa_si_sdr"] = ssa_si_sdr(ref[j], est[j], sample_rate, window_seconds)
        out[name] = s
    if mixture is not None:
        mix = np.asarray(mixture, dtype=np.float64)
        mix = mix[None] if mix.ndim == 1 else mix
        base_est = np.broadcast_to(mix, est.shape[:1] + mix.shape)
        base = bss_eval(ref, base_est, sample_rate, window_seconds, hop_seconds)
        for j, name in enumerate(names):
            out[name]["sdri"] = out[name]["sdr"] - _nanmedian(base["sdr"][j])
            out[name]["si_sdri"] = out[name]["si_sdr"] - si_sdr(ref[j], mix)
    return out


def median_over_tracks(
    per_track: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, float]]:
    """``{track: {source: {score: v}}}`` -> ``{source: {score: median over tracks}}``, NaN
    tracks ignored (NaN when every track is NaN)."""
    sources: dict[str, dict[str, list[float]]] = {}
    for scores in per_track.values():
        for src, vals in scores.items():
            for k, v in vals.items():
                sources.setdefault(src, {}).setdefault(k, []).append(float(v))
    return {src: {k: _nanmedian(np.array(v)) for k, v in vals.items()}
            for src, vals in sources.items()}


def paper_average(scores: Mapping[str, Mapping[str, float]]) -> float:
    """The mean of SDR, SIR and SAR over both sources (the "Average" column of CWS Table 2)."""
    vals = [scores[s][k] for s in scores for k in ("sdr", "sir", "sar")]
    return float(np.mean(vals)) if vals else float("nan")
