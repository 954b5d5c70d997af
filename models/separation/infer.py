"""Chunked separation of long recordings and evaluation on the corpus's tracks.

:func:`separate_long` runs a separator on fixed-length chunks that overlap by
``overlap_seconds`` and crossfades them with complementary linear ramps (the two weights sum to
1 at every sample of an overlap), so memory beyond the input and output arrays is that of one
chunk: a three-minute song never meets a full-length STFT. Every chunk has the same length
(the last one and a recording shorter than a chunk are zero-padded, their output cut), which is
also what an exported fixed-shape program needs.

:func:`evaluate` separates the whole tracks of a split (or their first ``max_seconds``) and
scores them with :func:`models.separation.metrics.separation_scores`: per track and the median
over tracks (CWS §3.2) for vocals and accompaniment.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from models.errors import AudioError
from models.separation.data import SeparationData, load_test_tracks, to_channels
from models.separation.metrics import (
    SOURCES,
    median_over_tracks,
    paper_average,
    separation_scores,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 3.0  # the CWS paper measures its models on 3-s inputs
DEFAULT_OVERLAP_SECONDS = 0.5

Progress = Callable[[int, int], None]


def _device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _bar_callback(bar: Any) -> Progress:
    def update(done: int, total: int) -> None:
        bar.update(1)

    return update


def chunk_starts(total: int, chunk: int, overlap: int) -> list[int]:
    """Start samples of the chunks covering ``[0, total)``: hop ``chunk - overlap``."""
    hop = chunk - overlap
    n = 1 + max(0, math.ceil((total - chunk) / hop))
    return [i * hop for i in range(n)]


@torch.inference_mode()
def separate_long(
    model: torch.nn.Module,
    wav: np.ndarray | torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    progress: Progress | bool | None = None,
) -> np.ndarray:
    """Separate `wav` ``(C, T)`` (or ``(T,)``) at the model's rate into ``(2, C, T)`` float32:
    ``[vocals, accompaniment]``.

    A recording whose channel count differs from the model's is converted for the model
    (mono duplicated, stereo averaged) and the estimates converted back. `progress`: a
    callable ``(chunks_done, chunks_total)``, True for a tqdm bar, None for a bar only on a
    terminal, False for nothing.
    """
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise AudioError(f"separate_long: expected audio (C, T) with T > 0, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AudioError("separate_long: the audio has NaN/Inf samples")
    x = x.astype(np.float32, copy=False)
    sr = int(model.sample_rate)  # type: ignore[arg-type]
    model_channels = int(model.channels)  # type: ignore[arg-type]
    chunk = round(chunk_seconds * sr)
    overlap = round(overlap_seconds * sr)
    if chunk < 1 or not 0 <= overlap < chunk:
        raise AudioError(f"chunk_seconds={chunk_seconds}, overlap_seconds={overlap_seconds}: "
                         "expected a chunk of at least one sample and 0 <= overlap < chunk")
    c_in, total = x.shape
    starts = chunk_starts(total, chunk, overlap)
    out = np.zeros((2, c_in, total), np.float32)
    ramp = ((np.arange(overlap, dtype=np.float32) + 0.5) / overlap) if overlap else None
    report: Progress | None
    bar = None
    if callable(progress):
        report = progress
    elif progress or (progress is None and sys.stderr.isatty() and len(starts) > 1):
        from tqdm import tqdm

        bar = tqdm(total=len(starts), desc="separate", unit="chunk")
        report = _bar_callback(bar)
    else:
        report = None
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        for i, s in enumerate(starts):
            e = min(s + chunk, total)
            piece = np.zeros((c_in, chunk), np.float32)
            piece[:, : e - s] = x[:, s:e]
            inp = torch.from_numpy(to_channels(piece, model_channels, "separate_long input"))
            y = model(inp.unsqueeze(0).to(device))  # (1, 2, C, L)
            y = y[0, :, :, : e - s].float().cpu().numpy()  # (2, C_model, n)
            if model_channels != c_in:
                y = np.stack([to_channels(src, c_in, "separate_long output") for src in y])
            if ramp is not None:
                w = np.ones(e - s, np.float32)
                if i > 0:  # fade in over the overlap with the previous chunk
                    n_in = min(overlap, e - s)
                    w[:n_in] *= ramp[:n_in]
                if i < len(starts) - 1:  # fade out over the overlap with the next chunk
                    n_out = e - starts[i + 1]
                    w[e - s - n_out :] *= 1.0 - ramp[:n_out]
                y = y * w
            out[:, :, s:e] += y
            if report is not None:
                report(i + 1, len(starts))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out


def evaluate(
    model: torch.nn.Module,
    data_root: str | os.PathLike[str] | SeparationData,
    split: str = "test",
    max_seconds: float | None = None,
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Separate and score every track of `split` (``"test"``, ``"val"`` or ``"train"``).

    Returns ``{"split", "sample_rate", "channels", "max_seconds", "seconds", "tracks":
    {name: {source: {score: dB}}}, "median": {source: {score: dB}}, "average": float}``
    with the scores of :func:`~models.separation.metrics.separation_scores` (SDR / SIR / SAR /
    ISR medians over 1-s windows, SI-SDR, SDRi, SI-SDRi) and ``average`` the mean of the
    median SDR, SIR and SAR of both sources (the paper's "Average").
    """
    sr = int(model.sample_rate)  # type: ignore[arg-type]
    channels = int(model.channels)  # type: ignore[arg-type]
    show = sys.stderr.isatty() if show_progress is None else show_progress
    if isinstance(data_root, SeparationData):
        if data_root.sample_rate != sr or data_root.channels != channels:
            raise AudioError(f"data at {data_root.sample_rate} Hz x {data_root.channels} ch; "
                             f"the model runs at {sr} Hz x {channels} ch")
        names = data_root.names(split)
        tracks = data_root.tracks(split, max_seconds)
    elif split == "test":  # no train folder needed
        names = None
        tracks = load_test_tracks(data_root, sr, channels, max_seconds)
    else:
        data = SeparationData(data_root, sr, channels)
        names = data.names(split)
        tracks = data.tracks(split, max_seconds)
    t0 = time.time()
    per_track: dict[str, dict[str, dict[str, float]]] = {}
    from tqdm import tqdm

    with tqdm(total=None if names is None else len(names), desc=f"evaluate {split}",
              unit="track", disable=not show) as bar:
        for tr in tracks:
            est = separate_long(model, tr.mixture, chunk_seconds, overlap_seconds, False)
            refs = np.stack([tr.vocals, tr.accompaniment])
            per_track[tr.name] = separation_scores(refs, est, tr.mixture, sr, SOURCES)
            v = per_track[tr.name]["vocals"]
            log.info("%s: vocals SDR %.2f SIR %.2f SAR %.2f dB", tr.name, v["sdr"], v["sir"],
                     v["sar"])
            bar.update(1)
    median = median_over_tracks(per_track)
    return {"split": split, "sample_rate": sr, "channels": channels,
            "max_seconds": max_seconds, "seconds": round(time.time() - t0, 2),
            "tracks": per_track, "median": median,
            "average": paper_average(median) if median else float("nan")}
