"""A latency table of the shipped program, unit by unit, at its positions, shapes and precision.

The search (LHQ-SVC §III.A, SnapFusion §3) values thousands of architectures; measuring each
whole program is too slow, so — as SnapFusion does — the parts are measured once on the target
and an architecture's latency is predicted from them. Here the parts are those of the *whole*
on-device path a recipe describes:

* a **segment** per component (content encoder, conditioner, decoder, vocoder, ...): the
  component's module exported alone, with the inputs it receives inside the device program,
  at the teacher's architecture and at each width its width units can be narrowed to
  (``width_steps`` narrowings, one axis at a time);
* a **layer** per (unit kind, width): one unit (a residual layer, a decoder block, a
  Griffin-Lim iteration) exported alone with the inputs it receives at its position;
* the **whole** teacher program, timed in the same interleaved rounds.

Every probe is exported at the precision its component ships with (the run's precision plan:
int8 where the plan quantizes, fp32 where it keeps fp32) and timed with
:func:`device_bench.api.measure` on the run's target. For a model M, component c with width
axes a and layer kinds k (``n_k`` units of kind k, teacher T):

    comp_c(M) = seg_c(T) + Σ_a [seg_c(a = w_a(M)) - seg_c(T)]
              + Σ_k (n_k(M) - n_k(T)) · layer_k(w(M))
    lat(M)    = whole(T) + Σ_c [comp_c(M) - seg_c(T)]

where a layer's cost is its probe minus a companion probe that only passes its input through
(calling a program — launch, input copy, int8 boundary conversions — is paid once by the whole
program, not by each layer inside it). The prediction is exact for the teacher and the error on
any other architecture is what the additive model misses; :func:`validate` measures it on
whole programs (the bench stage checks the shipped student). A width beyond the measured
grid is unpredictable (:class:`CompressError`), and the search skips that candidate.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from compress.latency_table import LatencyStats, LatencyTable
from compress.recipes.base import Action, Inputs, Recipe
from export.calibration import CalibrationSet
from export.parity import GateConfig
from models.units import Unit

log = logging.getLogger(__name__)

PROBE_GATE = GateConfig(fp32_rel_tol=1e6, int8_min_sqnr_db=-1e6, min_stoi=0.0, check_stoi=False)
WHOLE = "whole"
Samples = Callable[[Path, Inputs], list[float]]


# ---- capturing what each part receives inside the program -----------------------------------
class Bound(nn.Module):
    """`module` called with its captured arguments; only the tensors are inputs.

    Non-tensor arguments (None, ints, flags) are bound as constants, so the probe exports with
    the same signature whatever the part's own ``forward`` looks like.
    """

    def __init__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
        super().__init__()
        self.part = module
        self._args = args
        self._kwargs = kwargs
        self._slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        self._kslots = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]

    def inputs(self) -> Inputs:
        return tuple([self._args[i] for i in self._slots]
                     + [self._kwargs[k] for k in self._kslots])

    def forward(self, *tensors: torch.Tensor) -> Any:
        args = list(self._args)
        for i, t in zip(self._slots, tensors):
            args[i] = t
        kw = dict(self._kwargs)
        for k, t in zip(self._kslots, tensors[len(self._slots):]):
            kw[k] = t
        return self.part(*args, **kw)


@torch.no_grad()
def capture(program: nn.Module, root: nn.Module, paths: Sequence[str],
            inputs: Sequence[Inputs]) -> dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]]:
    """The arguments each submodule ``root.get_submodule(path)`` receives on its first call
    while `program` runs each input tuple (one entry per input tuple)."""
    got: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {p: [] for p in paths}
    handles = []
    for p in paths:
        mod = root.get_submodule(p)
        seen = {"n": 0}

        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 p: str = p, seen: dict[str, int] = seen) -> None:
            if seen["n"] == 0:
                # contiguous copies: a programme is fed contiguous buffers (a batch_first
                # LSTM's output is a transposed view)
                fmt = torch.contiguous_format
                clone = tuple(a.detach().clone(memory_format=fmt)
                              if isinstance(a, torch.Tensor) else a for a in args)
                kw = {k: v.detach().clone(memory_format=fmt) if isinstance(v, torch.Tensor)
                      else v for k, v in kwargs.items()}
                got[p].append((clone, kw))
            seen["n"] += 1

        handles.append((mod.register_forward_pre_hook(hook, with_kwargs=True), seen))
    try:
        for x in inputs:
            for _, seen in handles:
                seen["n"] = 0
            program(*x)
    finally:
        for h, _ in handles:
            h.remove()
    missing = [p for p, v in got.items() if len(v) != len(inputs)]
    if missing:
        raise CompressError(f"latency probes: {missing} were not called by the device program")
    return got


def shape_key(inputs: Inputs) -> list[int]:
    """A flat shape signature of a probe's inputs (first tensor's shape + a digest of all)."""
    sig = json.dumps([list(t.shape) for t in inputs])
    digest = int(hashlib.sha256(sig.encode()).hexdigest()[:6], 16)
    return [*map(int, inputs[0].shape), digest] if inputs else [digest]


def relative_paths(root: str, paths: Sequence[str]) -> tuple[list[str], bool]:
    """`paths` (program-level module paths) seen from the submodule `root`: the ones inside
    it, relative; and whether `root` itself lies inside one of them (then all of it is)."""
    inside = any(root == p or root.startswith(p + ".") for p in paths if p)
    rel = [p[len(root) + 1:] for p in paths if p.startswith(root + ".")]
    return rel, inside


# ---- the plan: what to measure ------------------------------------------------------------
@dataclass
class Probe:
    key: str
    component: str
    module: nn.Module
    inputs: Inputs
    calibration: list[Inputs]
    precision: str
    keep_fp32: list[str]
    only_modules: list[str] | None


@dataclass
class PathModel:
    """The reference architecture's counts and widths, and what governs each layer kind."""

    tag: str
    components: dict[str, str]  # component -> module path
    teacher_counts: dict[str, dict[str, int]]  # component -> kind -> count
    teacher_widths: dict[str, dict[str, int]]  # component -> axis unit -> width
    governs: dict[str, str | None] = field(default_factory=dict)  # "comp/kind" -> axis or None
    precision: dict[str, str] = field(default_factory=dict)  # component -> precision

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "components": self.components,
                "teacher_counts": self.teacher_counts, "teacher_widths": self.teacher_widths,
                "governs": self.governs, "precision": self.precision}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PathModel:
        return cls(d["tag"], d["components"], d["teacher_counts"], d["teacher_widths"],
                   d.get("governs", {}), d.get("precision", {}))


def counts_and_widths(units: Sequence[Unit]) -> tuple[dict[str, dict[str, int]],
                                                      dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, int]] = {}
    widths: dict[str, dict[str, int]] = {}
    for u in units:
        if u.module is None:
            widths.setdefault(u.component, {})[u.name] = int(u.width)
        else:
            c = counts.setdefault(u.component, {})
            c[u.kind] = c.get(u.kind, 0) + 1
    return counts, widths


def seg_key(tag: str, comp: str, axis: str | None, width: int | None) -> str:
    return f"seg:{comp}@{tag}" if axis is None else f"seg:{comp}:{axis}={width}@{tag}"


def layer_key(tag: str, comp: str, kind: str, width: int | None) -> str:
    return f"layer:{comp}/{kind}" + ("" if width is None else f"={width}") + f"@{tag}"


def null_key(key: str) -> str:
    """The key of a layer probe's companion that only passes its input through: what calling
    a program costs (launch, input copy, int8 boundary conversions), which a layer inside the
    program does not pay."""
    return f"null:{key}"


class Null(nn.Module):
    """``x -> 1 * x`` of a probe's first input: the cost of calling a program on it."""

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return x * 1.0


def whole_key(tag: str) -> str:
    return f"{WHOLE}@{tag}"


SHAPE = [1]  # the table's shape slot: the keys carry everything (tag, widths)


def predictor(table: LatencyTable, pm: PathModel, units_fn: Callable[[nn.Module], list[Unit]]
              ) -> Callable[[nn.Module], float]:
    """``model -> predicted ms`` of its device program (module docstring)."""

    def get(key: str, prec: str) -> float:
        return table.get(key, SHAPE, prec).p50_ms

    def predict(model: nn.Module) -> float:
        counts, widths = counts_and_widths(units_fn(model))
        total = table.get(whole_key(pm.tag), SHAPE, pm.precision.get(WHOLE, "fp32")).p50_ms
        for comp in pm.components:
            prec = pm.precision.get(comp, "fp32")
            for axis, w0 in pm.teacher_widths.get(comp, {}).items():
                w = widths.get(comp, {}).get(axis, w0)
                if w != w0:
                    total += get(seg_key(pm.tag, comp, axis, w), prec) - get(
                        seg_key(pm.tag, comp, None, None), prec)
            kinds = set(pm.teacher_counts.get(comp, {})) | set(counts.get(comp, {}))
            for kind in kinds:
                dn = counts.get(comp, {}).get(kind, 0) - pm.teacher_counts.get(comp, {}).get(
                    kind, 0)
                if dn == 0:
                    continue
                axis = pm.governs.get(f"{comp}/{kind}")
                w = None if axis is None else widths.get(comp, {}).get(
                    axis, pm.teacher_widths[comp][axis])
                key = layer_key(pm.tag, comp, kind, w)
                total += dn * (get(key, prec) - get(null_key(key), prec))
        return total

    return predict


def plan_probes(
    recipe: Recipe,
    teacher: nn.Module,
    inputs: Inputs,
    calibration: list[Inputs],
    *,
    precision: dict[str, str],
    width_steps: int,
    narrow_factor: float,
    tag: str,
) -> tuple[PathModel, list[Probe]]:
    """Every probe the table needs (module docstring), de-duplicated by key."""
    comps = recipe.components(teacher)
    units = recipe.units(teacher)
    counts, widths = counts_and_widths(units)
    pm = PathModel(tag, comps, counts, widths, precision=dict(precision))
    keep = list(recipe.keep_fp32(teacher))
    int8_mods = recipe.int8_modules(teacher)
    variants: list[tuple[str | None, nn.Module]] = [(None, teacher)]
    for axes in widths.values():
        for axis in axes:
            m = teacher
            for _ in range(width_steps):
                m = copy.deepcopy(m)
                try:
                    recipe.apply(m, Action("narrow", axis, narrow_factor))
                except (CompressError, ValueError) as exc:
                    log.info("latency: %s cannot narrow further: %s", axis, exc)
                    break
                variants.append((axis, m))
    probes: dict[str, Probe] = {}
    seen: list[tuple[str | None, nn.Module, dict[str, Any], dict[tuple[str, str], Unit],
                     dict[str, dict[str, int]]]] = []
    first_shapes: dict[str, list[list[int]]] = {}
    for axis, m in variants:  # capture every variant; which axis governs each layer kind
        prog = recipe.device_program(m)
        v_units = recipe.units(m)
        _, v_widths = counts_and_widths(v_units)
        first: dict[tuple[str, str], Unit] = {}
        for u in v_units:
            if u.module is not None:
                first.setdefault((u.component, u.kind), u)
        paths = [comps[c] for c in comps] + [u.module for u in first.values() if u.module]
        got = capture(prog, m, paths, [recipe.inputs_for(m, x) for x in [inputs, *calibration]])
        for (comp, kind), u in first.items():
            assert u.module is not None
            # what a narrowing changes in the layer: its inputs, or its own weights (a dense
            # layer's output width follows the growth rate while its first input may not)
            mod = m.get_submodule(u.module)
            shapes = ([list(t.shape) for t in Bound(mod, *got[u.module][0]).inputs()]
                      + [list(p.shape) for p in mod.parameters()])
            gk = f"{comp}/{kind}"
            if axis is None:
                first_shapes[gk] = shapes
                pm.governs.setdefault(gk, None)
            elif axis in v_widths.get(comp, {}) and shapes != first_shapes.get(gk):
                pm.governs[gk] = axis
        seen.append((axis, m, got, first, v_widths))
    for axis, m, got, first, v_widths in seen:
        for comp, path in comps.items():
            if axis is not None and axis not in v_widths.get(comp, {}):
                continue  # this variant narrows another component
            key = seg_key(tag, comp, axis, v_widths[comp][axis] if axis is not None else None)
            if key not in probes:
                probes[key] = _probe(key, comp, m.get_submodule(path), got[path], path,
                                     precision.get(comp, "fp32"), keep, int8_mods)
        for (comp, kind), u in first.items():
            gov = pm.governs.get(f"{comp}/{kind}")
            if axis is not None and gov != axis:
                continue  # unchanged by this narrowing: the teacher's probe serves
            key = layer_key(tag, comp, kind, None if gov is None else v_widths[comp][gov])
            if key not in probes and u.module is not None:
                probes[key] = _probe(key, comp, m.get_submodule(u.module), got[u.module],
                                     u.module, precision.get(comp, "fp32"), keep, int8_mods)
                lay = probes[key]
                probes[null_key(key)] = Probe(null_key(key), comp, Null(), lay.inputs[:1],
                                              [c[:1] for c in lay.calibration], lay.precision,
                                              [], None)
    return pm, list(probes.values())


def _probe(key: str, comp: str, module: nn.Module,
           calls: list[tuple[tuple[Any, ...], dict[str, Any]]], path: str, precision: str,
           keep: list[str], int8_mods: Sequence[str] | None) -> Probe:
    bound = [Bound(module, a, k) for a, k in calls]
    rel_keep, inside = relative_paths(path, keep)
    prec = "fp32" if inside else precision
    only = None
    if int8_mods is not None and prec == "int8":
        rel_only, inside_only = relative_paths(path, int8_mods)
        only = None if inside_only else rel_only
        if not inside_only and not rel_only:
            prec = "fp32"
    return Probe(key, comp, bound[0].eval(), bound[0].inputs(), [b.inputs() for b in bound[1:]],
                 prec, rel_keep, only)


# ---- measuring -----------------------------------------------------------------------------
def export_probe(
    module: nn.Module,
    inputs: Inputs,
    calibration: list[Inputs],
    precision: str,
    name: str,
    out_dir: Path,
    keep_fp32: Sequence[str] = (),
    only_modules: Sequence[str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Export one probe to ``.pte`` (recorded parity, no gate); its path and details."""
    from export.pte import export_pte

    res = export_pte(
        module, inputs, out_dir, name, precision=precision,
        calibration=CalibrationSet(list(calibration) or [inputs],
                                   {"kind": "real clip activations"})
        if precision == "int8" else None,
        gate=PROBE_GATE, keep_fp32=keep_fp32,
        only_modules=only_modules if precision == "int8" else None,
    )
    path = Path(str(res.path))
    return path, {"pte": str(path), "size_bytes": path.stat().st_size,
                  "precision": precision, "parity_sqnr_db": res.parity.get("sqnr_db")}


def measure_rounds(
    jobs: dict[str, tuple[Path, Inputs]], samples_fn: Samples, rounds: int
) -> dict[str, LatencyStats]:
    """Time every job `rounds` times, interleaved (job A, B, C, A, B, C, ...), and pool each
    job's samples: a slow spell of a shared machine then hits all jobs alike instead of one."""
    pooled: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(max(1, rounds)):
        for k, (pte, x) in jobs.items():
            pooled[k] += samples_fn(pte, x)
    return {k: LatencyStats.from_samples(v) for k, v in pooled.items()}


def bench_samples_fn(target: str, threads: int, warmup: int, iterations: int, work: Path
                     ) -> Samples:
    """``(pte, inputs) -> latency samples (ms)`` via :func:`device_bench.api.measure`."""
    from device_bench.api import measure
    from device_bench.protocol import write_input_file

    def fn(pte: Path, x: Inputs) -> list[float]:
        raw = write_input_file(x, pte.with_suffix(".inputs.raw"))
        res = measure(pte, target, warmup=warmup, iterations=iterations, threads=threads,
                      input_file=raw, out_dir=work / "bench_raw").to_dict()
        return [float(v) for r in res["repeats"] for v in r.get("latencies_ms", [])]

    return fn


def _quiet_worker(level: int) -> None:
    """Export workers log like their parent (dependency warnings only with ``-v``) and run one
    thread each (two workers on two cores); exports in the run's own process keep its
    threads for the stages after them."""
    from compress.cli_util import quiet_dependencies

    torch.set_num_threads(1)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    quiet_dependencies(level)


def _export_job(job: tuple[Probe, str, Path]) -> tuple[str, Path, dict[str, Any]]:
    p, name, out_dir = job
    path, det = export_probe(p.module, p.inputs, p.calibration, p.precision, name, out_dir,
                             p.keep_fp32, p.only_modules)
    return p.key, path, det


def export_all(probes: Sequence[Probe], out_dir: Path, workers: int = 1,
               progress: Callable[[str], None] | None = None
               ) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Export every probe to ``.pte``; with ``workers > 1`` in that many processes (lowering
    is single-threaded Python, so two cores export two probes at once)."""
    jobs = [(p, "probe-" + hashlib.sha256(p.key.encode()).hexdigest()[:10], out_dir)
            for p in probes]
    done: dict[str, tuple[Path, dict[str, Any]]] = {}
    if workers <= 1 or len(jobs) < 2:
        for i, job in enumerate(jobs):
            if progress:
                progress(f"export {i + 1}/{len(jobs)} {job[0].key} ({job[0].precision})")
            key, path, det = _export_job(job)
            done[key] = (path, det)
        return done
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    level = logging.getLogger().getEffectiveLevel()
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_quiet_worker, initargs=(level,)) as pool:
        futs = [pool.submit(_export_job, job) for job in jobs]
        for i, fut in enumerate(as_completed(futs)):
            key, path, det = fut.result()
            done[key] = (path, det)
            if progress:
                progress(f"exported {i + 1}/{len(jobs)} {key} ({det['precision']})")
    return done


def measure_table(
    table: LatencyTable,
    probes: Sequence[Probe],
    whole: Sequence[Probe],
    *,
    out_dir: Path,
    samples_fn: Samples,
    rounds: int,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
) -> tuple[dict[str, Any], dict[str, LatencyStats]]:
    """Export every probe and `whole` program, time them all in interleaved rounds, and add
    each probe's statistics to `table` (at its precision). Returns the details of every
    export and the statistics of the whole programs (by key)."""
    jobs: dict[str, tuple[Path, Inputs]] = {}
    details: dict[str, Any] = {}
    exported = export_all([*whole, *probes], out_dir, workers, progress)
    for p in [*whole, *probes]:
        path, details[p.key] = exported[p.key]
        jobs[p.key] = (path, p.inputs)
    if progress:
        progress(f"timing {len(jobs)} programs, {rounds} interleaved rounds")
    stats = measure_rounds(jobs, samples_fn, rounds)
    for p in probes:
        table.add(p.key, SHAPE, p.precision, stats[p.key])
    return details, {p.key: stats[p.key] for p in whole}


def validate(table: LatencyTable, name: str, predicted_ms: float, measured: LatencyStats
             ) -> float:
    """Record a whole-program check in `table`; the prediction error in percent."""
    return table.record_validation(name, predicted_ms, measured.p50_ms)
