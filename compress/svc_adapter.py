"""Exported or quantized SVC graphs seen as pipelines, so :mod:`compress.scores` can score them.

The on-device graph of an :class:`~models.lhq_svc.pipeline.SVCPipeline` takes one fixed-length
chunk: ``(audio (1, T), speaker (1,), shift (1,)) -> audio (1, T)``. :class:`ChunkedSVC` wraps
any such callable — an ExecuTorch program (:class:`export.runtime.PteRunner`), a PT2E-converted
graph, the eager module — and converts inputs of any length the way an app does: chunks of T
samples overlapping by a quarter chunk, the last chunk zero-padded, joined by a short linear
crossfade (10 ms) at the middle of each overlap, so every kept sample lies at least
``(T/4 - fade) / 2`` from a chunk edge (the zero padding the program's convolutions, F0 tracker
and Griffin-Lim see there). Measured with ``benchmarks/chunk_stitch.py`` on the demo student
(1 s chunks, 6 held-out 4 s conversions): sim_stoi 0.766 with a linear fade over the whole
overlap, 0.791 with the 10 ms fade at its middle, 0.799 converting the clip in one call. Its
fingerprint (for the score cache) is a hash of a caller-given tag, e.g. the ``.pte`` sha256.

"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.errors import CompressError

Graph = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]


def _first(out: Any) -> torch.Tensor:
    if isinstance(out, list | tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise CompressError(f"the SVC graph returned {type(out).__name__}, expected a tensor")
    return out


class ChunkedSVC(nn.Module):
    """A fixed-chunk SVC graph with the ``convert_long`` / ``speaker_index`` of a pipeline."""

    tag: torch.Tensor

    def __init__(
        self,
        graph: Graph,
        chunk_samples: int,
        speakers: Sequence[str],
        sample_rate: int,
        tag: str,
        fade_seconds: float = 0.01,
    ) -> None:
        super().__init__()
        if chunk_samples < 4:
            raise CompressError(f"chunk_samples must be >= 4, got {chunk_samples}")
        if not fade_seconds > 0:
            raise CompressError(f"fade_seconds must be > 0, got {fade_seconds}")
        self.fade_seconds = float(fade_seconds)
        # kept outside the module tree: eval() / state_dict() must not reach into the graph
        object.__setattr__(self, "graph", graph)
        self.chunk = int(chunk_samples)
        self.speakers = list(speakers)
        self.sample_rate = int(sample_rate)
        digest = hashlib.sha256(f"{tag}|fade={self.fade_seconds}".encode()).digest()[:16]
        self.register_buffer("tag", torch.tensor(list(digest), dtype=torch.uint8))

    def speaker_index(self, name: str) -> int:
        if name not in self.speakers:
            raise KeyError(f"unknown speaker {name!r}; valid: {', '.join(self.speakers)}")
        return self.speakers.index(name)

    @torch.no_grad()
    def run_chunk(self, audio: np.ndarray, speaker: int, shift: float) -> np.ndarray:
        """One call of the graph on exactly `chunk` samples (zero-padded when shorter)."""
        x = np.zeros(self.chunk, dtype=np.float32)
        n = min(len(audio), self.chunk)
        x[:n] = audio[:n]
        out = _first(self.graph(torch.from_numpy(x).unsqueeze(0),
                                torch.tensor([speaker], dtype=torch.long),
                                torch.tensor([float(shift)])))
        return out.reshape(-1).detach().float().numpy()[:n]

    @torch.no_grad()
    def convert_long(
        self, audio: Any, speaker: int, shift: float = 0.0,
        progress: Callable[[int, int], None] | None = None, **_: Any
    ) -> np.ndarray:
        """Convert `audio` (T,) chunk by chunk: chunks overlap by a quarter chunk and are
        joined by a ``fade_seconds`` linear crossfade centred in the overlap (each chunk's
        outer edges are dropped). Sampler arguments of :meth:`SVCPipeline.convert_long` are
        accepted and ignored: the graph has its sampler baked in. ``progress(done, total)``
        is called after each chunk when given.
        """
        wav = np.asarray(audio, dtype=np.float32).reshape(-1)
        total = len(wav)
        if total <= self.chunk:
            y = self.run_chunk(wav, speaker, shift)
            if progress is not None:
                progress(1, 1)
            return y
        overlap = self.chunk // 4
        step = self.chunk - overlap
        fade_n = min(overlap, max(1, int(round(self.fade_seconds * self.sample_rate))))
        lead = (overlap - fade_n) // 2  # samples of each later chunk's head that are dropped
        fade = np.linspace(0.0, 1.0, fade_n, endpoint=False, dtype=np.float32)
        out = np.zeros(total, dtype=np.float32)
        starts = range(0, total - overlap, step)
        for i, s in enumerate(starts):
            y = self.run_chunk(wav[s : s + self.chunk], speaker, shift)
            if progress is not None:
                progress(i + 1, len(starts))
            if i == 0:
                out[: len(y)] = y
                continue
            # len(y) > overlap >= lead + fade_n; the previous chunk reaches s + overlap
            a = s + lead
            out[a : a + fade_n] = (out[a : a + fade_n] * (1.0 - fade)
                                   + y[lead : lead + fade_n] * fade)
            out[a + fade_n : s + len(y)] = y[lead + fade_n :]
        return out


def load_pte_svc(path: str | Path, threads: int | None = None) -> tuple[ChunkedSVC, dict[str, Any]]:
    """An exported whole-pipeline SVC program (``*-student_*.pte``) as a :class:`ChunkedSVC`,
    with the metadata baked into it: what ``compress convert --model X.pte`` runs, chunked and
    crossfaded exactly as the app does. Singers are named by the program's ``speaker_names``
    (programs exported before names were recorded: ``0``, ``1``, ... by index)."""
    import json

    from export.errors import ExportError
    from export.runtime import PteRunner, load_pte_metadata

    p = Path(path)
    if not p.is_file():
        raise CompressError(f"{p}: no such program file")
    try:
        meta = load_pte_metadata(p)
        runner = PteRunner(p, threads=threads)
    except ExportError as exc:
        raise CompressError(f"{p}: not a loadable ExecuTorch program ({exc})") from None
    if meta.get("family") != "lhq-svc" or meta.get("component") != "pipeline":
        raise CompressError(
            f"{p}: holds {meta.get('family', '?')}/{meta.get('component', '?')}, not a whole "
            "LHQ-SVC pipeline; convert with the *-student_<backend>_<precision>.pte of the run"
        )
    if meta.get("dynamic_length"):
        raise CompressError(f"{p}: a dynamic-length program; convert expects a fixed chunk")
    try:
        chunk, sr, n_spk = (int(meta[k]) for k in ("chunk_frames", "sample_rate", "speakers"))
    except (KeyError, TypeError, ValueError):
        raise CompressError(f"{p}: metadata lacks chunk_frames / sample_rate / speakers") from None
    names = json.loads(meta["speaker_names"]) if meta.get("speaker_names") else None
    speakers = [str(n) for n in names] if names else [str(i) for i in range(n_spk)]
    sha = hashlib.sha256(runner.data).hexdigest()
    return ChunkedSVC(runner, chunk, speakers, sr, f"pte:{sha}"), meta
