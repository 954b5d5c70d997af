"""Parity between an exported program and eager PyTorch, and the gate that guards every file.

Three figures, each computed per output tensor over all parity inputs:

* **max-abs error** ``max |y - ŷ|`` and the output's **scale** ``max |y|``; an fp32 export passes
  when ``max_abs <= fp32_rel_tol * scale`` (default 1e-4 of the scale);
* **SQNR** (signal-to-quantization-noise ratio, dB) ``10 log10(Σ y² / Σ (y - ŷ)²)``; an int8 export
  passes when it is at least ``int8_min_sqnr_db`` (default 20 dB) against fp32 eager;
* **STOI** (Taal et al. 2011) of the exported output against the eager output, for models whose
  output is audio; passes when ``>= min_stoi`` (default 0.95). STOI needs about a second of
  audio; shorter outputs are reported as not measured (with the reason), never as passed.

:func:`evaluate_gate` turns the figures into a :class:`ParityReport`;
:meth:`ParityReport.raise_if_failed` raises :class:`~export.errors.ParityError`, which says
which check failed and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from export.errors import ExportError, ParityError

PRECISIONS = ("fp32", "int8")
# STOI (pystoi) works on 10 kHz audio in 384 ms frames; below ~1 s it is not meaningful.
STOI_MIN_SECONDS = 1.0


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the parity gate.

    Args:
        fp32_rel_tol: fp32 passes when max-abs error <= this × the output's scale (max |ref|).
        int8_min_sqnr_db: int8 passes when SQNR against fp32 eager is at least this many dB.
        min_stoi: audio-output models pass when STOI(exported, eager) is at least this.
        check_stoi: compute STOI for audio outputs (needs ``audio_sample_rate``).
        abs_floor: tolerance floor for outputs whose scale is ~0 (all-zero references).
    """

    fp32_rel_tol: float = 1e-4
    int8_min_sqnr_db: float = 20.0
    min_stoi: float = 0.95
    check_stoi: bool = True
    abs_floor: float = 1e-7

    def __post_init__(self) -> None:
        if not (self.fp32_rel_tol > 0 and math.isfinite(self.fp32_rel_tol)):
            raise ExportError(f"fp32_rel_tol must be a positive number, got {self.fp32_rel_tol}")
        if not math.isfinite(self.int8_min_sqnr_db):
            raise ExportError(f"int8_min_sqnr_db must be finite, got {self.int8_min_sqnr_db}")
        if not 0.0 <= self.min_stoi <= 1.0:
            raise ExportError(f"min_stoi must be in [0, 1], got {self.min_stoi}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "fp32_rel_tol": self.fp32_rel_tol,
            "int8_min_sqnr_db": self.int8_min_sqnr_db,
            "min_stoi": self.min_stoi,
            "check_stoi": self.check_stoi,
        }


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """Flatten a model output (tensor, tuple / list / dict of tensors) into a list of tensors."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, np.ndarray):
        return [torch.from_numpy(np.ascontiguousarray(out))]
    if isinstance(out, (list, tuple)):
        flat: list[torch.Tensor] = []
        for item in out:
            flat.extend(flatten_outputs(item))
        return flat
    if isinstance(out, Mapping):
        flat = []
        for key in out:
            flat.extend(flatten_outputs(out[key]))
        return flat
    raise ExportError(
        f"model output of type {type(out).__name__} is not supported; expected a tensor or a "
        "tuple / list / dict of tensors"
    )


def max_abs_error(ref: torch.Tensor, test: torch.Tensor) -> float:
    """``max |ref - test|`` (shapes must match)."""
    _check_same_shape(ref, test)
    if ref.numel() == 0:
        return 0.0
    return float((ref.double() - test.double()).abs().max())


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """SQNR in dB of `test` against `ref`: ``10 log10(Σ ref² / Σ (ref - test)²)``.

    The one SQNR of the project (``compress.quantize`` uses it too). ``inf`` when the two are
    equal, ``-inf`` when `ref` is all zeros and `test` is not, and NaN — "not measurable" — when
    either holds NaN or inf (callers decide what that means: the gate fails, the int8 planner
    keeps the group fp32).
    """
    _check_same_shape(ref, test)
    r = ref.double()
    t = test.double()
    if not (bool(torch.isfinite(r).all()) and bool(torch.isfinite(t).all())):
        return math.nan
    noise = float(((r - t) ** 2).sum())
    signal = float((r**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def stoi(ref: np.ndarray, test: np.ndarray, sample_rate: int) -> float:
    """STOI of `test` against `ref` (float arrays at `sample_rate`, flattened) for the gate.

    :func:`models.metrics.stoi` with the gate's rules: lengths must be equal
    (:class:`~export.errors.ExportError`), and NaN / inf samples give NaN — a failed check in
    :func:`evaluate_gate`, which reports the non-finite output separately — rather than an
    error.
    """
    from models import metrics

    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    test = np.asarray(test, dtype=np.float64).reshape(-1)
    if ref.shape != test.shape:
        raise ExportError(f"STOI needs equal lengths, got {ref.shape} and {test.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(test).all()):
        return math.nan
    return metrics.stoi(ref, test, sample_rate)


def _check_same_shape(ref: torch.Tensor, test: torch.Tensor) -> None:
    if tuple(ref.shape) != tuple(test.shape):
        raise ParityError(
            f"exported output shape {tuple(test.shape)} differs from eager {tuple(ref.shape)}"
        )


@dataclass
class OutputParity:
    """Figures of one output tensor over all parity inputs."""

    index: int
    shape: tuple[int, ...]
    max_abs: float
    scale: float
    sqnr_db: float
    stoi: float | None = None
    stoi_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "shape": list(self.shape),
            "max_abs": self.max_abs,
            "scale": self.scale,
            "rel_error": self.max_abs / self.scale if self.scale > 0 else None,
            "sqnr_db": _finite_or_str(self.sqnr_db),
            "stoi": self.stoi,
            "stoi_note": self.stoi_note,
        }


def _finite_or_str(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


@dataclass
class ParityReport:
    """Result of the parity gate for one exported program."""

    precision: str
    backend: str
    n_inputs: int
    outputs: list[OutputParity]
    gate: GateConfig
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def sqnr_db(self) -> float:
        """The worst (lowest) SQNR over the outputs."""
        return min((o.sqnr_db for o in self.outputs), default=math.inf)

    @property
    def stoi(self) -> float | None:
        vals = [o.stoi for o in self.outputs if o.stoi is not None]
        return min(vals) if vals else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "backend": self.backend,
            "n_inputs": self.n_inputs,
            "passed": self.passed,
            "max_abs": self.max_abs,
            "sqnr_db": _finite_or_str(self.sqnr_db),
            "stoi": self.stoi,
            "gate": self.gate.to_dict(),
            "failures": list(self.failures),
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def summary(self) -> str:
        """One line: ``max-abs 1.2e-07 (scale 0.93), SQNR 131.2 dB, STOI n/a``."""
        s = self.stoi
        stoi_txt = f"{s:.4f}" if s is not None else "n/a"
        scale = max((o.scale for o in self.outputs), default=0.0)
        return (
            f"max-abs {self.max_abs:.3g} (scale {scale:.3g}), "
            f"SQNR {self.sqnr_db:.1f} dB, STOI {stoi_txt}"
        )

    def raise_if_failed(self, what: str) -> None:
        """Raise :class:`ParityError` naming every failed check (nothing has been written)."""
        if self.failures:
            raise ParityError(
                f"{what}: parity gate failed, nothing written: " + "; ".join(self.failures)
            )


def evaluate_gate(
    refs: Sequence[Sequence[torch.Tensor]],
    tests: Sequence[Sequence[torch.Tensor]],
    *,
    precision: str,
    backend: str,
    gate: GateConfig,
    audio_sample_rate: int | None = None,
) -> ParityReport:
    """Compare exported outputs `tests` with eager `refs` (one list of tensors per parity input).

    Args:
        refs: eager fp32 outputs, ``refs[i][k]`` = output k on input i.
        tests: exported outputs in the same layout.
        precision: ``fp32`` (max-abs gate) or ``int8`` (SQNR gate).
        backend: name used in messages (``xnnpack``, ``onnxruntime``, ``litert``).
        gate: thresholds.
        audio_sample_rate: when given, output 0 is audio at this rate and STOI is checked.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if len(refs) != len(tests) or not refs:
        raise ExportError(
            f"need the same non-zero number of outputs, got {len(refs)} / {len(tests)}"
        )
    n_out = len(refs[0])
    for i, (r, t) in enumerate(zip(refs, tests)):
        if len(r) != n_out or len(t) != n_out:
            raise ParityError(
                f"input {i}: exported program returned {len(t)} outputs, eager returned {len(r)}"
            )
    outputs: list[OutputParity] = []
    failures: list[str] = []
    for k in range(n_out):
        pairs = [
            (r[k].detach().float().cpu(), t[k].detach().float().cpu()) for r, t in zip(refs, tests)
        ]
        for i, (ref_k, test_k) in enumerate(pairs):
            if tuple(ref_k.shape) != tuple(test_k.shape):
                failures.append(
                    f"output {k} on input {i}: shape {tuple(test_k.shape)} "
                    f"!= eager {tuple(ref_k.shape)}"
                )
        if failures:
            break
        max_abs = max(max_abs_error(r, t) for r, t in pairs)
        scale = max(float(r.abs().max()) if r.numel() else 0.0 for r, _ in pairs)
        ref_cat = torch.cat([r.reshape(-1) for r, _ in pairs])
        test_cat = torch.cat([t.reshape(-1) for _, t in pairs])
        if not torch.isfinite(test_cat).all():
            failures.append(f"output {k}: exported program produced NaN or inf")
        q = sqnr_db(ref_cat, test_cat)
        op = OutputParity(
            index=k, shape=tuple(pairs[0][0].shape), max_abs=max_abs, scale=scale, sqnr_db=q
        )
        if k == 0 and audio_sample_rate and gate.check_stoi:
            _add_stoi(op, pairs, audio_sample_rate)
        outputs.append(op)
        if precision == "fp32":
            tol = max(gate.fp32_rel_tol * scale, gate.abs_floor)
            if not max_abs <= tol:
                failures.append(
                    f"output {k}: fp32 max-abs error {max_abs:.3g} > allowed {tol:.3g} "
                    f"({gate.fp32_rel_tol:g} × scale {scale:.3g}); "
                    f"{max_abs / tol:.1f}× over the limit"
                )
        elif not q >= gate.int8_min_sqnr_db:
            failures.append(
                f"output {k}: int8 SQNR {q:.2f} dB < floor {gate.int8_min_sqnr_db:g} dB "
                f"(short by {gate.int8_min_sqnr_db - q:.2f} dB)"
            )
        if op.stoi is not None and not op.stoi >= gate.min_stoi:
            failures.append(
                f"output {k}: STOI {op.stoi:.4f} < {gate.min_stoi:g} "
                f"(short by {gate.min_stoi - op.stoi:.4f})"
            )
    return ParityReport(
        precision=precision,
        backend=backend,
        n_inputs=len(refs),
        outputs=outputs,
        gate=gate,
        failures=failures,
    )


def stoi_sample_rate(model: Any, sample_rate: int | None = None) -> int | None:
    """The rate to pass as ``audio_sample_rate`` (turning the gate's STOI check on) for
    `model`: its ``sample_rate`` (or `sample_rate`), unless the model says ``export_stoi =
    False``. Separators do: STOI measures speech intelligibility; it is undefined for an
    accompaniment stem and unreliable for a vocal stem that is silent through most of an
    excerpt (0.72 for the int8 demo MDenseNet whose stems pass the 20 dB SQNR floor). Their
    programs are gated on SQNR and judged by SDR on held-out songs."""
    if not getattr(model, "export_stoi", True):
        return None
    return sample_rate if sample_rate is not None else getattr(model, "sample_rate", None)


def _add_stoi(
    op: OutputParity, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], sample_rate: int
) -> None:
    need = int(STOI_MIN_SECONDS * sample_rate)
    scores: list[float] = []
    for r, t in pairs:
        length = r.shape[-1] if r.ndim else 0
        if length < need:
            continue
        r2 = r.reshape(-1, length).numpy()
        t2 = t.reshape(-1, length).numpy()
        for a, b in zip(r2, t2):
            if float(np.abs(a).max()) == 0.0:
                continue  # silence: STOI undefined
            scores.append(stoi(a, b, sample_rate))
    if scores:
        op.stoi = min(scores)
        op.stoi_note = f"min over {len(scores)} clip(s)"
    else:
        op.stoi_note = (
            f"not measured: audio output shorter than {STOI_MIN_SECONDS:g} s "
            f"({need} samples at {sample_rate} Hz) or silent"
        )


def reference_outputs(
    model: torch.nn.Module, inputs_list: Sequence[Sequence[Any]]
) -> list[list[torch.Tensor]]:
    """Eager fp32 outputs of `model` (in eval mode, no grad) on each input tuple."""
    model.eval()
    refs = []
    with torch.no_grad():
        for inputs in inputs_list:
            refs.append([t.detach().clone() for t in flatten_outputs(model(*inputs))])
    return refs
