"""Speech-to-singing inference: speech + target melody → sung waveform (Parekh et al. 2020).

:func:`sing` chains the paper's steps for one input:

1. **§2.1 pre-processing** (:func:`models.sts.preprocess.prepare`): silent frames removed,
   the speech time-stretched by one uniform phase-vocoder factor to the melody's length (a
   melody much shorter or longer than the speech is fine; the factor is logged and returned),
   ``X = log(1 + |STFT|)`` and the binary melody image ``C``.
2. **§2.2 network**: ``Ŷ = D(E1(X), E2(C))`` (the phoneme logits of P-MTL are not needed).
   An ``nn.Module`` runs on the whole clip at once (:class:`~models.sts.net.StsNet` takes any
   ``T``). An exported ``.pte`` takes a fixed chunk of frames (its ``chunk_frames``), so the
   clip is cut into consecutive chunks, the last one zero-padded, with no overlap, and the
   outputs concatenated. A program with state inputs (the device program of
   :mod:`models.sts.program`: the latent GRU states of E1 and E2, named in its metadata's
   ``state_shapes``) gets zeros for the first chunk and each chunk's returned states for the
   next, so the GRUs see the clip so far; the instance norms and the convolutions still see
   one chunk, and chunk edges are not crossfaded: an approximation of the whole-clip run
   (:mod:`models.sts.program` gives the measured difference). Programs exported before the
   states were explicit (two inputs) run each chunk from scratch.
3. **§2.4 synthesis** (:func:`models.sts.synthesis.griffin_lim`): ``g(x) = e^x - 1``, the
   magnitudes raised to 1.2, Griffin-Lim, 16 kHz; or, beyond the paper (``render="vocoder"``,
   :mod:`models.sts.vocode`), the harmonic-plus-noise vocoder with the network's spectrogram
   as the envelope and the melody's F0 as the source.

:func:`load_sts` opens a checkpoint (through the registry) or a ``.pte``; :func:`melody_rca`
is §3.1's raw chroma accuracy of the output's pYIN contour against the melody.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.sts import StsError
from models.sts.melody import Melody
from models.sts.preprocess import HOP, N_FFT, SAMPLE_RATE, prepare
from models.sts.synthesis import N_ITER, griffin_lim

logger = logging.getLogger(__name__)

FAMILY = "sts"
#: stretch factors outside [1 / FAR, FAR] get a note that the result sounds slowed / hurried
FAR_STRETCH = 2.0


class StsProgram:
    """An exported speech-to-singing ``.pte`` (or any callable ``runner(x, c, *state) ->
    [y, *state_out, ...]``) that takes ``(1, 513, frames)`` inputs.

    `frames` None means the program takes any length (a dynamic export): one call per clip.
    `state_shapes` are the shapes of the program's state inputs after ``x, c`` (None: read from
    ``meta["state_shapes"]``, a JSON list, as :class:`~models.sts.program.StsDeviceProgram`
    writes it; none there: a program of two inputs): zeros go into the first chunk, and each
    chunk's returned states (the outputs after ``y``) into the next.
    """

    def __init__(self, runner: Callable[..., Any], frames: int | None, path: str = "",
                 meta: dict[str, Any] | None = None,
                 state_shapes: list[tuple[int, ...]] | None = None):
        if frames is not None and int(frames) < 1:
            raise StsError(f"{path or 'program'}: chunk_frames={frames}; must be >= 1")
        self.runner = runner
        self.frames = int(frames) if frames is not None else None
        self.path = path
        self.meta = dict(meta or {})
        if state_shapes is None:
            state_shapes = _meta_state_shapes(self.meta, path)
        self.state_shapes = [tuple(int(d) for d in s) for s in state_shapes]

    def __repr__(self) -> str:
        return (f"StsProgram({self.path or self.runner!r}, frames={self.frames}, "
                f"states={len(self.state_shapes)})")

    def initial_state(self) -> list[torch.Tensor]:
        """The states before the first chunk: zeros."""
        return [torch.zeros(s) for s in self.state_shapes]

    def _call(self, x: torch.Tensor, c: torch.Tensor, state: list[torch.Tensor]
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.runner(x.contiguous(), c.contiguous(), *state)
        outs = list(out) if isinstance(out, list | tuple) else [out]
        y = torch.as_tensor(outs[0])
        if not state:
            return y, state
        new = [torch.as_tensor(s).detach().contiguous() for s in outs[1:1 + len(state)]]
        got = [tuple(s.shape) for s in new]
        if got != self.state_shapes:
            raise StsError(f"{self.path or 'program'}: returned states of shapes {got}; "
                           f"expected {self.state_shapes}")
        return y, new

    def run(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(Ŷ (1, F, T), number of program calls)`` for ``(1, F, T)`` inputs: fixed chunks,
        the last zero-padded (silence in ``X``, no melody in ``C``), no overlap, the states
        carried from chunk to chunk, outputs concatenated and cropped to ``T``."""
        t = int(x.shape[-1])
        state = self.initial_state()
        if self.frames is None:
            return self._call(x, c, state)[0][..., :t], 1
        n = self.frames
        chunks = -(-t // n)
        pad = chunks * n - t
        if pad:
            x = torch.cat([x, x.new_zeros(*x.shape[:-1], pad)], dim=-1)
            c = torch.cat([c, c.new_zeros(*c.shape[:-1], pad)], dim=-1)
        outs = []
        for i in range(chunks):
            y, state = self._call(x[..., i * n:(i + 1) * n], c[..., i * n:(i + 1) * n], state)
            if tuple(y.shape[-2:]) != (int(x.shape[-2]), n):
                raise StsError(f"{self.path or 'program'}: returned shape {tuple(y.shape)} for "
                               f"a chunk of {n} frames; expected (1, {x.shape[-2]}, {n})")
            outs.append(y)
        return torch.cat(outs, dim=-1)[..., :t], chunks


def _meta_state_shapes(meta: dict[str, Any], path: str) -> list[tuple[int, ...]]:
    """The state shapes a program's metadata gives (``state_shapes``, a JSON list of shapes);
    none for a program without states."""
    raw = meta.get("state_shapes")
    if raw is None:
        return []
    try:
        shapes = json.loads(raw) if isinstance(raw, str) else raw
        return [tuple(int(d) for d in s) for s in shapes]
    except (TypeError, ValueError):
        raise StsError(f"{path or 'program'}: metadata state_shapes={raw!r} is not a list of "
                       "shapes; re-export it with `compress export`") from None


def load_sts(path: str | os.PathLike[str]) -> torch.nn.Module | StsProgram:
    """A speech-to-singing model: a checkpoint (``.safetensors`` file or its directory) rebuilt
    through the registry, in eval mode, or a ``.pte`` as an :class:`StsProgram`.

    Raises
    ------
    StsError
        A model of another family, a ``.pte`` that cannot be loaded or has no chunk length.
    models.errors.CheckpointError
        A missing, corrupt or unreadable checkpoint.
    """
    text = str(path)
    if text.endswith(".pte"):
        return _load_program(Path(text))
    from models import registry
    from models.checkpoint import load_model, read_header, resolve_path
    from models.errors import CheckpointError, ModelsError

    header = read_header(path)
    try:
        family = registry.get(header.model).family
    except ModelsError as exc:
        raise CheckpointError(f"checkpoint {resolve_path(path)}: {exc}") from None
    if family != FAMILY:
        raise StsError(f"{path} is a {family} checkpoint ({header.model}); compress sing needs "
                       "a speech-to-singing model (sts-*)")
    model, _ = load_model(path)
    if header.config.get("autoencoder"):
        logger.warning("%s is the singing autoencoder of §3.1 (trained on singing as input); "
                       "its output from speech is not a conversion", path)
    return model.eval()


def _load_program(p: Path) -> StsProgram:
    from export.errors import ExportError
    from export.runtime import PteRunner, load_pte_metadata

    if not p.is_file():
        raise StsError(f"{p}: no such program file")
    try:
        meta = load_pte_metadata(p)
        runner = PteRunner(p)
    except ExportError as exc:
        raise StsError(f"{p}: not a loadable ExecuTorch program ({exc})") from None
    family = meta.get("family", "?")
    if family != FAMILY:
        raise StsError(f"{p} is a {family} program; compress sing needs a speech-to-singing "
                       "model (sts-*)")
    if meta.get("dynamic_length"):
        return StsProgram(runner, None, str(p), meta)
    if "chunk_frames" not in meta:
        raise StsError(f"{p}: the program's metadata has no chunk_frames; re-export it with "
                       "`compress export`")
    return StsProgram(runner, int(meta["chunk_frames"]), str(p), meta)


def run_network(model: torch.nn.Module | StsProgram, x: np.ndarray, c: np.ndarray
                ) -> tuple[np.ndarray, int]:
    """``(Ŷ (F, T) float32, calls)``: the network of §2.2 on ``X``, ``C`` (both ``(F, T)``);
    whole for a module, in fixed chunks for a program (:meth:`StsProgram.run`)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)
    ct = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32)).unsqueeze(0)
    with torch.inference_mode():
        if isinstance(model, StsProgram):
            y, calls = model.run(xt, ct)
        else:
            out = model(xt, ct)
            y, calls = (out[0] if isinstance(out, tuple | list) else out), 1
    y = y.detach().float().cpu()
    if tuple(y.shape) != (1, *x.shape):
        raise StsError(f"the network returned shape {tuple(y.shape)}; expected "
                       f"(1, {x.shape[0]}, {x.shape[1]})")
    out_np = y[0].numpy()
    if not np.all(np.isfinite(out_np)):
        raise StsError("the network's output contains NaN/Inf; check the checkpoint")
    return out_np, calls


def sing(
    model: torch.nn.Module | StsProgram,
    speech: np.ndarray,
    melody: Melody,
    gl_iters: int = N_ITER,
    log: Callable[[str], None] | None = None,
    render: str = "griffin-lim",
    vocoder: torch.nn.Module | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Sing `speech` (mono float, 16 kHz) to `melody`: ``(wav, info)``, §2.1 → §2.2 → §2.4.

    The output lasts ``(T - 1) * HOP`` samples for a melody of ``T`` frames
    (:attr:`Melody.seconds`), whatever the speech's length: the speech (silences removed) is
    stretched by one factor, which is logged in one line through `log` (default: this module's
    logger at INFO) and returned as ``info["stretch_factor"]``.

    ``info`` holds ``stretch_factor``, ``removed_seconds`` (silence cut out), ``speech_seconds``,
    ``seconds`` (output), ``frames`` (``T``), ``network_calls`` (1, or the ``.pte`` chunks),
    ``chunk_frames`` (None for a module), ``gl_iters``, ``render`` and ``melody`` (its
    description).

    ``render``: ``"griffin-lim"`` (§2.4) or ``"vocoder"``: `vocoder` (default: the DSP one of
    :func:`models.sts.vocode.load_vocoder`) sings the network's spectrogram at the melody's F0.

    Raises
    ------
    StsError
        Empty / silent / too short speech, a melody without voiced frames or shorter than two
        frames, bad `gl_iters` or `render`, or a network output of the wrong shape.
    """
    from models.sts.vocode import RENDERS, load_vocoder, render_vocoder

    say = log or logger.info
    if render not in RENDERS:
        raise StsError(f"render={render!r}; choose one of {', '.join(RENDERS)}")
    if int(gl_iters) < 1:
        raise StsError(f"gl_iters={gl_iters}; Griffin-Lim needs at least 1 iteration")
    speech = np.asarray(speech)
    if speech.ndim != 1:
        raise StsError(f"speech: expected a mono signal of shape (n,), got shape {speech.shape}")
    if melody.f0.ndim != 1 or melody.n_frames < 2:
        raise StsError(f"{melody.path or 'melody'}: {melody.n_frames} frame(s); need at least 2 "
                       f"({HOP}-sample hop)")
    prepared = prepare(speech, melody.f0, sr=SAMPLE_RATE)
    speech_s = speech.size / SAMPLE_RATE
    kept_s = speech_s - prepared.removed_seconds
    factor = float(prepared.stretch_factor)
    note = ""
    if factor > FAR_STRETCH:
        note = " (much slower than spoken)"
    elif factor < 1.0 / FAR_STRETCH:
        note = " (much faster than spoken)"
    say(f"stretching {kept_s:.2f} s of speech ({prepared.removed_seconds:.2f} s of silence "
        f"removed) to the melody's {melody.seconds:.2f} s: stretch factor {factor:.2f}{note}")
    y, calls = run_network(model, prepared.x, prepared.c)
    n_out = (melody.n_frames - 1) * HOP
    if render == "vocoder":
        wav = render_vocoder(y, melody.f0, vocoder if vocoder is not None else load_vocoder(),
                             length=n_out)
    else:
        wav = griffin_lim(y, n_iter=int(gl_iters), length=n_out)
    info: dict[str, Any] = {
        "stretch_factor": factor,
        "removed_seconds": float(prepared.removed_seconds),
        "speech_seconds": float(speech_s),
        "seconds": n_out / SAMPLE_RATE,
        "frames": melody.n_frames,
        "network_calls": calls,
        "chunk_frames": model.frames if isinstance(model, StsProgram) else None,
        "gl_iters": int(gl_iters),
        "render": render,
        "melody": melody.description,
    }
    return wav, info


def melody_rca(wav: np.ndarray, melody: Melody) -> float:
    """Raw chroma accuracy (§3.1, [26]) of `wav`'s pYIN F0 against `melody`: the fraction of
    the melody's voiced frames whose sung pitch is within 50 cents modulo an octave.

    NaN when `wav` is shorter than one 1024-sample analysis window.
    """
    from models.sts.metrics import pyin_f0, raw_chroma_accuracy

    x = np.asarray(wav, dtype=np.float32)
    if x.ndim != 1 or x.size < N_FFT:
        return float("nan")
    times, f0 = pyin_f0(x, sr=SAMPLE_RATE)
    return raw_chroma_accuracy(melody.times, melody.f0, times, f0)
