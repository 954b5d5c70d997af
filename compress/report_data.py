"""What `compress run` puts in its report: one dict from the stages' typed results.

The figures (:mod:`compress.report` renders them):

* ``speedup`` — the eager teacher at ``bench.teacher_steps`` sampler steps (fp32) over the
  student's ``.pte``, per chunk on the latency target, same inputs and thread count;
* ``speedup_breakdown`` — the same ratio as a product of measured factors, all timed in the
  same interleaved rounds: ``steps`` (teacher eager, N steps → the device's steps),
  ``runtime`` (eager → ``.pte`` fp32, teacher architecture), ``precision`` (``.pte`` fp32 →
  the precision plan), ``architecture`` (teacher → student architecture, both at the plan);
* ``searched_latency_fraction`` — the share of the teacher program's measured latency inside
  components that have evolvable units (the latency table's segments over the whole
  program, at most 1: each segment is timed as a program of its own, with its own call and
  input copies, so when every component is searched their sum exceeds the whole by that
  overhead); ``removable_latency_fraction`` — the share the search removes with every
  action applied as far as the table's grid reaches (a lower bound of what it can change);
* ``budget_met`` — the student's *measured* latency per audio second is within the budget
  (``budget_met_predicted``: the table's prediction for the chosen architecture was; the
  search aims ``evolve.latency_margin`` under the budget, and ``evolution.budget_met`` is
  against that aim). A budget given as a fraction of the
  teacher is relative, so it is checked against the teacher program timed in the same rounds
  (the machine's drift between the latency and bench stages is divided out); one in ms or RTF
  is checked as measured; with ``evolve.params_fraction`` the student's parameters must also
  be within the parameter budget (``budget_check.params_budget``);
* ``score_noise`` — the standard error over the test items of each teacher score, and
  ``decision_noise`` the one over the val items the search decided on;
* ``score_deltas`` — per score, teacher and student with their noise, the paired noise of
  their per-item differences (the same test clips), the raw difference ``delta`` and
  ``delta_counted``: 0 when ``|delta|`` is within the paired noise; ``score_parts`` — the same
  for the parts of the ``combined`` score, with their weights. The teacher and the student
  program are deterministic (temperature-0 or a fixed noise buffer), so the noise is the
  clips' alone: another seed gives the same outputs;
* ``iso_quality`` / ``iso_quality_speedup`` — the teacher's fewest sampler steps (and best
  temperature) keeping ``bench.iso_quality`` of its own score, and the student's speed-up
  against the teacher at that setting (beside ``speedup``, against ``bench.teacher_steps``);
* ``operator_profile`` — per bench target, the student program's time per operator from one
  run with ExecuTorch's ETDump profiler (:mod:`device_bench.etdump`), the operators' total
  beside that run's measured latency (``check``), or ``{error}`` when it could not be made.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from compress.pipeline import RunState


def _summary(params: int, size_mb: float, ms_per_s: float, scores: dict[str, Any]
             ) -> dict[str, Any]:
    return {"params": params, "size_mb": size_mb, "latency_ms_per_audio_s": ms_per_s,
            "rtf": ms_per_s / 1000.0,
            "scores": {k: v["value"] for k, v in scores.items()}}


def score_deltas(teacher: dict[str, Any], student: dict[str, Any]) -> dict[str, Any]:
    """Per score in both (:meth:`ScoreResult.to_json` dicts): values, noise, paired noise
    over the shared items (:meth:`ScoreResult.paired_noise`) and the difference, counted as 0
    within that noise (module docstring)."""
    from compress.recipes.base import ScoreResult

    out: dict[str, Any] = {}
    for name, t in teacher.items():
        s = student.get(name)
        if s is None:
            continue
        t_res, s_res = (ScoreResult(name, float(x["value"]), tuple(x["items"])) for x in (t, s))
        paired = s_res.paired_noise(t_res)
        delta = float(s["value"]) - float(t["value"])
        out[name] = {"teacher": t["value"], "teacher_noise": t["noise"],
                     "student": s["value"], "student_noise": s["noise"],
                     "paired_noise": paired, "delta": delta,
                     "delta_counted": 0.0 if abs(delta) <= paired else delta,
                     "items": len(t_res.items)}
    return out


def _score_parts(cfg: Any, deltas: dict[str, Any]) -> dict[str, Any]:
    """The ``combined`` score's parts with their weights (LHQ-SVC), from `deltas`."""
    from compress.scores import PARTS

    if "combined" not in deltas:
        return {}
    weights = cfg.evolve.weights()
    return {part: {"score": name, "weight": weights.get(part, 0.0), **deltas[name]}
            for part, name in PARTS.items() if name in deltas}


def verdict(d: dict[str, Any]) -> str:
    """One sentence: what the run achieved, in the report's own numbers."""
    bd = d["speedup_breakdown"]
    ret = d.get("quality_retention")
    iso = d.get("iso_quality")
    iso_text = ""
    if d.get("iso_quality_speedup") is not None and iso:
        iso_text = (f"; {d['iso_quality_speedup']:.1f}x faster than the teacher at "
                    f"{iso['steps']} step(s), temperature {iso['temperature']:g}, its fewest "
                    f"that keep {100 * d['iso_quality_fraction']:.0f} % of its own score")
    parts = [f"{d['speedup']:.1f}x faster than the teacher "
             f"(steps {bd['steps']:.1f}x, runtime {bd['runtime']:.2f}x, precision "
             f"{bd['precision']:.2f}x, architecture {bd['architecture']:.2f}x){iso_text}",
             f"budget {'met' if d['budget_met'] else 'NOT met'} "
             f"({d['student']['latency_ms_per_audio_s']:.1f} of "
             f"{d['budget_check']['limit_ms_per_audio_s']:.1f} ms per audio second"
             + (f"; {d['student']['params'] / 1e6:.2f} of "
                f"{d['budget_check']['params_budget'] / 1e6:.2f} M parameters"
                if d["budget_check"].get("params_budget") else "") + ")"]
    if ret is not None:
        parts.append(f"keeps {ret:.1%} of the teacher's {d['score_name']} on held-out songs")
    parts.append(f"student has {d['student']['params'] / d['teacher']['params']:.0%} of the "
                 "teacher's parameters")
    return "; ".join(parts) + "."


def report_data(st: RunState) -> dict[str, Any]:
    cfg = st.cfg
    b = st.need("bench")
    ev = st.need("evolve")
    lat = st.need("latency")
    teacher_mb = Path(st.need("teacher").checkpoint).stat().st_size / 1e6
    student_mb = Path(b.pte).stat().st_size / 1e6
    tim = b.timings
    teacher = _summary(b.teacher_params, teacher_mb,
                       tim["teacher_eager_steps"]["ms_per_audio_s"], b.teacher_scores)
    student = _summary(b.student_params, student_mb, tim["student_pte"]["ms_per_audio_s"],
                       b.student_scores)
    score = cfg.evolve.score
    retention: dict[str, float | None] = {}
    for name, tv in teacher["scores"].items():
        sv = student["scores"].get(name)
        retention[name] = (sv / tv if sv is not None and tv and math.isfinite(tv) and tv > 0
                           else None)
    deltas = score_deltas(b.teacher_scores, b.student_scores)
    evo = ev.evolution
    chosen = int(evo.get("chosen_decisions", evo["chosen_round"]))
    history = [{**h, "chosen": i < chosen} for i, h in enumerate(evo["history"])]
    from compress.report import pareto_points

    budget = float(ev.budget["budget_ms"])
    measured = tim["student_pte"]["ms_per_audio_s"]
    drift = float(b.final_prediction.get("machine_drift", 1.0))
    # a budget given as a fraction of the teacher is relative: checked against the teacher
    # program timed in the same rounds; one in ms / RTF is absolute: the measurement itself
    relative = ev.budget.get("mode", "").startswith("budget_fraction")
    limit = budget * drift if relative else budget
    p_budget = ev.budget.get("params_budget")  # None: no parameter budget
    product = math.prod(b.speedup_breakdown.values())
    lat_valid = [*lat.validation, {"name": "student (shipped)",
                                   **{k: b.final_prediction[k] for k in
                                      ("predicted_ms", "measured_ms", "error_pct")}}]
    audio_cfg = (f"{cfg.bench.teacher_steps}-step sampler, fp32, eager PyTorch" if
                 cfg.bench.teacher_steps else "eager PyTorch")
    d: dict[str, Any] = {
        "title": f"compress run {cfg.name}: {cfg.model.name} ({st.recipe.family}) -> mobile",
        "family": st.recipe.family,
        "teacher": teacher, "student": student,
        "budget_ms": budget, "budget": ev.budget,
        "budget_met": bool(measured <= limit and (p_budget is None
                                                  or b.student_params <= p_budget)),
        "budget_check": {"measured_ms_per_audio_s": measured, "limit_ms_per_audio_s": limit,
                         "relative_to_teacher": relative, "machine_drift": drift,
                         "params": b.student_params, "params_budget": p_budget},
        # the table's verdict on the budget itself (the search aims `latency_margin` under
        # it, and evolution.json's budget_met is against that aim)
        "budget_met_predicted": bool(float(evo["final_latency_ms"]) <= budget and (
            p_budget is None or int(evo["final_params"]) <= p_budget)),
        "target": st.target,
        "speedup": b.speedup,
        "speedup_breakdown": b.speedup_breakdown,
        "speedup_breakdown_product": product,
        "searched_latency_fraction": lat.searched_fraction,
        "removable_latency_fraction": (None if lat.floor_ms is None
                                       else 1.0 - lat.floor_ms / lat.teacher_ms),
        "score_name": score,
        "quality_retention": retention.get(score),
        "quality_retention_all": retention,
        "iso_quality": b.iso_quality,
        "iso_quality_speedup": b.iso_quality_speedup,
        "iso_quality_fraction": cfg.bench.iso_quality,
        "score_deltas": deltas,
        "score_parts": _score_parts(cfg, deltas),
        "score_noise": {k: v["noise"] for k, v in b.teacher_scores.items()},
        "student_score_noise": {k: v["noise"] for k, v in b.student_scores.items()},
        "decision_noise": ev.score_noise,
        "evolution": history,
        "evolution_summary": {k: evo[k] for k in ("chosen_round", "chosen_decisions",
                                                  "budget_met", "converged",
                                                  "start_score", "start_latency_ms",
                                                  "final_score", "final_noise",
                                                  "final_latency_ms")},
        "precision_plan": lat.precision_plan,
        # groups the quantize stage kept fp32 inside components the latency table timed as
        # int8 (and groups the export gate added): the shipped program differs from the table
        "precision_deviations": [g for g in st.need("export").keep_fp32
                                 if g.split(".")[0] in lat.precision_plan
                                 and lat.precision_plan[g.split(".")[0]] == "int8"],
        "latency_table": {"prediction_error_pct": b.final_prediction["error_pct"],
                          "prediction_error_unanchored_pct":
                              b.final_prediction.get("error_unanchored_pct"),
                          "validation": lat_valid, "table": lat.table, "source": lat.source},
        "artifacts": st.need("export").artifacts,
        "stages": st.stage_rows,
        "pareto": pareto_points(evo["evaluated"], ev.architecture),
        "architecture": {"teacher": st.need("robust").architecture,
                         "student": ev.architecture},
        "quant_sensitivity": _sensitivity_rows(st.need("quantize")),
        "distill": st.need("distill").record.get("history", []),
        "distill_start_temperature": st.need("distill").record.get("start_temperature"),
        "distill_guard": {k: v for k, v in st.need("distill").record.get("guard", {}).items()
                          if k in ("teacher_steps", "skipped", "kept", "reason")},
        "audio": b.audio,
        "bench": {"timings": b.timings,
                  "student_targets": {t: {k: v for k, v in x.items() if k != "profile"}
                                      for t, x in b.student_targets.items()}},
        # where the student's time goes per operator (ETDump), per bench target
        "operator_profile": {t: x["profile"] for t, x in b.student_targets.items()
                             if x.get("profile")},
        "notes": [
            f"Teacher: {audio_cfg}, {cfg.latency.threads} thread(s). Student: the exported "
            f"device program, {cfg.export.precision} where the precision plan allows, run by "
            f"the ExecuTorch runtime. Both timed on the same {b.audio_seconds:.2f} s chunk of "
            "a held-out song, interleaved.",
            "Scores: the test split (held-out songs no stage trained or decided on); the "
            "student is the exported program run chunk by chunk. Noise = standard error over "
            "the items.",
            f"Search decisions: {score} on the val split (other held-out songs), differences "
            f"within the paired noise counted as zero (start noise {ev.score_noise:.4f}).",
        ],
        "commands": {"this run": st.command},
    }
    d["verdict"] = verdict(d)
    return d


def _sensitivity_rows(q: Any) -> list[dict[str, Any]]:
    """The int8 sensitivity rows; when every group int8 together passed and the one-at-a-time
    rows were skipped, that measurement as one row ``(all)``."""
    rows = [{"layer": r["layer"], "score_drop": r["score_drop"], "sqnr_db": r["sqnr_db"],
             "kept_fp32": r["layer"] in q.keep_fp32} for r in q.rows]
    if not rows and q.summary.get("sqnr_db_all") is not None:
        rows = [{"layer": "(all)", "score_drop": q.summary.get("score_drop_all"),
                 "sqnr_db": q.summary["sqnr_db_all"], "kept_fp32": False}]
    return rows
