"""Audio I/O: load any file libsndfile reads into float32 at a requested rate; write wav.

Conventions: a mono signal is a 1-D array ``(T,)``; a multi-channel signal is ``(C, T)``.

Documented handling of bad input (every case raises :class:`AudioError` naming the file):

* missing file, unreadable / corrupt container, zero frames -> error;
* NaN or Inf samples -> error (``nan_policy="error"``, the default) or replaced by 0 with a
  warning (``nan_policy="zero"``);
* all-silent signal (peak below ``silence_db``, default -60 dBFS) -> error unless
  ``allow_silent=True``;
* odd sample rates (anything from 1 kHz to 384 kHz) -> resampled with soxr (VHQ) when a rate is
  requested; rates outside that range -> error;
* channels: ``channels=1`` averages all channels; ``channels=2`` duplicates a mono file and
  rejects files with more than 2 channels (no standard downmix exists); ``None`` keeps them.

Loudness: :func:`loudness_lufs` is ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms
blocks with 75 % overlap, -70 LUFS absolute and -10 LU relative gates);
:func:`normalize_loudness` scales to a target with a peak ceiling.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal

from models.errors import AudioError
from models.fileio import atomic_path

log = logging.getLogger(__name__)

MIN_RATE = 1000
MAX_RATE = 384000
SILENCE_DB = -60.0


def _db(x: float) -> float:
    return float(20.0 * np.log10(max(x, 1e-12)))


def check_audio(
    wav: np.ndarray,
    name: str = "audio",
    *,
    allow_silent: bool = False,
    silence_db: float = SILENCE_DB,
    nan_policy: str = "error",
) -> np.ndarray:
    """Validate an array (finite, non-empty, not silent); return it as float32."""
    if nan_policy not in ("error", "zero"):
        raise AudioError(f"nan_policy={nan_policy!r}; valid: 'error', 'zero'")
    arr = np.asarray(wav)
    if arr.ndim not in (1, 2):
        raise AudioError(f"{name}: expected shape (T,) or (C, T), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise AudioError(f"{name}: expected numeric samples, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.shape[-1] == 0:
        raise AudioError(f"{name}: no samples (empty audio)")
    bad = ~np.isfinite(arr)
    if bad.any():
        n = int(bad.sum())
        if nan_policy == "error":
            raise AudioError(
                f"{name}: {n} NaN/Inf sample(s) of {arr.size}; pass nan_policy='zero' to zero them"
            )
        log.warning("%s: replacing %d NaN/Inf sample(s) with 0", name, n)
        arr = np.where(bad, 0.0, arr).astype(np.float32)
    peak = float(np.max(np.abs(arr)))
    if not allow_silent and _db(peak) < silence_db:
        raise AudioError(
            f"{name}: signal is silent (peak {_db(peak):.1f} dBFS < {silence_db:.0f} dBFS)"
        )
    return arr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (T,) or (C, T) float audio with soxr (very high quality)."""
    import soxr

    if sr_in == sr_out:
        return wav.astype(np.float32, copy=False)
    for r, what in ((sr_in, "input"), (sr_out, "output")):
        if not MIN_RATE <= r <= MAX_RATE:
            raise AudioError(f"{what} sample rate {r} Hz is outside [{MIN_RATE}, {MAX_RATE}] Hz")
    if wav.ndim == 1:
        return soxr.resample(wav, sr_in, sr_out, quality="VHQ").astype(np.float32)
    out = soxr.resample(wav.T, sr_in, sr_out, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def _to_channels(wav: np.ndarray, channels: int | None, name: str) -> np.ndarray:
    # wav: (C, T)
    c = wav.shape[0]
    if channels is None:
        return wav[0] if c == 1 else wav
    if channels == 1:
        return wav.mean(axis=0).astype(np.float32) if c > 1 else wav[0]
    if channels == 2:
        if c == 1:
            return np.concatenate([wav, wav], axis=0)
        if c == 2:
            return wav
        raise AudioError(f"{name}: has {c} channels; stereo was requested (no standard downmix)")
    raise AudioError(f"channels={channels!r}; valid: 1, 2 or None")


def _riff_declared_frames(p: Path) -> int | None:
    """Frames a RIFF/WAVE file's header declares (its ``data`` chunk size / block align).

    libsndfile trusts the bytes actually present, so a cut-off file reads short without a
    word; the header still says how long it was meant to be. ``None`` for anything that is
    not a plain RIFF/WAVE file with a ``fmt `` chunk before ``data`` (RF64, AIFF, ...).
    """
    import struct

    try:
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            for _ in range(64):  # chunks before 'data' are few; bound the walk
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    if size in (0, 0xFFFFFFFF) or not block_align:
                        return None  # streamed wav (size unknown when the header was written)
                    return size // block_align
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


class AudioReader:
    """Every decodable frame of an audio file, block by block, as ``(n, C)`` float32.

    What :func:`load_audio` reads, without holding the whole file: opening checks the file
    (exists, not empty, readable, rate in range); :meth:`blocks` yields the frames and, at the
    end, raises when nothing was decodable or warns when the file is short. A file cut off or
    damaged part-way (a decoder that loses sync, a data chunk shorter than its header) gives
    what could be decoded before the damage, with a warning that states the duration read and
    the duration the header declares.
    """

    def __init__(self, path: str | os.PathLike[str]):
        import soundfile as sf

        p = Path(path)
        if not p.is_file():
            raise AudioError(f"{p}: no such audio file")
        if p.stat().st_size == 0:
            raise AudioError(f"{p}: file is empty (0 bytes)")
        self.path = p
        self._errors = (sf.LibsndfileError, RuntimeError, TypeError, ValueError)
        try:
            with sf.SoundFile(str(p)) as f:
                self.sample_rate, self.declared = int(f.samplerate), int(f.frames)
                self.channels = int(f.channels)
        except self._errors as exc:
            raise AudioError(f"{p}: not a readable audio file ({exc})") from exc
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise AudioError(f"{p}: sample rate {self.sample_rate} Hz is outside "
                             f"[{MIN_RATE}, {MAX_RATE}] Hz")
        #: frames read so far
        self.frames = 0

    def blocks(self, block: int = 4096) -> Iterator[np.ndarray]:
        """``(n, C)`` float32 blocks of at most `block` frames (small blocks: a decoder that
        loses sync drops at most one)."""
        import soundfile as sf

        p, sr = self.path, self.sample_rate
        damage = ""
        self.frames = 0
        try:
            f = sf.SoundFile(str(p))
        except self._errors as exc:
            raise AudioError(f"{p}: not a readable audio file ({exc})") from exc
        with f:
            while True:
                try:
                    b = f.read(block, dtype="float32", always_2d=True)
                except self._errors as exc:
                    damage = str(exc).replace("Error : ", "").strip().rstrip(".")
                    break
                if b.shape[0] == 0:
                    break
                self.frames += b.shape[0]
                yield b
                if b.shape[0] < block:
                    break
        n, declared = self.frames, self.declared
        if n == 0:
            if damage:
                raise AudioError(f"{p}: no readable frames ({damage})")
            raise AudioError(f"{p}: audio has no frames")
        riff = _riff_declared_frames(p)
        if riff is not None and riff > declared:
            declared = riff
        if damage or n < declared - 1:
            why = f": {damage}" if damage else ""
            log.warning(
                "%s: truncated or damaged%s; read %.2f s of the %.2f s its header declares "
                "(%d of %d frames); using the readable part",
                p, why, n / sr, max(declared, n) / sr, n, max(declared, n),
            )


def _read_readable(p: Path) -> tuple[np.ndarray, int]:
    """Read every decodable frame of ``p`` as ``(T, C)`` float32 (:class:`AudioReader`)."""
    reader = AudioReader(p)
    data = np.concatenate(list(reader.blocks()))
    return data, reader.sample_rate


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    channels: int | None = 1,
    *,
    allow_silent: bool = False,
    nan_policy: str = "error",
) -> tuple[np.ndarray, int]:
    """Read wav / flac / ogg / mp3 (as libsndfile allows) into float32.

    Returns ``(wav, sr)``: ``wav`` is ``(T,)`` for one channel, ``(C, T)`` otherwise; ``sr`` is
    `sample_rate` when given (the audio is resampled), else the file's rate.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: no such audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes)")
    data, sr = _read_readable(p)
    wav = np.ascontiguousarray(data.T)  # (C, T)
    wav = check_audio(wav, str(p), allow_silent=allow_silent, nan_policy=nan_policy)
    wav = _to_channels(wav, channels, str(p))
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, int(sr)


def write_wav(
    path: str | os.PathLike[str], wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16"
) -> Path:
    """Write (T,) or (C, T) audio to a wav file atomically (no partial file on failure).

    Samples are clipped to [-1, 1] for PCM subtypes. Returns the path written.
    """
    import soundfile as sf

    p = Path(path)
    arr = check_audio(wav, str(p), allow_silent=True)
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioError(f"{p}: sample rate {sample_rate} Hz is outside [{MIN_RATE}, {MAX_RATE}]")
    data = arr.T if arr.ndim == 2 else arr
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(p, suffix=".wav") as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format="WAV")
    return p


def _k_weighting(sr: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770 K-weighting: a +4 dB high shelf (1.5 kHz) then a 38 Hz high-pass, at any rate.

    At 48 kHz the coefficients agree with the ones tabulated in BS.1770 to about 1e-4.
    """
    # Stage 1: high shelf (RBJ cookbook form with the BS.1770 parameters).
    g_db, q, fc = 4.0, 1 / np.sqrt(2.0), 1500.0
    a = 10 ** (g_db / 40.0)
    w0 = 2 * np.pi * fc / sr
    alpha = np.sin(w0) / (2 * q)
    cosw = np.cos(w0)
    b1 = np.array(
        [
            a * ((a + 1) + (a - 1) * cosw + 2 * np.sqrt(a) * alpha),
            -2 * a * ((a - 1) + (a + 1) * cosw),
            a * ((a + 1) + (a - 1) * cosw - 2 * np.sqrt(a) * alpha),
        ]
    )
    a1 = np.array(
        [
            (a + 1) - (a - 1) * cosw + 2 * np.sqrt(a) * alpha,
            2 * ((a - 1) - (a + 1) * cosw),
            (a + 1) - (a - 1) * cosw - 2 * np.sqrt(a) * alpha,
        ]
    )
    # Stage 2: RLB high-pass.
    q2, fc2 = 0.5, 38.0
    w2 = 2 * np.pi * fc2 / sr
    alpha2 = np.sin(w2) / (2 * q2)
    c2 = np.cos(w2)
    a2 = np.array([1 + alpha2, -2 * c2, 1 - alpha2])
    b2 = np.array([1.0, -2.0, 1.0])  # BS.1770 states the numerator unnormalised
    return [(b1 / a1[0], a1 / a1[0]), (b2, a2 / a2[0])]


def loudness_lufs(wav: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4) in LUFS; ``-inf`` when every block is gated."""
    x = np.atleast_2d(check_audio(wav, "audio", allow_silent=True)).astype(np.float64)  # (C, T)
    for b, a in _k_weighting(sample_rate):
        x = scipy.signal.lfilter(b, a, x, axis=-1)
    block = int(round(0.4 * sample_rate))
    hop = int(round(0.1 * sample_rate))
    if x.shape[-1] < block:
        block = hop = x.shape[-1]
    starts = range(0, x.shape[-1] - block + 1, hop)
    z = np.array([[np.mean(ch[s : s + block] ** 2) for s in starts] for ch in x])  # (C, nblocks)
    power = z.sum(axis=0)  # channel weights are 1 for L/R/C (no surround here)
    lk = -0.691 + 10 * np.log10(np.maximum(power, 1e-20))
    keep = lk > -70.0
    if not keep.any():
        return float("-inf")
    rel = -0.691 + 10 * np.log10(power[keep].mean()) - 10.0
    keep &= lk > rel
    if not keep.any():
        return float("-inf")
    return float(-0.691 + 10 * np.log10(power[keep].mean()))


def normalize_loudness(
    wav: np.ndarray, sample_rate: int, target_lufs: float = -23.0, peak_dbfs: float = -1.0
) -> np.ndarray:
    """Scale to `target_lufs`, reduced if needed so the peak stays under `peak_dbfs`."""
    arr = check_audio(wav, "audio")
    lufs = loudness_lufs(arr, sample_rate)
    if not np.isfinite(lufs):
        raise AudioError("audio: loudness is below the -70 LUFS gate; cannot normalise silence")
    gain = 10 ** ((target_lufs - lufs) / 20.0)
    peak = float(np.max(np.abs(arr))) * gain
    ceiling = 10 ** (peak_dbfs / 20.0)
    if peak > ceiling:
        gain *= ceiling / peak
    return (arr * gain).astype(np.float32)


def normalize_peak(wav: np.ndarray, peak_dbfs: float = -1.0) -> np.ndarray:
    """Scale so the absolute peak is `peak_dbfs`."""
    arr = check_audio(wav, "audio")
    return (arr * (10 ** (peak_dbfs / 20.0) / float(np.max(np.abs(arr))))).astype(np.float32)
