"""The run report: ``RUN/report.json`` (machine-readable) and ``RUN/report.html`` (for people).

:func:`write_report` takes one dict with the results of every stage of ``compress run`` and
writes both files. The HTML page opens offline: CSS is inline, plots are PNGs made with the Agg
backend and embedded as base64 ``data:`` URIs, audio clips are copied next to it into
``RUN/report_audio/`` and played with ``<audio controls>`` (or embedded as data URIs when they
are small, see ``embed_audio_max_bytes``). All text taken from the data is escaped.

Required keys (checked all at once; a :class:`~compress.errors.CompressError` lists every
missing or mistyped one):

* ``teacher``, ``student``: ``{params, size_mb, latency_ms_per_audio_s, rtf, scores: {name: x}}``
* ``budget_ms``, ``budget_met``, ``target``, ``speedup``, ``quality_retention``
* ``speedup_breakdown``: ``{steps, runtime, precision, architecture}`` measured factors whose
  product is the speed-up; ``searched_latency_fraction``; ``score_noise`` (``{score: noise}``)
* ``evolution``: ``[{round, action, unit, kind, value, score, latency_ms}, ...]`` (extra keys
  such as ``component``, ``architecture`` are kept): the decisions of
  :func:`compress.evolve.evolve`
* ``latency_table``: ``{prediction_error_pct, validation?: [{name, predicted_ms, measured_ms,
  error_pct}]}``
* ``artifacts``: ``.pte`` paths (a list, or a dict name → path)
* ``stages``: ``[{name, status, seconds}]``; ``pareto``: ``[{architecture, score, latency_ms,
  chosen}]`` (see :func:`pareto_points`); ``quant_sensitivity``: ``[{layer, score_drop,
  kept_fp32}]`` (lists may be empty)

Optional: ``audio`` (``[{name, source, teacher, student}]`` wav paths, or one such dict),
``curves`` (``{name: [y, ...] or [[x, y], ...]}``, e.g. training losses), ``distill`` (the
history of :func:`compress.distill.distill_progressive`), ``distill_guard`` (``{teacher_steps,
skipped, kept, reason}``: whether distillation ran and which student shipped),
``operator_profile`` (``{target: {rows: [{name, kind, calls, total_ms, share}], check, ...}}``
as :class:`device_bench.etdump.OperatorProfile` writes it, or ``{target: {error}}``), ``notes``
(str or list of str), ``commands`` (``{what: command line}``), ``title``. Anything else is
kept in report.json.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from models.fileio import atomic_path, atomic_write_text

SCHEMA = "lhq-mobile/report/v1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
AUDIO_DIR = "report_audio"
AUDIO_ROLES = ("source", "teacher", "student")

_NUM = "number"
_STR = "string"
_LIST = "list"
_DICT = "dict"
_MODEL_KEYS = {
    "params": _NUM,
    "size_mb": _NUM,
    "latency_ms_per_audio_s": _NUM,
    "rtf": _NUM,
    "scores": _DICT,
}
_TOP_KEYS = {
    "teacher": _DICT,
    "student": _DICT,
    "budget_ms": _NUM,
    "budget_met": "bool",
    "speedup_breakdown": _DICT,
    "searched_latency_fraction": _NUM,
    "score_noise": _DICT,
    "target": _STR,
    "speedup": _NUM,
    "quality_retention": _NUM,
    "evolution": _LIST,
    "latency_table": _DICT,
    "artifacts": "list or dict",
    "stages": _LIST,
    "pareto": _LIST,
    "quant_sensitivity": _LIST,
}
_ROW_KEYS = {
    "evolution": {"round": _NUM, "action": _STR, "unit": _STR, "kind": _STR, "value": _NUM,
                  "score": _NUM, "latency_ms": _NUM},
    "stages": {"name": _STR, "status": _STR, "seconds": _NUM},
    "pareto": {"architecture": "list or dict", "score": _NUM, "latency_ms": _NUM,
               "chosen": "bool"},
    "quant_sensitivity": {"layer": _STR, "score_drop": _NUM, "kept_fp32": "bool"},
}


# ---- data -------------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    """`v` as plain JSON data: paths → str, numpy → python, tuples → lists, NaN/inf → None."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, str | bool) or v is None:
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "tolist"):  # numpy scalars / arrays, torch tensors
        return _jsonable(v.tolist())
    if isinstance(v, Iterable):
        return [_jsonable(x) for x in v]
    raise CompressError(f"report: value {v!r} of type {type(v).__name__} is not JSON data")


def _type_ok(v: Any, kind: str) -> bool:
    if kind == _NUM:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool))
    if kind == _STR:
        return isinstance(v, str)
    if kind == _LIST:
        return isinstance(v, list)
    if kind == _DICT:
        return isinstance(v, dict)
    if kind == "bool":
        return isinstance(v, bool)
    return isinstance(v, list | dict)  # "list or dict"


def validate(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` as JSON data, checked for every required key; raises listing all problems."""
    if not isinstance(data, Mapping):
        raise CompressError(f"report: data is a {type(data).__name__}, expected a dict")
    d = _jsonable(data)
    missing: list[str] = []
    wrong: list[str] = []

    def check(obj: dict[str, Any], keys: Mapping[str, str], where: str) -> None:
        for k, kind in keys.items():
            path = f"{where}{k}"
            if k not in obj:
                missing.append(path)
            elif not _type_ok(obj[k], kind):
                wrong.append(f"{path} (got {type(obj[k]).__name__}, expected {kind})")

    check(d, _TOP_KEYS, "")
    for side in ("teacher", "student"):
        if isinstance(d.get(side), dict):
            check(d[side], _MODEL_KEYS, f"{side}.")
            for name, v in (d[side].get("scores") or {}).items():
                if not _type_ok(v, _NUM):
                    wrong.append(f"{side}.scores.{name} (got {type(v).__name__}, expected number)")
    if isinstance(d.get("latency_table"), dict):
        check(d["latency_table"], {"prediction_error_pct": _NUM}, "latency_table.")
    for key, row_keys in _ROW_KEYS.items():
        rows = d.get(key)
        if not isinstance(rows, list):
            continue
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                wrong.append(f"{key}[{i}] (got {type(row).__name__}, expected dict)")
                continue
            check(row, row_keys, f"{key}[{i}].")
    if missing or wrong:
        parts = []
        if missing:
            parts.append("missing keys: " + ", ".join(missing))
        if wrong:
            parts.append("wrong types: " + ", ".join(wrong))
        raise CompressError("report data is incomplete: " + "; ".join(parts))
    return d


def _arch_id(arch: Any) -> str:
    return json.dumps(_jsonable(arch), sort_keys=True)


def pareto_points(evaluated: Iterable[Any], chosen_architecture: Any) -> list[dict]:
    """Report ``pareto`` rows from :attr:`compress.evolve.EvolutionResult.evaluated`
    (candidates, or their ``asdict`` records).

    Architectures are JSON data (a list of block kinds, or a dict per component); a repeated
    one is kept once (the last evaluation); ``chosen`` marks the one equal to
    `chosen_architecture`.
    """
    rows: dict[str, dict[str, Any]] = {}
    chosen = _arch_id(chosen_architecture)
    for c in evaluated:
        def get(key: str, default: Any = None, c: Any = c) -> Any:
            return c.get(key, default) if isinstance(c, Mapping) else getattr(c, key, default)

        arch = get("architecture")
        key = _arch_id(arch)
        rows[key] = {
            "architecture": _jsonable(arch),
            "score": float(get("score")),
            "latency_ms": float(get("latency_ms")),
            "chosen": key == chosen,
            "round": int(get("round", 0)),
            "action": str(get("action", "")),
            "unit": str(get("unit", get("block", ""))),
        }
    return list(rows.values())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated ``(latency, score)`` points (lower latency, higher score),
    sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# ---- audio ------------------------------------------------------------------------------------
def _safe_name(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)
    return keep.strip("._") or "clip"


def _copy_audio(run_dir: Path, audio: Any) -> list[dict[str, Any]]:
    """Copy the clips into RUN/report_audio/; return the clips with run-relative paths."""
    clips = [audio] if isinstance(audio, dict) else audio
    if not isinstance(clips, list):
        raise CompressError(
            f"report: audio is a {type(audio).__name__}, expected a list of "
            "{name, source, teacher, student} dicts"
        )
    out_dir = run_dir / AUDIO_DIR
    result = []
    for i, clip in enumerate(clips):
        if not isinstance(clip, dict):
            raise CompressError(f"report: audio[{i}] is a {type(clip).__name__}, expected dict")
        name = str(clip.get("name", f"clip{i}"))
        roles = [r for r in AUDIO_ROLES if clip.get(r)]
        if not roles:
            raise CompressError(f"report: audio[{i}] ({name}) has none of {AUDIO_ROLES}")
        rec: dict[str, Any] = {"name": name}
        for role in roles:
            src = Path(clip[role])
            if not src.is_file():
                raise CompressError(f"report: audio[{i}].{role}: no such file {src}")
            dst = out_dir / f"{i:02d}_{_safe_name(name)}_{role}{src.suffix.lower() or '.wav'}"
            out_dir.mkdir(parents=True, exist_ok=True)
            if src.resolve() != dst.resolve():
                with atomic_path(dst, suffix=dst.suffix) as tmp:
                    shutil.copyfile(src, tmp)
            rec[role] = dst.relative_to(run_dir).as_posix()
        result.append(rec)
    return result


# ---- plots -------------------------------------------------------------------------------------
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float = 6.0, h: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="tight")
    FigureCanvasAgg(fig)
    return fig


def plot_pareto(pareto: list[dict[str, Any]], budget_ms: float | None) -> str:
    """Quality vs latency of every evaluated architecture, as base64 PNG."""
    fig = _figure()
    ax = fig.add_subplot()
    pts = [(float(p["latency_ms"]), float(p["score"])) for p in pareto
           if p["latency_ms"] is not None and p["score"] is not None]
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, c="#5577aa", alpha=0.7,
                   label="evaluated")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", c="#333333",
                lw=1, drawstyle="steps-post", label="Pareto front")
        chosen = [p for p in pareto
                  if p["chosen"] and p["score"] is not None and p["latency_ms"] is not None]
        if chosen:
            ax.scatter([c["latency_ms"] for c in chosen], [c["score"] for c in chosen],
                       marker="*", s=220, c="#d62728", zorder=5, label="chosen")
    if budget_ms is not None:
        ax.axvline(budget_ms, ls="--", c="#2ca02c", label=f"budget {budget_ms:.3g} ms")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("score (higher is better)")
    ax.set_title("architectures evaluated during evolution")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_curves(curves: Mapping[str, Any]) -> str:
    """One panel per curve (e.g. training losses); log y when all values are positive."""
    names = list(curves)
    fig = _figure(4.0 * min(len(names), 3), 3.0 * math.ceil(len(names) / 3))
    for k, name in enumerate(names):
        ax = fig.add_subplot(math.ceil(len(names) / 3), min(len(names), 3), k + 1)
        ys = curves[name]
        if not isinstance(ys, list):
            raise CompressError(f"report: curves.{name} is a {type(ys).__name__}, expected a list")
        pairs = [(float(v[0]), v[1]) if isinstance(v, list) else (float(i), v)
                 for i, v in enumerate(ys)]
        pairs = [(x, float(y)) for x, y in pairs if y is not None]
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], lw=1)
        if pairs and all(p[1] > 0 for p in pairs):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_latency_validation(rows: list[dict[str, Any]]) -> str:
    """Predicted vs measured whole-model latency (the latency table's check)."""
    fig = _figure(4.5, 4.0)
    ax = fig.add_subplot()
    xs = [float(r["measured_ms"]) for r in rows]
    ys = [float(r["predicted_ms"]) for r in rows]
    ax.scatter(xs, ys, c="#5577aa")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(str(r.get("name", "")), (x, y), fontsize=7)
    hi = max([*xs, *ys, 1e-9]) * 1.1
    ax.plot([0, hi], [0, hi], "--", c="#999999", lw=1, label="exact")
    ax.fill_between([0, hi], [0, 0.9 * hi], [0, 1.1 * hi], color="#2ca02c", alpha=0.1,
                    label="±10 %")
    ax.set_xlabel("measured (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_quant_sensitivity(rows: list[dict[str, Any]]) -> str:
    """Score drop when quantizing each layer alone; red bars stayed fp32."""
    fig = _figure(6.0, max(2.0, 0.25 * len(rows) + 1.0))
    ax = fig.add_subplot()
    drops = [float(r["score_drop"] or 0.0) for r in rows]
    colors = ["#d62728" if r["kept_fp32"] else "#5577aa" for r in rows]
    ax.barh(range(len(rows)), drops, color=colors)
    ax.set_yticks(range(len(rows)), [str(r["layer"]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("score drop when this layer alone is int8 (red: kept fp32)")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


# ---- HTML -------------------------------------------------------------------------------------
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    return str(v)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    c = f' class="{_e(cls)}"' if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>{body}</section>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.summary td{font-weight:600}.ok{color:#1a7f37}.bad{color:#c62828}
img{max-width:100%;border:1px solid #eee}
.clip{margin:.6em 0}.clip span{display:inline-block;min-width:5em}
code{background:#f5f5f5;padding:0 .2em}
"""


def _audio_tag(run_dir: Path, rel: str, embed_max: int) -> str:
    path = run_dir / rel
    if path.stat().st_size <= embed_max:
        mime = "audio/wav" if path.suffix.lower() == ".wav" else "audio/mpeg"
        src = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    else:
        src = _e(rel)
    return f'<audio controls preload="none" src="{src}"></audio>'


def render_html(d: dict[str, Any], run_dir: Path, embed_audio_max_bytes: int = 0) -> str:
    """The report page for validated data `d` (audio paths relative to `run_dir`)."""
    t, s = d["teacher"], d["student"]
    title = str(d.get("title") or f"compress run report — {run_dir.name}")
    parts = [f"<h1>{_e(title)}</h1>"]
    lt = d["latency_table"]
    err = lt["prediction_error_pct"]
    if d.get("verdict"):
        parts.append(f'<p class="verdict"><b>{_e(d["verdict"])}</b></p>')
    parts.append(_table(
        ["target", "budget (ms per audio s)", "budget met", "speedup (teacher / student)",
         "searched latency fraction", "quality retention", "latency-table error (%)"],
        [[d["target"], d["budget_ms"], d["budget_met"], d["speedup"],
          d["searched_latency_fraction"], d["quality_retention"], err]],
        "summary",
    ))
    iso = d.get("iso_quality")
    if iso and d.get("iso_quality_speedup") is not None:
        rows = [[r["steps"], r["temperature"], r["score"], r["paired_noise"],
                 r["kept_fraction"], r["keeps"]] for r in iso.get("tried", [])]
        parts.append(_section("iso", "Iso-quality baseline", (
            f"<p>The teacher's fewest sampler steps keeping "
            f"{_fmt(100 * float(d.get('iso_quality_fraction') or 0))} % of its own "
            f"{_e(str(d.get('score_name')))} ({_fmt(iso['reference'])}): {iso['steps']} "
            f"step(s) at temperature {_fmt(iso['temperature'])}, score {_fmt(iso['score'])}. "
            f"The student is {_fmt(d['iso_quality_speedup'])}x faster than that teacher "
            f"({_fmt(d['speedup'])}x than the teacher's own setting).</p>")
            + (_table(["steps", "temperature", "score", "paired noise", "kept fraction",
                       "keeps the score"], rows) if rows else "")))
    sp = d.get("score_parts") or {}
    if sp:
        rows = [[part, r["score"], r["weight"], r["teacher"], r["teacher_noise"],
                 r["student"], r["student_noise"], r["paired_noise"], r["delta"],
                 r["delta_counted"]] for part, r in sp.items()]
        parts.append(_section("parts", "The search score's parts", _table(
            ["part", "score", "weight", "teacher", "± noise", "student", "± noise",
             "paired noise", "Δ", "Δ counted (0 within the noise)"], rows)))
    bd = d["speedup_breakdown"]
    parts.append(_section("breakdown", "Where the speed-up comes from", _table(
        ["factor", "×"], [[k, v] for k, v in bd.items()]
        + [["product", math.prod(float(v) for v in bd.values() if v is not None)]])))
    for note in [d["notes"]] if isinstance(d.get("notes"), str) else d.get("notes") or []:
        parts.append(f"<p>{_e(note)}</p>")

    stage_rows = [[r["name"], r["status"], r["seconds"]] for r in d["stages"]]
    total = sum(float(r["seconds"] or 0.0) for r in d["stages"])
    stage_rows.append(["total", "", total])
    parts.append(_section("stages", "Stages", _table(["stage", "status", "seconds"], stage_rows)))

    rows: list[list[Any]] = []
    for key, label in (("params", "parameters"), ("size_mb", "size (MB)"),
                       ("latency_ms_per_audio_s", "latency (ms per s of audio)"),
                       ("rtf", "real-time factor")):
        rows.append([label, t[key], s[key], _ratio(s[key], t[key])])
    names = list(dict.fromkeys([*t["scores"], *s["scores"]]))
    noise = d["score_noise"]
    for n in names:
        tv, sv = t["scores"].get(n), s["scores"].get(n)
        label = f"score: {n}" + (f" (± {_fmt(noise[n])})" if noise.get(n) is not None else "")
        rows.append([label, tv, sv, _ratio(sv, tv)])
    extra = [k for k in dict.fromkeys([*t, *s]) if k not in _MODEL_KEYS]
    for k in extra:
        rows.append([k, t.get(k), s.get(k), ""])
    parts.append(_section("comparison", "Teacher vs student",
                          _table(["", "teacher", "student", "student / teacher"], rows)))

    evo_rows = [[r["round"], r["action"], r["unit"], r["kind"], r.get("component", ""),
                 r["value"], r["score"], r["latency_ms"], r.get("chosen", "")]
                for r in d["evolution"]]
    body = _table(["round", "action", "unit", "kind", "component", "value (Δscore/Δms)",
                   "score", "latency (ms)", "in the chosen model"], evo_rows) \
        if evo_rows else "<p>No evolution rounds.</p>"
    parts.append(_section("evolution", "Architecture evolution", body))

    body = _img(plot_pareto(d["pareto"], d["budget_ms"]), "Pareto plot: quality vs latency")
    chosen = [p for p in d["pareto"] if p["chosen"]]
    if chosen:
        c = chosen[0]
        body += (f"<p>Chosen: <code>{_e(_fmt(c['architecture']))}</code> — score "
                 f"{_e(_fmt(c['score']))}, {_e(_fmt(c['latency_ms']))} ms "
                 f"({len(d['pareto'])} architectures evaluated).</p>")
    parts.append(_section("pareto", "Quality vs latency (Pareto)", body))

    body = f"<p>Prediction error of the final architecture: <b>{_e(_fmt(err))} %</b></p>"
    val = lt.get("validation") or []
    if val:
        body += _table(["model", "predicted (ms)", "measured (ms)", "error (%)"],
                       [[r.get("name"), r.get("predicted_ms"), r.get("measured_ms"),
                         r.get("error_pct")] for r in val])
        body += _img(plot_latency_validation(val), "latency table: predicted vs measured")
    parts.append(_section("latency", "Latency table", body))

    if d.get("operator_profile"):
        parts.append(_section("profile", "Where the student's time goes (per operator)",
                              _profile_html(d["operator_profile"])))

    guard = d.get("distill_guard") or {}
    if d.get("distill") or guard:
        body = (f"<p>Shipped: the <b>{html.escape(str(guard.get('kept')))}</b> one-step "
                f"student. {html.escape(str(guard.get('reason', '')))}</p>") if guard else ""
        if d.get("distill"):
            body += _table(
                ["stage", "from steps", "to steps", "loss (start)", "loss (end)"],
                [[r.get("stage"), r.get("from_steps"), r.get("to_steps"), r.get("loss_start"),
                  r.get("loss_end")] for r in d["distill"]])
        parts.append(_section("distill", "Step distillation", body))

    qs = d["quant_sensitivity"]
    if qs:
        body = _table(["layer", "score drop", "kept fp32"],
                      [[r["layer"], r["score_drop"], r["kept_fp32"]] for r in qs])
        body += _img(plot_quant_sensitivity(qs), "per-layer quantization sensitivity")
    else:
        body = "<p>No per-layer sensitivity was measured.</p>"
    parts.append(_section("quantization", "int8: per-layer sensitivity", body))

    if d.get("curves"):
        parts.append(_section("curves", "Training curves",
                              _img(plot_curves(d["curves"]), "training curves")))

    clips = d.get("audio") or []
    if clips:
        body = ""
        for clip in clips:
            body += f'<div class="clip"><h3>{_e(clip["name"])}</h3>'
            for role in AUDIO_ROLES:
                if role in clip:
                    tag = _audio_tag(run_dir, clip[role], embed_audio_max_bytes)
                    body += f"<div><span>{_e(role)}</span> {tag}</div>"
            body += "</div>"
        parts.append(_section("audio", "Listen", body))

    arts = d["artifacts"]
    items = arts.items() if isinstance(arts, dict) else [("", a) for a in arts]
    art_rows = []
    for name, p in items:
        f = Path(str(p))
        f = f if f.is_absolute() else run_dir / f
        art_rows.append([name, p, round(f.stat().st_size / 1e6, 3) if f.is_file() else None])
    parts.append(_section("artifacts", "Artifacts",
                          _table(["name", "path", "size (MB)"], art_rows)))

    if d.get("commands"):
        parts.append(_section("commands", "How it was measured", _table(
            ["what", "command"], [[k, v] for k, v in d["commands"].items()])))

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _profile_html(profiles: Mapping[str, Any], top: int = 25) -> str:
    """One table per bench target: the student's operators by time (ETDump), largest first,
    and the check of their total against the same run's measured latency."""
    body = ("<p>One more run of the student program with ExecuTorch's ETDump profiler: "
            "milliseconds and calls per forward call, averaged over the timed iterations. "
            "Names are the runtime's (the delegate's for delegated operators, the kernel's "
            "otherwise); the profiler's own cost is in the numbers.</p>")
    for target, p in profiles.items():
        body += f"<h3>{_e(target)}</h3>"
        if p.get("error"):
            body += f'<p class="bad">No profile: {_e(p["error"])}</p>'
            continue
        rows = p.get("rows") or []
        shown = [[r["name"], r["kind"], r["calls"], r["total_ms"], 100.0 * r["share"]]
                 for r in rows[:top]]
        rest = rows[top:]
        if rest:
            shown.append([f"({len(rest)} more operators)", "", sum(r["calls"] for r in rest),
                          sum(r["total_ms"] for r in rest),
                          100.0 * sum(r["share"] for r in rest)])
        cls = "ok" if p.get("within") else "bad"
        body += f'<p class="{cls}">{_e(p.get("check", ""))}</p>'
        body += "".join(f"<p>{_e(n)}</p>" for n in p.get("notes") or [])
        body += _table(["operator", "kind", "calls", "ms per forward", "share (%)"], shown)
        if p.get("etdump"):
            body += f"<p>ETDump: <code>{_e(p['etdump'])}</code></p>"
    return body


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def write_report(
    run_dir: str | os.PathLike[str], data: Mapping[str, Any], embed_audio_max_bytes: int = 0
) -> tuple[Path, Path]:
    """Validate `data`, copy its audio clips, write ``RUN/report.json`` and ``RUN/report.html``.

    Audio clips up to `embed_audio_max_bytes` are embedded in the page as data URIs; larger ones
    are referenced by their relative path under ``RUN/report_audio/``. Returns both paths.
    """
    run = Path(run_dir)
    d = validate(data)
    run.mkdir(parents=True, exist_ok=True)
    if d.get("audio"):
        d["audio"] = _copy_audio(run, d["audio"])
    d = {"schema": SCHEMA, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         **d}
    page = render_html(d, run, embed_audio_max_bytes)
    json_path, html_path = run / REPORT_JSON, run / REPORT_HTML
    atomic_write_text(json_path, json.dumps(d, indent=2, allow_nan=False))
    atomic_write_text(html_path, page)
    return json_path, html_path
