"""Measure a latency table for an evolvable SVC pipeline on a target (LHQ-SVC §III.A).

The architecture search predicts the latency of the deployed on-device path — content, F0,
conditioning, **one** decoder evaluation (the distilled student), vocoder — as

    latency(A) = base + Σ_{b ∈ A} block(kind(b))

where ``block(kind)`` is one block of that kind exported on its own and ``base`` is the rest of
the pipeline, both at the run's shapes (one chunk of audio) and precision. ``base`` is measured
as the pipeline reduced to its first block minus that block alone: with no block at all, the
decoder of a one-step graph would be computed from the fixed noise only and folded into a
constant at export, which would hide its cost. Each probe is exported to ``.pte`` (XNNPACK;
int8 probes are calibrated on the activations a real clip produces at that point of the model)
and timed with
:func:`device_bench.api.measure` on the target — the ExecuTorch runtime on the host
(``host[:threads=N]``) or a phone (``adb:SERIAL``). :func:`validate` then measures a whole
architecture and records the prediction error.

Probes are timed, never deployed: they are written with a gate that records parity but does not
reject (an untrained or partial graph can legitimately fail the int8 SQNR floor).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from compress.latency_table import LatencyStats, LatencyTable, key_of
from export.calibration import CalibrationSet
from export.parity import GateConfig

log = logging.getLogger(__name__)

PROBE_GATE = GateConfig(fp32_rel_tol=1e6, int8_min_sqnr_db=-1e6, min_stoi=0.0, check_stoi=False)
BASE = "base"
CALIBRATION = "calibration"


def model_tag(model: Any) -> str:
    """A short hash of the pipeline's size configuration (not its architecture or step count).

    Table keys carry it, so a table measured for one model size is never used for another.
    """
    skip = ("architecture", "speakers", "device_steps", "skip_prob")
    cfg = {k: v for k, v in dict(model.config).items() if k not in skip}
    blob = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def kind_key(kind: str, tag: str) -> str:
    return f"{kind}@{tag}"


def with_device_steps(model: Any, steps: int) -> nn.Module:
    """Set the number of sampler steps the exported on-device graph takes (in place)."""
    model.device_steps = int(steps)  # the pipeline's config (and checkpoints) follow it
    return model


def only_block(model: Any, index: int) -> nn.Module:
    """A copy of the pipeline whose decoder keeps only block `index`."""
    one = copy.deepcopy(model)
    keep = one.decoder.blocks[index]
    del one.decoder.blocks[:]
    one.decoder.blocks.append(keep)
    return one.eval()


def difference(a: LatencyStats, b: LatencyStats) -> LatencyStats:
    """``a - b`` statistic by statistic (the base entry from two measurements)."""
    return LatencyStats(p50_ms=a.p50_ms - b.p50_ms, mean_ms=a.mean_ms - b.mean_ms,
                        min_ms=a.min_ms - b.min_ms, p90_ms=a.p90_ms - b.p90_ms,
                        n=min(a.n, b.n))


class BlockProbe(nn.Module):
    """One decoder block as a model: ``(h (1, C, F), temb (1, E), cond (1, D, F)) -> h``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, h: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.block(h, temb, cond)


@torch.no_grad()
def block_inputs(
    model: Any, inputs: Sequence[torch.Tensor]
) -> list[tuple[torch.Tensor, ...]]:
    """The ``(h, temb, cond)`` each block of `model` receives in its one-step on-device graph."""
    model.eval()
    audio, speaker, shift = inputs
    cond, _ = model.features(audio, speaker, shift)  # (1, D, F)
    n = cond.shape[-1]
    z = model.device_latent(n)  # (1, M, F)
    dec = model.decoder
    h, temb, cond = dec.stem(z, torch.ones(1), cond)  # (1, C, F), (1, E), (1, D, F)
    out: list[tuple[torch.Tensor, ...]] = []
    for block in dec.blocks:
        out.append((h.clone(), temb.clone(), cond.clone()))
        h = block(h, temb, cond)
    return out


Samples = Callable[[Path, tuple[torch.Tensor, ...]], list[float]]


def export_probe(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    calibration: list[tuple[torch.Tensor, ...]],
    precision: str,
    name: str,
    out_dir: Path,
    keep_fp32: Sequence[str] = (),
    only_modules: Sequence[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export one probe to ``.pte`` (recorded parity, no gate); its path and details."""
    from export.pte import export_pte

    res = export_pte(
        module,
        inputs,
        out_dir,
        name,
        precision=precision,
        calibration=CalibrationSet(list(calibration), {"kind": "real clip activations"})
        if precision == "int8"
        else None,
        gate=PROBE_GATE,
        keep_fp32=keep_fp32,
        only_modules=only_modules if precision == "int8" else None,
    )
    path = Path(str(res.path))
    return path, {"pte": str(path), "size_bytes": path.stat().st_size,
                  "parity_sqnr_db": res.parity.get("sqnr_db")}


def measure_rounds(
    jobs: dict[str, tuple[Path, tuple[torch.Tensor, ...]]], samples_fn: Samples, rounds: int
) -> dict[str, LatencyStats]:
    """Time every job `rounds` times, interleaved (job A, B, C, A, B, C, ...), and pool each
    job's samples: a slow spell of a shared machine then hits all jobs alike instead of one."""
    pooled: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(max(1, rounds)):
        for k, (pte, inputs) in jobs.items():
            pooled[k] += samples_fn(pte, inputs)
    return {k: LatencyStats.from_samples(v) for k, v in pooled.items()}


def bench_samples_fn(
    target: str, threads: int, warmup: int, iterations: int, work: Path
) -> Samples:
    """``(pte, inputs) -> latency samples (ms)`` via :func:`device_bench.api.measure`."""
    from device_bench.api import measure
    from device_bench.protocol import write_input_file

    def fn(pte: Path, inputs: tuple[torch.Tensor, ...]) -> list[float]:
        raw = write_input_file(inputs, pte.with_suffix(".inputs.raw"))
        res = measure(pte, target, warmup=warmup, iterations=iterations, threads=threads,
                      input_file=raw, out_dir=work / "bench_raw").to_dict()
        return [float(x) for r in res["repeats"] for x in r.get("latencies_ms", [])]

    return fn


def measure_table(
    model: Any,
    inputs: tuple[torch.Tensor, ...],
    calibration: list[tuple[torch.Tensor, ...]],
    *,
    target: str,
    fingerprint: dict[str, Any],
    precisions: Sequence[str],
    out_dir: Path,
    samples_fn: Samples,
    rounds: int = 3,
    keep_fp32: Sequence[str] = (),
    only_modules: Sequence[str] | None = None,
    whole: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[LatencyTable, dict[str, Any], LatencyStats | None]:
    """Measure ``base`` and one block of every kind in `model` at `inputs`' shapes.

    `model` is an SVC pipeline set to one device step; `calibration` are real-clip input
    tuples. With `whole` (a precision), the whole model is exported too and timed in the same
    interleaved rounds (for validation). Returns the table, per-probe details and the whole
    model's statistics (or None).
    """
    tag = model_tag(model)
    table = LatencyTable(target, fingerprint)
    details: dict[str, Any] = {}
    first = 0
    base = only_block(model, first)
    shape = [int(s) for s in inputs[0].shape]
    kinds: dict[str, int] = {}
    for i, k in enumerate(model.architecture):
        kinds.setdefault(k, i)
    per_block = block_inputs(model, inputs)
    calib_blocks = [block_inputs(model, c) for c in calibration]
    jobs: dict[str, tuple[Path, tuple[torch.Tensor, ...]]] = {}
    for precision in precisions:
        if progress:
            progress(f"export base {precision}")
        path, details[f"base|{precision}"] = export_probe(
            base, inputs, calibration, precision, f"probe-base-{precision}", out_dir,
            keep_fp32, only_modules)
        jobs[f"base|{precision}"] = (path, inputs)
        for kind, idx in kinds.items():
            if progress:
                progress(f"export {kind} {precision}")
            probe = BlockProbe(copy.deepcopy(model.decoder.blocks[idx])).eval()
            path, details[f"{kind}|{precision}"] = export_probe(
                probe, per_block[idx], [cb[idx] for cb in calib_blocks], precision,
                f"probe-{kind}-{precision}", out_dir)
            jobs[f"{kind}|{precision}"] = (path, per_block[idx])
    if whole is not None:
        if progress:
            progress(f"export whole {whole}")
        path, details["whole"] = export_probe(model, inputs, calibration, whole,
                                              "probe-whole-teacher", out_dir, keep_fp32,
                                              only_modules)
        jobs["whole"] = (path, inputs)
    if progress:
        progress(f"timing {len(jobs)} programs on {target}, {rounds} interleaved rounds")
    stats = measure_rounds(jobs, samples_fn, rounds)
    first_kind = model.architecture[first]
    for precision in precisions:
        for kind in kinds:
            table.add(kind_key(kind, tag), shape, precision, stats[f"{kind}|{precision}"])
        table.add(kind_key(BASE, tag), shape, precision,
                  difference(stats[f"base|{precision}"], stats[f"{first_kind}|{precision}"]))
        details[f"base|{precision}"]["base_from"] = (
            f"one-{first_kind}-block pipeline minus the block"
        )
    return table, details, stats.get("whole")


def predictor(
    table: LatencyTable, model: Any, shape: Sequence[int], precision: str,
    calibrated: bool = True,
) -> Callable[[list[str]], float]:
    """``architecture -> predicted ms`` for `model`'s size from `table`.

    With `calibrated` and a ``calibration`` entry in the table (:func:`calibrate`), its
    constant is added: what the whole-model measurement showed the sum of parts to miss.
    """
    tag = model_tag(model)
    offset = 0.0
    key = key_of(kind_key(CALIBRATION, tag), shape, precision)
    if calibrated and key in table.entries:
        offset = table.entries[key].p50_ms

    def predict(architecture: list[str]) -> float:
        if not architecture:
            raise CompressError("latency: an architecture needs at least one block")
        blocks = [(kind_key(k, tag), shape) for k in architecture]
        return table.predict(blocks, precision, base=kind_key(BASE, tag)) + offset

    return predict


def calibrate(table: LatencyTable, model: Any, shape: Sequence[int], precision: str,
              measured: LatencyStats, architecture: list[str]) -> float:
    """Store ``measured - Σ parts`` for one whole architecture as the table's calibration
    constant (the per-call and boundary costs the isolated probes do not see); return it.

    Predictions of *other* architectures are then checked against their own measurements.
    """
    raw = predictor(table, model, shape, precision, calibrated=False)(architecture)
    delta = measured.p50_ms - raw
    table.add(kind_key(CALIBRATION, model_tag(model)), shape, precision,
              LatencyStats(p50_ms=delta, mean_ms=measured.mean_ms - raw,
                           min_ms=measured.min_ms - raw, p90_ms=measured.p90_ms - raw,
                           n=measured.n))
    return delta
