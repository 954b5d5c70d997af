"""`compress run`: ten resumable stages, written once, for every model family with a recipe.

DESIGN.md, "Data flow of `compress run`":

    data → teacher → robust → latency → evolve → distill → quantize → export → bench → report

What differs between families (LHQ-SVC, separators, speech-to-singing, a user's model) is the
:class:`~compress.recipes.base.Recipe` the run's model name selects. Each stage takes the run's
:class:`RunState` and returns a typed result (:mod:`compress.results`); :mod:`compress.rundir`
writes it as the stage's ``done.json`` last, so a killed run resumes at its first unfinished
stage (``teacher`` and ``distill`` also resume inside the stage from their own checkpoints).

* **data** — the recipe's corpus, split three ways: ``train`` (every training stage), ``val``
  (every decision: evolution values, int8 sensitivity, score noise) and ``test`` (the report);
  disjointness is checked.
* **teacher** — ``model.checkpoint`` or the recipe's training.
* **robust** — fine-tune so that units can be removed (LHQ-SVC eq. 1).
* **latency** — the precision plan (which components ship int8: their int8 SQNR on ``val``),
  then the unit-level latency table of the shipped program at that plan on the target
  (:mod:`compress.latency_probe`), checked on a whole program that is not the teacher.
* **evolve** — remove / duplicate / narrow units of the whole path by Δscore / Δlatency under
  the budget (:mod:`compress.evolve`); the best architecture under budget is kept.
* **distill** — the recipe's distillation (LHQ-SVC: progressive step distillation from the
  shipped sampler's start distribution, skipped when its N-step teacher does not beat the
  one-step student on ``val``, and reverted when it lowers that score).
* **quantize** — per-group int8 sensitivity on ``val`` inside the plan's int8 components.
* **export** — the device program to ``.pte`` (+ ``.onnx``), parity-gated.
* **bench** — where the speed-up comes from: the eager teacher at ``bench.teacher_steps``
  steps, the eager teacher at the device's steps, the teacher architecture as fp32 and as
  plan-precision ``.pte``, and the student ``.pte``, timed in interleaved rounds on one chunk;
  every score for teacher and student on ``test`` with its noise; the latency table's error
  on the student; where the student's time goes per operator on each bench target (one more
  run with ExecuTorch's ETDump profiler, ``BENCH/profile/``).
* **report** — ``RUN/report.json`` + ``RUN/report.html`` (:mod:`compress.report`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress import latency_probe as lp
from compress.config import RunConfig, resolve_budget
from compress.errors import CompressError
from compress.latency_table import LatencyStats, LatencyTable
from compress.recipes.base import Action, DataSplits, Inputs, Recipe, ScoreResult
from compress.results import (
    BenchResult,
    DataResult,
    EvolveStageResult,
    ExportStageResult,
    LatencyResult,
    ModelResult,
    QuantizeResult,
    ReportResult,
    searched_fraction,
)
from compress.rundir import Stage
from export.parity import stoi_sample_rate
from models.fileio import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

STAGES = ("data", "teacher", "robust", "latency", "evolve", "distill", "quantize", "export",
          "bench", "report")
RESUMABLE = {"teacher", "distill"}
MODEL_FILE = "model.safetensors"
LATENCY_CACHE_ENV = "LHQ_MOBILE_LATENCY_CACHE"


@dataclass
class RunState:
    """What the stages share: the run's settings and every finished stage's typed result."""

    cfg: RunConfig
    recipe: Recipe
    target: str
    say: Callable[[str], None] = print
    progress: bool = False
    command: str = "compress run"
    stage_rows: list[dict[str, Any]] = field(default_factory=list)
    dirs: dict[str, Path] = field(default_factory=dict)
    data: DataResult | None = None
    teacher: ModelResult | None = None
    robust: ModelResult | None = None
    latency: LatencyResult | None = None
    evolve: EvolveStageResult | None = None
    distill: ModelResult | None = None
    quantize: QuantizeResult | None = None
    export: ExportStageResult | None = None
    bench: BenchResult | None = None
    report: ReportResult | None = None

    def need(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise CompressError(f"stage {name!r} has no result yet")
        return value

    @property
    def splits(self) -> DataSplits:
        return self.need("data").data


def latency_cache_dir() -> Path:
    """Where latency tables are kept across runs (``$LHQ_MOBILE_LATENCY_CACHE`` or
    ``~/.cache/lhq-mobile/latency``)."""
    import os

    env = os.environ.get(LATENCY_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "lhq-mobile" / "latency"


def _fingerprint(target: str, threads: int) -> dict[str, Any]:
    from compress.latency_table import host_fingerprint

    if target.startswith("adb:"):
        from device_bench.adb import AdbServer, Device

        server = AdbServer()
        server.ensure(start=True)
        dev = Device(server, target[4:])
        dev.check_online()
        return {"kind": "adb", "device": dev.info().result_device(), "threads": threads}
    return host_fingerprint(threads)


def _model_result(st: RunState, model: nn.Module, path: Path, record: dict[str, Any]
                  ) -> ModelResult:
    return ModelResult(str(path), st.recipe.params(model), st.recipe.architecture(model),
                       record)


# ---- stages -------------------------------------------------------------------------------
def stage_data(st: RunState, out: Path) -> DataResult:
    splits = st.recipe.load_data(st.cfg, out, st.say)
    splits.check()
    counts = {k: len(getattr(splits, k)) for k in ("train", "val", "test")}
    st.say(f"data: {splits.unit}s train {counts['train']}, val {counts['val']}, "
           f"test {counts['test']}")
    return DataResult(splits.to_json(), counts)


def stage_teacher(st: RunState, out: Path) -> ModelResult:
    cfg = st.cfg
    target = out / MODEL_FILE
    if cfg.model.checkpoint:
        src = Path(cfg.model.checkpoint).expanduser()
        if not src.is_file():
            raise CompressError(f"model.checkpoint {src} does not exist")
        model = st.recipe.load(src)
        st.recipe.check_teacher(model, src)
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        source = f"checkpoint {src}"
    else:
        if cfg.model.overrides:
            raise CompressError("model.overrides is not supported when compress run trains the "
                                "teacher; register a preset or give model.checkpoint")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)  # the untrained network's weights: a re-run and
            path = st.recipe.train_teacher(cfg, st.splits, out, st.say)  # a resume agree
        if Path(path) != target:
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        model = st.recipe.load(target)
        source = f"trained {cfg.model.name}"
    return _model_result(st, model, target, {"source": source})


def stage_robust(st: RunState, out: Path) -> ModelResult:
    rc = st.cfg.robust
    model = st.recipe.load(st.need("teacher").checkpoint)
    rec: dict[str, Any] = {"steps": 0}
    if rc.steps > 0:
        st.say(f"robust: {rc.steps} steps with skip_prob={rc.skip_prob}")
        rec = st.recipe.robust(model, st.splits, st.cfg, st.cfg.seed)
    rec = {k: v for k, v in rec.items() if k != "losses"}
    path = st.recipe.save(model, out / MODEL_FILE, {"event": "robust", **rec})
    return _model_result(st, model, path, rec)


def _inputs(st: RunState, model: nn.Module, split: str, n: int, offset: int = 0
            ) -> list[Inputs]:
    return st.recipe.example_inputs(model, st.splits, split, n, st.cfg.export.chunk_seconds,
                                    offset)


def _components_int8(recipe: Recipe, model: nn.Module) -> list[str]:
    """Components that may go int8: inside the recipe's int8 modules, outside its fp32 ones."""
    keep = recipe.keep_fp32(model)
    only = recipe.int8_modules(model)
    out = []
    for comp, path in recipe.components(model).items():
        if lp.relative_paths(path, keep)[1]:
            continue
        if only is not None and not lp.relative_paths(path, only)[1]:
            continue
        out.append(comp)
    return out


def precision_plan(st: RunState, model: nn.Module, val: list[Inputs], calib: list[Inputs]
                   ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Which components ship int8: each quantized alone (PT2E, XNNPACK quantizer, calibrated
    on train clips) and run on ``val`` chunks. A component ships int8 when the program's output
    keeps the export gate with a margin: SQNR ≥ floor + ``quantize.sqnr_margin_db`` and, for
    audio outputs, mean STOI against the fp32 output ≥ the gate's minimum + 0.01 (the export
    gate checks one chunk; this asks it of the val chunks on average, with a margin).
    ``whole`` is the label of the whole program's precision."""
    from export.calibration import CalibrationSet
    from export.parity import GateConfig, sqnr_db, stoi
    from export.pte import quantize_pt2e_xnnpack

    comps = st.recipe.components(model)
    plan = {c: "fp32" for c in comps}
    if st.cfg.export.precision != "int8":
        plan[lp.WHOLE] = "fp32"
        return plan, []
    prog = st.recipe.device_program(model)
    keep = st.recipe.keep_fp32(model)
    sr = stoi_sample_rate(model)
    min_stoi = GateConfig().min_stoi + 0.01
    floor = st.cfg.export.sqnr_floor_db + st.cfg.quantize.sqnr_margin_db
    with torch.no_grad():
        ref = [_first_tensor(prog(*x)).detach().float() for x in val]
    rows: list[dict[str, Any]] = []
    for comp in _components_int8(st.recipe, model):
        st.say(f"latency: int8 plan, quantizing {comp} alone")
        graph = quantize_pt2e_xnnpack(prog, tuple(val[0]), CalibrationSet(
            [tuple(c) for c in calib], {"kind": "real clips"}), what=f"int8 plan of {comp}",
            keep_fp32=keep, only_modules=[comps[comp]])
        with torch.no_grad():
            outs = [_first_tensor(graph(*x)).detach().float() for x in val]
        q = sqnr_db(torch.cat([r.reshape(-1) for r in ref]),
                    torch.cat([o.reshape(-1) for o in outs]))
        st_min = None
        if sr and ref[0].numel() >= sr:  # audio of at least a second: the gate's STOI check
            st_min = float(np.mean([stoi(r.numpy(), o.numpy(), sr) for r, o in zip(ref, outs)]))
        ok = math.isfinite(q) and q >= floor and (st_min is None or st_min >= min_stoi)
        plan[comp] = "int8" if ok else "fp32"
        rows.append({"component": comp, "layer": comps[comp], "sqnr_db": q, "stoi": st_min,
                     "precision": plan[comp]})
    plan[lp.WHOLE] = "int8" if any(v == "int8" for v in plan.values()) else "fp32"
    return plan, rows


def _first_tensor(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


def _plan_only_modules(st: RunState, model: nn.Module, plan: dict[str, str]) -> list[str]:
    comps = st.recipe.components(model)
    return [comps[c] for c, p in plan.items() if c in comps and p == "int8"]


def whole_probe(st: RunState, model: nn.Module, inputs: Inputs, calib: list[Inputs],
                plan: dict[str, str] | None, key: str) -> lp.Probe:
    """The device program as a timing probe: fp32 (`plan` None) or at the plan's precision."""
    prog = st.recipe.device_program(model)
    inputs = st.recipe.inputs_for(model, inputs)
    calib = [st.recipe.inputs_for(model, x) for x in calib]
    if plan is None or plan.get(lp.WHOLE) != "int8":
        return lp.Probe(key, lp.WHOLE, prog, inputs, calib, "fp32", [], None)
    return lp.Probe(key, lp.WHOLE, prog, inputs, calib, "int8",
                    list(st.recipe.keep_fp32(model)), _plan_only_modules(st, model, plan))


def validation_architecture(recipe: Recipe, teacher: nn.Module, factor: float,
                            narrow: bool = True) -> nn.Module:
    """A model that is not the teacher, for checking the table on a whole program: every width
    narrowed once (when the table times narrowed widths: `narrow`) and the first layer unit of
    each component removed, where the units allow it (an action a unit lists that then fails
    is a bug, and raises)."""
    m = copy.deepcopy(teacher)
    for u in recipe.units(teacher):
        if narrow and u.module is None and "narrow" in u.actions:
            recipe.apply(m, Action("narrow", u.name, factor))
    seen: set[str] = set()
    for u in recipe.units(m):  # one removal per component: the other names stay valid
        if u.module is not None and u.component not in seen and "remove" in u.actions:
            recipe.apply(m, Action("remove", u.name))
            seen.add(u.component)
    return m


def stage_latency(st: RunState, out: Path) -> LatencyResult:
    cfg = st.cfg
    lc = cfg.latency
    recipe = st.recipe
    model = recipe.load(st.need("robust").checkpoint)
    inputs = _inputs(st, model, "train", 1, offset=3)[0]
    calib = _inputs(st, model, "train", cfg.quantize.calibration_clips)
    val = _inputs(st, model, "val", cfg.evolve.val_clips)
    plan, plan_rows = precision_plan(st, model, val, calib)
    st.say("latency: precision plan " + ", ".join(f"{k} {v}" for k, v in plan.items()))
    tag = recipe_tag(recipe, model)
    fp = _fingerprint(st.target, lc.threads)
    pm, probes = lp.plan_probes(recipe, model, inputs, calib, precision=plan,
                                width_steps=lc.width_steps, narrow_factor=cfg.evolve.narrow_factor,
                                tag=tag)
    need = [p.key for p in probes] + [lp.whole_key(tag)]
    table: LatencyTable | None = None
    source = "measured"
    if lc.table:
        table, source = LatencyTable.load(lc.table), f"loaded {lc.table}"
    else:
        table = LatencyTable.find(latency_cache_dir(), st.target, fp)
        source = f"reused {latency_cache_dir()}" if table is not None else source
    if table is not None:
        missing = [k for k in need if not _has(table, k, plan, probes)]
        if missing:
            st.say(f"latency: the saved table lacks {len(missing)} entries; measuring them")
        probes = [p for p in probes if p.key in missing]
    else:
        table = LatencyTable(st.target, fp)
    samples = lp.bench_samples_fn(st.target, lc.threads, lc.warmup, lc.iterations, out)
    # an all-fp32 plan's program is the fp32 teacher's: exported and timed once, used as both
    whole = [whole_probe(st, model, inputs, calib, None, "teacher_fp32")]
    if plan.get(lp.WHOLE) == "int8":
        whole.insert(0, whole_probe(st, model, inputs, calib, plan, "teacher_plan"))
    check_model = None
    if lc.validate:
        check_model = validation_architecture(recipe, model, cfg.evolve.narrow_factor,
                                              narrow=lc.width_steps > 0)
        whole.append(whole_probe(st, check_model, inputs, calib, plan, "check"))
    known = _saved_whole(table, tag, plan) if source != "measured" and not probes else None
    if known is not None and check_model is None:
        # the saved table times this exact teacher program at both precisions and every unit:
        # nothing to time, so a second run on the same device decides from the same numbers
        # (the bench stage times the programs again beside the student)
        st.say(f"latency: the table ({source}) has every entry; exporting the "
               f"{len(whole)} whole programs for the bench stage, timing nothing")
        exported = lp.export_all(whole, out / "probes", lc.export_workers,
                                 lambda s: st.say(f"latency: {s}"))
        details, stats = {k: det for k, (_, det) in exported.items()}, known
    else:
        st.say(f"latency: {len(probes)} unit probes and {len(whole)} whole programs to export "
               f"({lc.export_workers} process(es)), then timing on {st.target}" +
               ("" if known is None else " (the table has every entry: the whole programs "
                "are timed only to check it)"))
        details, stats = lp.measure_table(table, probes, whole, out_dir=out / "probes",
                                          samples_fn=samples, rounds=lc.repeats,
                                          progress=lambda s: st.say(f"latency: {s}"),
                                          workers=lc.export_workers)
        if known is not None:  # decisions from the saved table, as without the check
            stats.update(known)
    if "teacher_plan" not in details:
        details["teacher_plan"] = details["teacher_fp32"]
    stats.setdefault("teacher_plan", stats["teacher_fp32"])
    programs = {k: details[k]["pte"] for k in ("teacher_plan", "teacher_fp32")}
    table.add(lp.whole_key(tag), lp.SHAPE, plan[lp.WHOLE], stats["teacher_plan"])
    table.add(lp.whole_key(tag), lp.SHAPE, "fp32", stats["teacher_fp32"])
    predict = lp.predictor(table, pm, recipe.units)
    teacher_ms = stats["teacher_plan"].p50_ms
    table.record_validation("teacher architecture (reference)", predict(model), teacher_ms)
    if check_model is not None:
        err = lp.validate(table, f"check architecture {recipe.architecture(check_model)}",
                          predict(check_model), stats["check"])
        st.say(f"latency: table error on a whole non-teacher program {err:+.1f} %")
    searched = sum(table.get(lp.seg_key(tag, c, None, None), lp.SHAPE, plan.get(c, "fp32")).p50_ms
                   for c in pm.components if c in {u.component for u in recipe.units(model)})
    floor = floor_architecture(recipe, model, cfg.evolve.narrow_factor, lc.width_steps)
    try:
        floor_ms: float | None = predict(floor)
    except CompressError:
        floor_ms = None
    st.say(f"latency: teacher program {teacher_ms:.2f} ms per chunk, "
           f"{searched_fraction(searched, teacher_ms):.0%} "
           "of it in searched components" + ("" if floor_ms is None else
                                             f"; every action to its limit: {floor_ms:.2f} ms"))
    path = table.save(out)
    cache = None
    try:
        cache = str(table.save(latency_cache_dir()))
    except OSError as exc:
        log.warning("could not save the latency table to the cache: %s", exc)
    secs = recipe.audio_seconds(model, inputs)
    atomic_write_text(out / "path_model.json", json.dumps(pm.to_json(), indent=2))
    return LatencyResult(str(path), source, table.fingerprint_id, plan, plan_rows, pm.to_json(),
                         secs, teacher_ms, table.validation, programs, details, cache,
                         searched, floor_ms, stats["teacher_fp32"].p50_ms)


def floor_architecture(recipe: Recipe, teacher: nn.Module, factor: float, width_steps: int
                       ) -> nn.Module:
    """The teacher with every removal applied and every width narrowed `width_steps` times:
    the fastest program the search space reaches within the latency table's grid."""
    m = copy.deepcopy(teacher)
    for u in recipe.units(teacher):
        if u.module is None:
            for _ in range(width_steps):
                try:
                    recipe.apply(m, Action("narrow", u.name, factor))
                except (CompressError, ValueError):
                    break
    changed = True
    while changed:
        changed = False
        for u in reversed(recipe.units(m)):
            if u.module is not None and "remove" in u.actions:
                try:
                    recipe.apply(m, Action("remove", u.name))
                    changed = True
                    break
                except (CompressError, ValueError):
                    continue
    return m


def _has(table: LatencyTable, key: str, plan: dict[str, str], probes: list[lp.Probe]
         ) -> bool:
    prec = {p.key: p.precision for p in probes}.get(key, plan.get(lp.WHOLE, "fp32"))
    try:
        table.get(key, lp.SHAPE, prec)
        return True
    except CompressError:
        return False


def _saved_whole(table: LatencyTable, tag: str, plan: dict[str, str]
                 ) -> dict[str, LatencyStats] | None:
    """The teacher program's statistics at the plan's precision and at fp32 from a saved
    table, or None when it lacks either."""
    try:
        return {"teacher_plan": table.get(lp.whole_key(tag), lp.SHAPE, plan.get(lp.WHOLE, "fp32")),
                "teacher_fp32": table.get(lp.whole_key(tag), lp.SHAPE, "fp32")}
    except CompressError:
        return None


def recipe_tag(recipe: Recipe, model: nn.Module) -> str:
    """A short hash of the model's architecture and sizes: table keys carry it, so a table
    measured for one model is never used for another."""
    blob = json.dumps(recipe.architecture(model), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def _predict_fn(st: RunState) -> Callable[[nn.Module], float]:
    """Predicted ms per second of audio of a model's device program."""
    lat = st.need("latency")
    table = LatencyTable.load(lat.table)
    predict = lp.predictor(table, lp.PathModel.from_json(lat.path_model), st.recipe.units)
    return lambda m: predict(m) / lat.audio_seconds


def finetune_key(recipe: Recipe, model: nn.Module, action: Action, seed: int
                 ) -> tuple[str, tuple[str, ...]] | None:
    """A digest of everything a fine-tune of `model` after `action` depends on (the action,
    the seed, the architecture and weights of the components it reads) and the components it
    writes, or None when the recipe does not say what it reads."""
    scope = recipe.finetune_scope(model, action)
    if scope is None:
        return None
    arch = recipe.architecture(model)
    comps = recipe.components(model)
    h = hashlib.sha256(json.dumps([action.kind, action.unit, action.factor, seed,
                                   [arch.get(c) for c in scope[0]]], sort_keys=True,
                                  default=str).encode())
    for c in scope[0]:
        for name, t in model.get_submodule(comps[c]).state_dict().items():
            h.update(name.encode())
            h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest(), scope[1]


def stage_evolve(st: RunState, out: Path) -> EvolveStageResult:
    from compress.evolve import Evolver, evolve

    cfg = st.cfg
    ec = cfg.evolve
    recipe = st.recipe
    model = recipe.load(st.need("robust").checkpoint)
    reference = recipe.load(st.need("robust").checkpoint)
    predict = _predict_fn(st)
    teacher_ms = predict(model)
    budget = resolve_budget(ec, teacher_ms, recipe.params(model))
    scorer = recipe.scorer(model, st.splits, "val", items=ec.val_clips, seconds=ec.val_seconds,
                           chunk_seconds=cfg.export.chunk_seconds, score=ec.score)
    counter = {"n": 0}
    reused = {"n": 0}  # narrowed candidates that reused an identical earlier fine-tune

    def score(m: nn.Module) -> ScoreResult:
        counter["n"] += 1
        return scorer(m, f"eager:{counter['n']}")

    def tuner(steps: int, seed_offset: int, memo: dict[str, dict[str, Any]] | None = None
              ) -> Callable[..., None]:
        """A fine-tune of `steps` steps (none when 0); seeded by the round when given. With
        `memo`, a fine-tune already run on the same inputs (:meth:`Recipe.finetune_scope`) is
        reused instead of run again."""
        def run(m: nn.Module, action: Action, rnd: int = 0) -> None:
            if steps <= 0:
                return
            seed = cfg.seed + seed_offset + rnd
            got = None if memo is None else finetune_key(recipe, m, action, seed)
            comps = recipe.components(m)
            if got is not None and got[0] in memo:
                for comp, state in memo[got[0]].items():
                    m.get_submodule(comps[comp]).load_state_dict(state)
                reused["n"] += 1
                return
            recipe.finetune(m, reference, action, st.splits, steps, seed)
            if got is not None and memo is not None:
                memo[got[0]] = {c: copy.deepcopy(m.get_submodule(comps[c]).state_dict())
                                for c in got[1]}
        return run

    st.say(f"evolve: budget {budget['budget_ms']:.2f} ms per audio second "
           f"({budget['mode']}; teacher architecture {teacher_ms:.2f} ms; searching to "
           f"{budget['search_ms']:.2f} ms, {100 * ec.latency_margin:.0f} % under it)"
           + (f", {budget['params_budget'] / 1e6:.2f} M parameters"
              if budget["params_budget"] is not None else "")
           + f", score {ec.score} on "
           f"{ec.val_clips} val clips")
    lat = st.need("latency")
    if lat.floor_ms is not None and lat.floor_ms / lat.audio_seconds > budget["search_ms"]:
        # the table already says that no architecture of this search space reaches the aim:
        # the search will end with the fastest state it finds (budget NOT met)
        st.say(f"evolve: warning: every action to its limit is predicted at "
               f"{lat.floor_ms / lat.audio_seconds:.2f} ms per audio second, above the "
               f"{budget['search_ms']:.2f} ms searched for; raise the budget or allow "
               "narrowing (latency.width_steps)")
    narrow_memo: dict[str, dict[str, Any]] = {}
    ev = Evolver(units=recipe.units, apply=recipe.apply, architecture=recipe.architecture,
                 score=score, latency=predict, finetune=tuner(ec.finetune_steps, 0),
                 finetune_duplicate=tuner(ec.duplicate_finetune_steps, 7919),
                 finetune_narrow=tuner(ec.narrow_finetune_steps, 7927, narrow_memo),
                 params=recipe.params,
                 screen=(lambda m: scorer(m, "screen", first=ec.screen_clips))
                 if ec.screen_clips else None, screen_keep=ec.screen_keep,
                 batch_free=ec.batch_free)
    t0 = time.perf_counter()
    chosen, res = evolve(model, ev, budget_ms=budget["search_ms"], max_rounds=ec.max_rounds,
                         narrow_factor=ec.narrow_factor,
                         duplicate_candidates=ec.duplicate_candidates,
                         swap_candidates=ec.swap_candidates,
                         params_budget=budget["params_budget"],
                         on_event=lambda s: st.say(f"evolve: {s}"))
    if reused["n"]:
        st.say(f"evolve: {reused['n']} narrowed candidates reused an identical earlier "
               "fine-tune")
    st.say(f"evolve: {len(res.evaluated)} architectures evaluated in "
           f"{time.perf_counter() - t0:.0f} s; chose state {res.chosen_round} "
           f"({res.final_latency_ms:.2f} ms, score {res.final_score:.4f}, budget "
           f"{'met' if res.budget_met else 'NOT met'})")
    evo = res.to_json()
    path = recipe.save(chosen, out / MODEL_FILE, {
        "event": "evolve", "history": evo["history"][: res.chosen_decisions],
        "budget_ms": budget["budget_ms"]})
    atomic_write_text(out / "evolution.json", json.dumps(evo, indent=2))
    return EvolveStageResult(str(path), recipe.params(chosen), budget, evo,
                             recipe.architecture(chosen), ec.score,
                             float(res.evaluated[0].noise) if res.evaluated else 0.0)


def stage_distill(st: RunState, out: Path) -> ModelResult:
    model = st.recipe.load(st.need("evolve").checkpoint)
    full = st.recipe.load(st.need("robust").checkpoint)  # the full model evolution started from
    rec = st.recipe.distill(model, st.splits, st.cfg, out, st.say, teacher=full)
    path = st.recipe.save(model, out / MODEL_FILE, {"event": "distill", **rec})
    return _model_result(st, model, path, rec)


def stage_quantize(st: RunState, out: Path) -> QuantizeResult:
    from compress.quantize import choose_fp32, sensitivity

    cfg = st.cfg
    qc = cfg.quantize
    recipe = st.recipe
    plan = st.need("latency").precision_plan
    model = recipe.load(st.need("distill").checkpoint)
    comps = recipe.components(model)
    fp32_comps = [comps[c] for c, p in plan.items() if c in comps and p != "int8"]
    if not qc.enabled or cfg.export.precision != "int8" or plan.get(lp.WHOLE) != "int8":
        return QuantizeResult(False, [], {}, fp32_comps)
    int8_paths = [comps[c] for c, p in plan.items() if c in comps and p == "int8"]
    groups = [g for g in recipe.int8_groups(model)
              if any(g == p or g.startswith(p + ".") for p in int8_paths)]
    calib = _inputs(st, model, "train", qc.calibration_clips)
    val = _inputs(st, model, "val", cfg.evolve.val_clips, offset=1)
    scorer = recipe.scorer(model, st.splits, "val", items=cfg.evolve.val_clips,
                           seconds=cfg.evolve.val_seconds, chunk_seconds=cfg.export.chunk_seconds,
                           score=cfg.evolve.score)
    prog = recipe.device_program(model)
    st.say(f"quantize: int8 sensitivity of {len(groups)} groups on {len(val)} val chunks")
    keep = [*recipe.keep_fp32(model), *fp32_comps]
    results: dict[str, ScoreResult] = {}

    def score_fn(graph: Any, tag: str) -> float:
        # every variant, fp32 included, is scored as a program run chunk by chunk, the way it
        # ships: the eager pipeline on whole clips scores otherwise (chunk edges cost score)
        results[tag] = scorer(lambda *a: graph(*a), tag)
        return results[tag].value

    def drop_noise(tag: str) -> float:
        """Noise of a variant's score drop: the paired noise of the val items against fp32,
        at least fp32's own (a drop within it is not a measured drop)."""
        base_r, res = results.get("fp32"), results.get(tag)
        noise = base_r.paired_noise(res) if base_r is not None and res is not None else 0.0
        return max(noise, base_r.noise if base_r is not None else 0.0)

    def accept_all(q: float, drop: float | None) -> bool:
        """Every group int8 keeps the export floor and loses no more than a group may."""
        if drop is None or not math.isfinite(q) or "fp32" not in results:
            return False
        measured = 0.0 if abs(drop) <= drop_noise("int8:(all)") else drop
        return q >= cfg.export.sqnr_floor_db and measured <= qc.sensitivity_threshold

    rows, summary = sensitivity(prog, groups, val, calib, keep_fp32=keep, score_fn=score_fn,
                                progress=lambda g: st.say(f"quantize: {g}"),
                                accept_all=accept_all)
    if not rows:
        st.say(f"quantize: every group int8 together: SQNR {summary['sqnr_db_all']:.1f} dB, "
               f"score drop {summary['score_drop_all']:+.4f} (within the rule); "
               "no group needs to stay fp32")
    for r in rows:  # a drop within the paired noise of the val items is not a measured drop
        r["score_noise"] = drop_noise(f"int8:{r['layer']}")
        r["score_drop_measured"] = r["score_drop"]
        if r["score_drop"] is not None and abs(r["score_drop"]) <= r["score_noise"]:
            r["score_drop"] = 0.0
    # the plan already asked each int8 component for the floor + margin on val clips (and the
    # latency table timed it int8): here a group goes fp32 for a measured score drop, or when
    # the predicted SQNR misses the export floor itself
    chosen = choose_fp32(rows, score_threshold=qc.sensitivity_threshold,
                         sqnr_floor_db=cfg.export.sqnr_floor_db, margin_db=0.0)
    st.say(f"quantize: keeping fp32: {chosen or 'none'} (plan: {fp32_comps or 'none'})")
    atomic_write_text(out / "sensitivity.json", json.dumps(
        {"rows": rows, "summary": summary, "keep_fp32": chosen}, indent=2, default=str))
    return QuantizeResult(True, rows, summary, [*fp32_comps, *chosen])


def noise_order(module: nn.Module, groups: Sequence[str], inputs: Inputs, calib: list[Inputs],
                keep_fp32: Sequence[str] = ()) -> list[str]:
    """`groups` ordered by their own int8 SQNR on `inputs`, noisiest first (one fake-quantized
    graph per group, no scoring): the order in which an export that fails its gate keeps groups
    fp32 when the quantize stage measured no per-group rows."""
    from compress.quantize import sensitivity

    rows, _ = sensitivity(module, list(groups), [inputs], calib, keep_fp32=keep_fp32)
    return [r["layer"] for r in sorted(rows, key=lambda r: (not math.isnan(r["sqnr_db"]),
                                                            r["sqnr_db"]))]


def gated_pte(st: RunState, module: nn.Module, inputs: Inputs, calib: list[Inputs], out: Path,
              name: str, *, precision: str, groups: list[str], left: list[str] | None,
              attempts: list[dict[str, Any]], **kwargs: Any) -> tuple[Any, list[str]]:
    """Export `module` to a gated ``.pte``; int8 quantizes the `groups`, and after an
    :class:`ExportError` (gate or lowering) keeps the next group of `left` fp32 and tries again.
    With `left` None (the quantize stage accepted every group int8 together and ranked none),
    the first failure ranks the `groups` by their own SQNR on the gate's input
    (:func:`noise_order`). Returns the result and the groups kept fp32 on the way."""
    from export.calibration import CalibrationSet
    from export.errors import ExportError
    from export.pte import export_pte

    int8 = precision == "int8"
    keep: list[str] = []
    order = None if left is None else list(left)
    while True:
        try:
            res = export_pte(
                module, inputs, out, name, precision=precision,
                calibration=CalibrationSet(calib, {"kind": "real clips", "n_batches": len(calib)})
                if int8 else None,
                only_modules=[g for g in groups if g not in keep] if int8 else None, **kwargs)
            return res, keep
        except ExportError as exc:
            if int8 and order is None:
                st.say(f"export: {name} int8 failed ({str(exc)[:160]}); ranking its "
                       f"{len(groups)} groups by their own int8 SQNR on the gate's input")
                order = noise_order(module, groups, inputs, calib, kwargs.get("keep_fp32", ()))
            if not (int8 and order):
                raise
            attempts.append({"model": name, "keep_fp32": list(keep), "error": str(exc)})
            keep.append(order.pop(0))
            st.say(f"export: {name} int8 failed ({str(exc)[:160]}); also keeping {keep[-1]} "
                   "fp32 and retrying")


def stage_export(st: RunState, out: Path) -> ExportStageResult:
    from export.metadata import spec_metadata
    from export.parity import GateConfig
    from models import registry

    cfg = st.cfg
    ec = cfg.export
    recipe = st.recipe
    model = recipe.load(st.need("distill").checkpoint)
    inputs = _inputs(st, model, "test", 1)[0]
    calib = _inputs(st, model, "train", cfg.quantize.calibration_clips)
    q = st.need("quantize")
    keep = list(q.keep_fp32)
    # the quantize stage's per-group rows rank the groups; without rows (every group int8
    # together passed there) a failing gate ranks them on its own input
    by_noise = [r["layer"] for r in sorted(q.rows, key=lambda r: r["sqnr_db"])] if q.rows else None
    comps = recipe.components(model)
    int8_paths = [comps[c] for c, p in st.need("latency").precision_plan.items()
                  if c in comps and p == "int8"]
    groups = [g for g in recipe.int8_groups(model) if g not in keep
              and any(g == p or g.startswith(p + ".") for p in int8_paths)]
    precision = ec.precision if groups else "fp32"
    meta = dict(spec_metadata(registry.get(cfg.model.name), getattr(model, "config", {})))
    meta["chunk_seconds"] = recipe.audio_seconds(model, inputs)
    meta.update(recipe.export_metadata(model, cfg))
    gate = GateConfig(int8_min_sqnr_db=ec.sqnr_floor_db)
    name = f"{cfg.name}-student"
    artifacts: dict[str, str] = {}
    parity: dict[str, Any] = {}
    attempts: list[dict[str, Any]] = []
    prog = recipe.device_program(model)
    sr = stoi_sample_rate(model)
    for fmt in ec.formats:
        if fmt == "pte":
            res, extra = gated_pte(st, prog, inputs, calib, out, name, precision=precision,
                                   groups=groups,
                                   left=None if by_noise is None else [g for g in by_noise
                                                                       if g in groups],
                                   attempts=attempts, metadata=meta, gate=gate,
                                   audio_sample_rate=sr,
                                   allow_fallback_ops=ec.allow_fallback_ops,
                                   keep_fp32=recipe.keep_fp32(model))
            keep += extra
            artifacts[f"pte_{precision}"] = str(res.path)
            parity[f"pte_{precision}"] = res.parity
            for part, (module, x, cx, prefix) in recipe.extra_programs(model, inputs,
                                                                       calib).items():
                sub = [g[len(prefix):] for g in groups if g.startswith(prefix)]
                part_precision = precision if sub else "fp32"  # no int8 group: fp32
                res, _ = gated_pte(st, module, x, cx, out, f"{name}-{part}",
                                   precision=part_precision, groups=sub,
                                   left=None if by_noise is None else [
                                       g[len(prefix):] for g in by_noise
                                       if g.startswith(prefix)],
                                   attempts=attempts, metadata={**meta, "component": part},
                                   gate=gate)
                artifacts[f"{part}_pte_{part_precision}"] = str(res.path)
                parity[f"{part}_pte_{part_precision}"] = res.parity
        elif fmt == "onnx":
            from export.onnx_export import export_onnx

            res = export_onnx(prog, inputs, out, name, precision="fp32", metadata=meta,
                              gate=gate, audio_sample_rate=sr)
            artifacts["onnx_fp32"] = str(res.path)
            parity["onnx_fp32"] = res.parity
        else:
            raise CompressError(f"compress run exports pte and onnx; {fmt!r} is not supported "
                                "here (use `compress export --format tflite` on the checkpoint)")
    return ExportStageResult(artifacts, parity, keep, attempts, meta["chunk_seconds"])


BREAKDOWN = (("steps", "teacher_eager_steps", "teacher_eager_device"),
             ("runtime", "teacher_eager_device", "teacher_pte_fp32"),
             ("precision", "teacher_pte_fp32", "teacher_pte_plan"),
             ("architecture", "teacher_pte_plan", "student_pte"))


def speedup_breakdown(p50: dict[str, float]) -> tuple[float, dict[str, float]]:
    """The speed-up (eager teacher at N steps over the student program) and its factors, from
    the p50 latencies of one chunk measured in the same rounds: each factor is the ratio of two
    neighbouring programs of the chain eager N steps → eager device steps → ``.pte`` fp32 →
    ``.pte`` at the precision plan → the student, so their product is the speed-up."""
    for k in ("teacher_eager_steps", "student_pte", *(b for _, _, b in BREAKDOWN)):
        if not (k in p50 and p50[k] > 0 and math.isfinite(p50[k])):
            raise CompressError(f"speed-up breakdown: no valid latency for {k!r} ({p50.get(k)})")
    return (p50["teacher_eager_steps"] / p50["student_pte"],
            {name: p50[a] / p50[b] for name, a, b in BREAKDOWN})


def _interleaved(jobs: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, Any]:
    pooled: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(max(1, rounds)):
        for k, fn in jobs.items():
            pooled[k] += fn()
    return {k: LatencyStats.from_samples(v) for k, v in pooled.items()}


def _eager_samples(recipe: Recipe, model: nn.Module, inputs: Inputs, steps: int | None,
                   threads: int, n: int) -> Callable[[], list[float]]:
    def fn() -> list[float]:
        return [recipe.eager_ms(model, inputs, steps, repeats=1, threads=threads)
                for _ in range(n)]

    return fn


def stage_bench(st: RunState, out: Path) -> BenchResult:
    from device_bench.api import measure
    from device_bench.protocol import write_input_file

    cfg = st.cfg
    bc = cfg.bench
    recipe = st.recipe
    lat = st.need("latency")
    teacher = recipe.load(st.need("teacher").checkpoint)
    student = recipe.load(st.need("distill").checkpoint)
    art = st.need("export").artifacts
    pte = art.get(f"pte_{cfg.export.precision}") or next(iter(art.values()))
    inputs = _inputs(st, student, "test", 1)[0]
    secs = recipe.audio_seconds(student, inputs)
    raw = write_input_file(inputs, out / "inputs.raw")
    samples = lp.bench_samples_fn(st.target, cfg.latency.threads, bc.warmup, bc.iterations, out)
    threads = cfg.latency.threads
    st.say(f"bench: where the speed-up comes from ({bc.repeats} interleaved rounds on "
           f"{st.target}, {threads} thread(s)): teacher {bc.teacher_steps} steps eager, teacher "
           "1 step eager, teacher .pte fp32 / plan, student .pte")
    t_inputs = recipe.inputs_for(teacher, inputs)  # same audio; states of the teacher's width
    ev = {"items": bc.eval_clips, "seconds": bc.eval_seconds,
          "chunk_seconds": cfg.export.chunk_seconds}
    # the teacher's scores first: the iso-quality teacher is searched against them and timed
    # in the same rounds as the others
    st.say(f"bench: scoring the teacher ({bc.teacher_steps} steps) on {bc.eval_clips} test "
           "clips")
    t_scores = recipe.evaluate(teacher, "teacher", teacher, st.splits, "test",
                               teacher_steps=bc.teacher_steps, **ev)
    iso = None
    if cfg.evolve.score in t_scores:
        iso = recipe.iso_quality_teacher(teacher, st.splits, cfg, t_scores[cfg.evolve.score],
                                         st.say)
    jobs: dict[str, Callable[[], list[float]]] = {
        "teacher_eager_steps": _eager_samples(recipe, teacher, t_inputs, bc.teacher_steps,
                                              threads, 1),
        "teacher_eager_device": _eager_samples(recipe, teacher, t_inputs, None, threads, 3),
        "teacher_pte_fp32": lambda: samples(Path(lat.whole_programs["teacher_fp32"]), t_inputs),
        "teacher_pte_plan": lambda: samples(Path(lat.whole_programs["teacher_plan"]), t_inputs),
        "student_pte": lambda: samples(Path(pte), inputs),
    }
    if iso is not None and iso["steps"] != bc.teacher_steps:
        jobs["teacher_eager_iso"] = _eager_samples(recipe, teacher, t_inputs, iso["steps"],
                                                   threads, 1)
    stats = _interleaved(jobs, bc.repeats)
    p = {k: v.p50_ms for k, v in stats.items()}
    speedup, breakdown = speedup_breakdown(p)
    iso_speedup = None
    if iso is not None:
        iso_speedup = p.get("teacher_eager_iso", p["teacher_eager_steps"]) / p["student_pte"]
        st.say(f"bench: iso-quality teacher {iso['steps']} step(s) at temperature "
               f"{iso['temperature']:g} ({100 * iso['kept_fraction']:.1f} % of its "
               f"{bc.teacher_steps}-step {cfg.evolve.score}): the student is "
               f"{iso_speedup:.1f}x faster than it ({speedup:.1f}x than {bc.teacher_steps} "
               "steps)")
    targets: dict[str, Any] = {}
    for tgt in bc.targets:
        if tgt == st.target and bc.threads == threads:
            ms = p["student_pte"]
            metrics = {"p50_inference_latency(ms)": ms}
        else:
            st.say(f"bench: student {Path(pte).name} on {tgt}")
            d = measure(pte, tgt, warmup=bc.warmup, iterations=bc.iterations,
                        repeats=bc.repeats, threads=bc.threads, input_file=raw,
                        out_dir=out / "raw").to_dict()
            atomic_write_text(out / f"bench_{tgt.replace(':', '_')}.json",
                              json.dumps(d, indent=2))
            metrics = d["metrics"]
            ms = float(metrics["p50_inference_latency(ms)"])
        targets[tgt] = {"p50_ms": ms, "ms_per_audio_s": ms / secs, "rtf": ms / 1000.0 / secs,
                        "metrics": metrics,
                        "profile": _operator_profile(st, pte, tgt, raw, out)}
    table = LatencyTable.load(lat.table)
    predicted = lp.predictor(table, lp.PathModel.from_json(lat.path_model), recipe.units)(student)
    # the table is anchored on the teacher program timed in the latency stage; a shared machine
    # drifts between stages, so the check re-anchors on the same teacher program timed in these
    # rounds (the unanchored error is kept beside it)
    drift = p["teacher_pte_plan"] / lat.teacher_ms
    if lat.teacher_fp32_ms:  # two reference programs: a geometric mean is steadier than one
        drift = math.sqrt(drift * p["teacher_pte_fp32"] / lat.teacher_fp32_ms)
    anchored = predicted * drift
    err = table.record_validation(f"student {recipe.architecture(student)} (anchored)", anchored,
                                  p["student_pte"])
    raw_err = 100.0 * (predicted - p["student_pte"]) / p["student_pte"]
    table.save(out)
    st.say(f"bench: speed-up {speedup:.1f}x = " + " x ".join(
        f"{k} {v:.2f}" for k, v in breakdown.items()) + f"; table error on the student "
        f"{err:+.1f} %")
    st.say(f"bench: scoring the student (.pte) on {bc.eval_clips} test clips")
    from export.runtime import PteRunner

    runner = PteRunner(pte, threads=bc.threads)
    tag = "pte:" + hashlib.sha256(Path(pte).read_bytes()).hexdigest()
    s_scores = recipe.evaluate(runner, tag, student, st.splits, "test", teacher_steps=None,
                               **ev)
    audio = recipe.write_examples(out, teacher, runner, student, st.splits, bc.teacher_steps,
                                  cfg.export.chunk_seconds)
    timings = {k: {"p50_ms": v.p50_ms, "ms_per_audio_s": v.p50_ms / secs, "min_ms": v.min_ms,
                   "p90_ms": v.p90_ms, "n": v.n} for k, v in stats.items()}
    return BenchResult(
        secs, timings, speedup, breakdown, targets,
        {k: v.to_json() for k, v in t_scores.items()},
        {k: v.to_json() for k, v in s_scores.items()},
        {"predicted_ms": anchored, "measured_ms": p["student_pte"], "error_pct": err,
         "predicted_unanchored_ms": predicted, "error_unanchored_pct": raw_err,
         "machine_drift": drift, "target": st.target}, pte, recipe.params(teacher),
        recipe.params(student), audio, iso, iso_speedup)


def _operator_profile(st: RunState, pte: str, target: str, raw: Path, out: Path
                      ) -> dict[str, Any]:
    """Where the student's time goes on `target`: its per-operator table from one more run
    with the ETDump profiler (`device_bench.api.profile`), or the error that stopped it."""
    from device_bench.api import profile
    from device_bench.errors import BenchError
    from device_bench.protocol import BenchConfig as RunnerConfig

    bc = st.cfg.bench
    cfg = RunnerConfig(threads=bc.threads, warmup=bc.warmup, iterations=bc.iterations,
                       input_file=str(raw))
    try:
        prof = profile(pte, target, cfg, out)
    except BenchError as exc:  # kept in the report; the stage's other numbers stand
        st.say(f"bench: no operator profile of the student on {target}: {exc}")
        return {"error": str(exc)}
    top = ", ".join(f"{r.name} {100 * r.share:.0f} %" for r in prof.rows[:3])
    st.say(f"bench: student per operator on {target}: {top}; {prof.check_line()}")
    return prof.to_dict()


def stage_report(st: RunState, out: Path) -> ReportResult:
    from compress.report import write_report
    from compress.report_data import report_data

    data = report_data(st)
    json_path, html_path = write_report(out.parent, data)
    return ReportResult(str(json_path), str(html_path), data["speedup"],
                        data["quality_retention"], bool(data["budget_met"]))


STAGE_FUNCS: dict[str, tuple[Callable[[RunState, Path], Any], Any]] = {
    "data": (stage_data, DataResult), "teacher": (stage_teacher, ModelResult),
    "robust": (stage_robust, ModelResult), "latency": (stage_latency, LatencyResult),
    "evolve": (stage_evolve, EvolveStageResult), "distill": (stage_distill, ModelResult),
    "quantize": (stage_quantize, QuantizeResult), "export": (stage_export, ExportStageResult),
    "bench": (stage_bench, BenchResult), "report": (stage_report, ReportResult),
}


def build_stages() -> list[Stage]:
    return [Stage(name, STAGE_FUNCS[name][0], resumable=name in RESUMABLE,
                  decode=STAGE_FUNCS[name][1].from_json) for name in STAGES]


def run_config_dict(cfg: RunConfig, target: str) -> dict[str, Any]:
    """What the run directory's config digest covers (the config plus the target)."""
    from compress.config_io import to_dict

    return {"config": to_dict(cfg), "target": target}
