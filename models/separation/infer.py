"""Chunked separation of long recordings and evaluation on the corpus's tracks.

:func:`separate_long` runs a separator on fixed-length chunks that overlap by
``overlap_seconds`` and crossfades them with complementary linear ramps (the two weights sum to
1 at every sample of an overlap), so a three-minute song never meets a full-length STFT;
:func:`separate_file` streams a file through the same chunks (:class:`ChunkStream`), so memory
is one chunk and a block whatever the song's length. Every chunk has the same length
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
from pathlib import Path
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


def chunk_starts(total: int, chunk: int, overlap: int) -> list[int]:
    """Start samples of the chunks covering ``[0, total)``: hop ``chunk - overlap``."""
    hop = chunk - overlap
    n = 1 + max(0, math.ceil((total - chunk) / hop))
    return [i * hop for i in range(n)]


class ChunkStream:
    """The chunk loop of :func:`separate_long`, fed piece by piece.

    :meth:`push` takes the next samples ``(C, n)`` at the model's rate and returns the stems
    ``(2, C, m)`` that no later chunk will touch any more; ``last=True`` ends the recording.
    Chunk i starts at ``i · (chunk − overlap)`` and runs once the stream holds more than its
    end (so it is known not to be the last) or the recording has ended, the same chunks
    :func:`chunk_starts` lists for the whole length, so the output is the same whatever the
    pieces: memory is one chunk plus the pieces, not the recording.
    """

    def __init__(self, model: torch.nn.Module, channels: int, chunk: int, overlap: int):
        if chunk < 1 or not 0 <= overlap < chunk:
            raise AudioError(f"chunk of {chunk} samples with an overlap of {overlap}: expected "
                             "a chunk of at least one sample and 0 <= overlap < chunk")
        self.model, self.c_in, self.chunk, self.overlap = model, channels, chunk, overlap
        self.hop = chunk - overlap
        self.model_channels = int(model.channels)  # type: ignore[arg-type]
        self.device = _device(model)
        self.ramp = ((np.arange(overlap, dtype=np.float32) + 0.5) / overlap) if overlap else None
        self.buf = np.zeros((channels, 0), np.float32)  # input from `buf_start`
        self.buf_start = 0
        self.acc = np.zeros((2, channels, 0), np.float32)  # output from `acc_start`
        self.acc_start = 0
        self.index = 0  # next chunk
        self.done = False

    def _run(self, s: int, e: int, is_last: bool) -> None:
        piece = np.zeros((self.c_in, self.chunk), np.float32)
        piece[:, : e - s] = self.buf[:, s - self.buf_start : e - self.buf_start]
        inp = torch.from_numpy(to_channels(piece, self.model_channels, "separate input"))
        y = self.model(inp.unsqueeze(0).to(self.device))  # (1, 2, C, L)
        y = y[0, :, :, : e - s].float().cpu().numpy()  # (2, C_model, n)
        if self.model_channels != self.c_in:
            y = np.stack([to_channels(src, self.c_in, "separate output") for src in y])
        if self.ramp is not None:
            w = np.ones(e - s, np.float32)
            if self.index > 0:  # fade in over the overlap with the previous chunk
                n_in = min(self.overlap, e - s)
                w[:n_in] *= self.ramp[:n_in]
            if not is_last:  # fade out over the overlap with the next chunk
                n_out = e - (s + self.hop)
                w[e - s - n_out :] *= 1.0 - self.ramp[:n_out]
            y = y * w
        need = e - self.acc_start - self.acc.shape[-1]
        if need > 0:
            self.acc = np.concatenate([self.acc, np.zeros((2, self.c_in, need), np.float32)], -1)
        self.acc[:, :, s - self.acc_start : e - self.acc_start] += y

    def _emit(self, upto: int) -> np.ndarray:
        k = upto - self.acc_start
        out, self.acc = self.acc[:, :, :k], self.acc[:, :, k:]
        self.acc_start = upto
        drop = max(0, upto - self.buf_start)
        self.buf, self.buf_start = self.buf[:, drop:], self.buf_start + drop
        return out

    @torch.inference_mode()
    def push(self, x: np.ndarray, last: bool = False,
             report: Callable[[int], None] | None = None) -> np.ndarray:
        if self.done:
            raise AudioError("separate: the stream has ended")
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[0] != self.c_in:
            raise AudioError(f"separate: expected pieces ({self.c_in}, n), got {x.shape}")
        self.buf = np.concatenate([self.buf, x], axis=-1)
        seen = self.buf_start + self.buf.shape[-1]
        outs = [np.zeros((2, self.c_in, 0), np.float32)]
        while True:
            s = self.index * self.hop
            if not last and seen <= s + self.chunk:
                break
            if seen == 0:
                raise AudioError("separate: the recording has no samples")
            is_last = s + self.chunk >= seen  # only reached when `last`
            self._run(s, min(s + self.chunk, seen), is_last)
            self.index += 1
            if report is not None:
                report(self.index)
            if is_last:
                outs.append(self._emit(seen))
                self.done = True
                break
            outs.append(self._emit(s + self.hop))
        return np.concatenate(outs, axis=-1)


def _progress(progress: Progress | bool | None, total: int | None
              ) -> tuple[Callable[[int], None] | None, Any]:
    """``(report(chunks_done), tqdm bar or None)`` for `progress` (see :func:`separate_long`)."""
    if callable(progress):
        return (lambda i: progress(i, total or i)), None
    if progress or (progress is None and sys.stderr.isatty() and (total or 2) > 1):
        from tqdm import tqdm

        bar = tqdm(total=total, desc="separate", unit="chunk")
        return (lambda i: bar.update(i - bar.n)), bar
    return None, None


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
    terminal, False for nothing. (:class:`ChunkStream` does the work; :func:`separate_file`
    streams a file through it.)
    """
    x = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise AudioError(f"separate_long: expected audio (C, T) with T > 0, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AudioError("separate_long: the audio has NaN/Inf samples")
    sr = int(model.sample_rate)  # type: ignore[arg-type]
    chunk, overlap = round(chunk_seconds * sr), round(overlap_seconds * sr)
    if chunk < 1 or not 0 <= overlap < chunk:
        raise AudioError(f"chunk_seconds={chunk_seconds}, overlap_seconds={overlap_seconds}: "
                         "expected a chunk of at least one sample and 0 <= overlap < chunk")
    stream = ChunkStream(model, x.shape[0], chunk, overlap)
    report, bar = _progress(progress, len(chunk_starts(x.shape[-1], chunk, overlap)))
    was_training = model.training
    model.eval()
    try:
        return stream.push(x.astype(np.float32, copy=False), last=True, report=report)
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)


def separate_file(
    model: torch.nn.Module,
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    progress: Progress | bool | None = None,
    block_seconds: float = 1.0,
) -> dict[str, Any]:
    """Separate the audio file `src` into ``out_dir/{vocals,accompaniment}.wav`` (16-bit PCM
    at the file's rate and channel count) without holding the recording: blocks of
    `block_seconds` are read (:class:`models.audio.AudioReader`), resampled to the model's
    rate and back by streaming soxr resamplers (the same samples as whole-array
    :func:`models.audio.resample`), separated by :class:`ChunkStream` and written as they are
    final. Memory is the model, one chunk and a block, whatever the song's length. The stems
    appear (atomically) only when the whole file went through; NaN / Inf samples or a silent
    file are an :class:`AudioError` and leave nothing behind.

    Returns ``{"seconds", "sample_rate", "channels", "chunks"}``.
    """
    import soundfile as sf
    import soxr

    from models.audio import SILENCE_DB, AudioReader

    reader = AudioReader(src)
    sr_in, c_in = reader.sample_rate, reader.channels
    # a channel count the model cannot take is refused now, naming the file
    to_channels(np.zeros((c_in, 1), np.float32), int(model.channels), str(src))  # type: ignore
    sr = int(model.sample_rate)  # type: ignore[arg-type]
    chunk, overlap = round(chunk_seconds * sr), round(overlap_seconds * sr)
    stream = ChunkStream(model, c_in, chunk, overlap)
    rs_in = rs_out = None
    if sr_in != sr:
        rs_in = soxr.ResampleStream(sr_in, sr, c_in, dtype="float32", quality="VHQ")
        rs_out = [soxr.ResampleStream(sr, sr_in, c_in, dtype="float32", quality="VHQ")
                  for _ in range(2)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("vocals", "accompaniment")
    tmps = [out / f".{n}.wav.partial" for n in names]
    writers = [sf.SoundFile(str(t), "w", sr_in, c_in, subtype="PCM_16", format="WAV")
               for t in tmps]
    written = [0, 0]
    peak = 0.0
    declared = max(1, reader.declared)
    est_chunks = len(chunk_starts(max(1, round(declared * sr / sr_in)), chunk, overlap))
    report, bar = _progress(progress, est_chunks)

    def write(stems: np.ndarray, final: bool, n_in: int) -> None:
        for j, w in enumerate(writers):
            y = stems[j].T  # (m, C) at the model's rate
            if rs_out is not None:
                y = rs_out[j].resample_chunk(np.ascontiguousarray(y), last=final)
            y = y[: n_in - written[j]]
            if final and y.shape[0] < n_in - written[j]:  # the rate round trip can lose one
                y = np.concatenate([y, np.zeros((n_in - written[j] - y.shape[0], c_in),
                                                np.float32)])
            w.write(np.clip(y, -1.0, 1.0))
            written[j] += y.shape[0]

    was_training = model.training
    model.eval()
    ok = False
    try:
        n_in = 0
        for b in reader.blocks(max(1, round(block_seconds * sr_in))):
            if not np.all(np.isfinite(b)):
                raise AudioError(f"{src}: NaN/Inf samples near {n_in / sr_in:.2f} s")
            peak = max(peak, float(np.max(np.abs(b))))
            n_in += b.shape[0]
            x = rs_in.resample_chunk(b) if rs_in is not None else b
            write(stream.push(np.ascontiguousarray(x.T), report=report), False, n_in)
        if 20.0 * math.log10(max(peak, 1e-12)) < SILENCE_DB:
            raise AudioError(f"{src}: signal is silent (peak below {SILENCE_DB:.0f} dBFS)")
        tail = (rs_in.resample_chunk(np.zeros((0, c_in), np.float32), last=True)
                if rs_in is not None else np.zeros((0, c_in), np.float32))
        write(stream.push(np.ascontiguousarray(tail.T), last=True, report=report), True, n_in)
        ok = True
    finally:
        for w in writers:
            w.close()
        if bar is not None:
            bar.close()
        model.train(was_training)
        if not ok:
            for t in tmps:
                t.unlink(missing_ok=True)
    for t, n in zip(tmps, names):
        os.replace(t, out / f"{n}.wav")
    return {"seconds": n_in / sr_in, "sample_rate": sr_in, "channels": c_in,
            "chunks": stream.index}


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
