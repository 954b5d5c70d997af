"""Does every stage of the LHQ-SVC recipe earn its place? One table of every judge and the
latency per audio second for each stage's output, on held-out clips (issue 28, item 5).

Usage::

    .venv/bin/python benchmarks/ablation.py --run RUN_DIR [--json OUT] [--clips N]
        [--seconds S] [--steps 1,2,4,8,50] [--temperatures 0,0.5,1] [--repeats R] [--quick]

``RUN_DIR`` is a finished ``compress run`` of the LHQ-SVC recipe (``make demo`` writes
``runs/demo``). Its stages' outputs are the **systems**:

* ``mu`` — the conditioner's prior mean μ (the Grad-TTS-style mel the decoder's diffusion is a
  residual of, :mod:`models.lhq_svc.decoder`) vocoded directly: the teacher with no diffusion
  at all (``01_teacher``);
* ``teacher_<k>step_t<T>`` — the teacher (``01_teacher``) through DDIM with k steps from
  ``T * noise`` (k from ``--steps``, T from ``--temperatures``; the teacher's own temperature is
  the checkpoint's, 0 for the demo preset);
* ``evolved_1step`` — the searched architecture after its fine-tunes, before distillation
  (``04_evolve``), at one DDIM step: what plain one-step sampling of the searched model gives;
* ``student_eager`` — the distilled one-step student (``05_distill``) as the device program
  runs it (its fixed noise buffer, its temperature), fp32 eager PyTorch;
* ``student_int8_pte`` — the shipped ``.pte`` (``07_export``'s ``pte_<precision>``, the whole
  pipeline's program) in the ExecuTorch runtime.

**Clips and scores.** The run's ``test`` split (held-out songs no stage trained or decided
on), ``--clips`` conversion jobs A → B (round robin over the test songs, as the run's report
takes them) of ``--seconds`` each, scored by the recipe's own
:meth:`~compress.recipes.lhq_svc.LHQSVCRecipe.evaluate`: every score of
:mod:`compress.scores` — speaker similarity, STOI / PESQ / LSD / MCD against the parallel
ground truth, DIO and CREPE pitch, Distill-MOS, DNSMOS P.835 / P.808 and the ``combined``
search score with the run's weights — chunked as the app runs (``export.chunk_seconds``).
Each score is the mean over the clips with its noise (standard error over the clips); a
difference between two systems is judged against the paired noise of their per-clip
differences. At temperature above 0 the sampler's noise also moves a score: ``--seeds N``
(default 1) repeats those systems with N seeds and averages per clip.

**Latency.** One chunk of a held-out clip (``export.chunk_seconds``), one thread, every system
timed in ``--repeats`` interleaved rounds (median of the pooled samples), as ms per second of
audio: the teacher at k steps through ``convert`` (as the run's bench times it), μ through the
conditioning and the vocoder, the student's device program eager, and the ``.pte`` in the
runtime.

**Answers** (printed and saved): for every score, (1) the best teacher setting by ``combined``
against μ — does the diffusion decoder earn its cost over μ by any judge? (2) the distilled
student against ``evolved_1step`` and against the teacher at one step and the student's
temperature — does distillation beat plain one-step DDIM? A difference within its paired
noise is reported as none.

``--quick``: 2 clips of 2 s, steps 1 and 4, temperatures 0 and 1, 1 timing round (a smoke
test, not a measurement). Prints a table and writes ``--json``::

    {"run", "clips", "seconds", "seeds", "chunk_seconds", "threads", "systems": [{"system",
     "stage", "steps", "temperature", "ms_per_audio_s", "scores": {name: {"value", "noise",
     "items"}}}], "answers": {"diffusion_vs_mu": {...}, "distill_vs_ddim": {...}}}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compress.errors import CompressError  # noqa: E402
from compress.recipes.base import DataSplits, ScoreResult  # noqa: E402

# the scores the answers are given for (every other score is in the table and the JSON)
ANSWER_SCORES = ("combined", "speaker_similarity", "stoi", "crepe_chroma", "neg_lsd", "neg_mcd",
                 "distill_mos", "dnsmos_ovrl", "dnsmos_p808")
# the table's columns: the same but MCD (the JSON and the answers have it)
TABLE_SCORES = tuple(n for n in ANSWER_SCORES if n != "neg_mcd")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PriorOnly(nn.Module):
    """The teacher without its diffusion: the prior mean μ (the conditioning's last
    ``n_mels`` channels, normalised) denormalised and vocoded, with the device program's
    signature ``(audio, speaker, shift) -> audio``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not getattr(model.decoder, "mel_prior", False):
            raise CompressError("the teacher has no mel prior (mel_prior_layers 0): there is "
                                "no μ to vocode")
        self.model = model

    def forward(self, audio: torch.Tensor, speaker: torch.Tensor, shift: torch.Tensor
                ) -> torch.Tensor:
        m = self.model
        cond, f0 = m.features(audio, speaker, shift)
        mu = cond[:, m.decoder.cond_dim:]
        out = m.vocode(m.denormalize_mel(mu), f0)
        return out[..., : audio.shape[-1]]


@dataclass
class System:
    name: str
    stage: str
    steps: int | None
    temperature: float | None
    subject: Any  # what the recipe's evaluate scores
    model: nn.Module  # gives the speakers, rates and chunking
    eager_steps: int | None  # evaluate's teacher_steps (None: a device program)
    timer: Callable[[], float]  # one timing sample, ms per chunk


@dataclass
class Run:
    root: Path
    cfg: Any
    recipe: Any
    splits: DataSplits


def load_run(root: Path) -> Run:
    from compress.config import RunConfig
    from compress.config_io import from_dict
    from compress.recipes import recipe_for

    try:
        conf = json.loads((root / "config.json").read_text())["config"]["config"]
        done = json.loads((root / "00_data" / "done.json").read_text())
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise CompressError(f"{root}: not a finished compress run ({exc})") from None
    cfg = from_dict(RunConfig, conf, source=str(root / "config.json"))
    recipe = recipe_for(cfg.model.name)
    if recipe.family != "lhq-svc":
        raise CompressError(f"{root}: a run of the {recipe.family} family; the ablation is of "
                            "the LHQ-SVC recipe")
    recipe.configure(cfg)
    splits = DataSplits.from_json(done["result"]["splits"])
    for stage in ("01_teacher", "04_evolve", "05_distill", "07_export"):
        if not (root / stage / "done.json").is_file():
            raise CompressError(f"{root}: stage {stage} has not finished; run `compress run` "
                                "to the end first")
    return Run(root, cfg, recipe, splits)


def _timer(fn: Callable[[], Any]) -> Callable[[], float]:
    def sample() -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000.0

    return sample


def build_systems(run: Run, steps: Sequence[int], temperatures: Sequence[float],
                  inputs: tuple[torch.Tensor, ...]) -> list[System]:
    from export.runtime import PteRunner

    rc, root = run.recipe, run.root
    teacher = rc.load(root / "01_teacher" / "model.safetensors").eval()
    evolved = rc.load(root / "04_evolve" / "model.safetensors").eval()
    student = rc.load(root / "05_distill" / "model.safetensors").eval()
    art = json.loads((root / "07_export" / "done.json").read_text())["result"]["artifacts"]
    # the whole pipeline's program at the export precision (beside it: the decoder alone)
    key = f"pte_{run.cfg.export.precision}"
    if key not in art or not Path(art[key]).is_file():
        raise CompressError(f"{root}/07_export: no {key} program ({sorted(art)})")
    pte = Path(art[key])
    audio, spk, shift = inputs
    t_inputs = rc.inputs_for(teacher, inputs)

    def eager(model: nn.Module, k: int | None) -> Callable[[], float]:
        ins = rc.inputs_for(model, inputs)
        return lambda: rc.eager_ms(model, ins, k, repeats=1, threads=1)

    prior = PriorOnly(teacher).eval()

    def prior_call() -> Any:
        with torch.no_grad():
            return prior(*t_inputs)

    runner = PteRunner(str(pte), threads=1)
    student_program = rc.device_program(student).eval()
    out = [System("mu", "01_teacher", 0, None, prior, teacher, None, _timer(prior_call))]
    for k in steps:
        for temp in temperatures:
            out.append(System(f"teacher_{k}step_t{temp:g}", "01_teacher", k, float(temp),
                              teacher, teacher, k, eager(teacher, k)))
    out.append(System("evolved_1step", "04_evolve", 1, float(evolved.temperature), evolved,
                      evolved, 1, eager(evolved, 1)))
    out.append(System("student_eager", "05_distill", 1, float(student.temperature),
                      student_program, student, None, eager(student, None)))
    out.append(System("student_int8_pte", pte.name, 1, float(student.temperature), runner,
                      student, None, _timer(lambda: runner(audio, spk, shift))))
    return out


def score_system(run: Run, s: System, clips: int, seconds: float, seeds: int
                 ) -> dict[str, ScoreResult]:
    """Every score of `s` on the test clips; at temperature > 0 the mean over `seeds` seeds
    per clip (the sampler's noise)."""
    rc = run.recipe
    ev = {"items": clips, "seconds": seconds, "chunk_seconds": run.cfg.export.chunk_seconds}
    tag = f"ablation:{s.name}"
    if s.eager_steps is None:  # a device program: its noise is baked in
        return rc.evaluate(s.subject, tag, s.model, run.splits, "test", teacher_steps=None,
                           **ev)
    n = seeds if (s.temperature or 0.0) > 0 else 1
    per_seed = [rc.evaluate(s.subject, tag, s.model, run.splits, "test",
                            teacher_steps=s.eager_steps, temperature=s.temperature, seed=seed,
                            **ev) for seed in range(n)]
    if n == 1:
        return per_seed[0]
    out = {}
    for name in per_seed[0]:
        items = [r[name].items for r in per_seed if name in r]
        if len({len(i) for i in items}) == 1:
            out[name] = ScoreResult.from_items(name, np.mean(np.asarray(items), axis=0))
    return out


def time_systems(systems: list[System], repeats: int) -> dict[str, float]:
    """Median ms per chunk of each system over `repeats` interleaved rounds (the bench
    stage's :func:`compress.pipeline._interleaved`), after one warm-up call each."""
    from compress.pipeline import _interleaved

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for s in systems:
            s.timer()
        stats = _interleaved({s.name: (lambda s=s: [s.timer()]) for s in systems}, repeats)
    finally:
        torch.set_num_threads(old)
    return {k: float(v.p50_ms) for k, v in stats.items()}


def paired(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """a − b over the shared clips with the paired noise, as the run's report counts it
    (:func:`compress.report_data.score_deltas`): a difference within it is ``"none"``."""
    from compress.report_data import score_deltas

    d = score_deltas({"s": b}, {"s": a})["s"]
    if len(a["items"]) != len(b["items"]) or len(a["items"]) < 2:
        return {"delta": d["delta"], "noise": None, "verdict": "unpaired"}
    verdict = ("none" if d["delta_counted"] == 0.0
               else "higher" if d["delta"] > 0 else "lower")
    return {"delta": d["delta"], "noise": d["paired_noise"], "verdict": verdict}


def answers(records: list[dict[str, Any]], student_temperature: float | None
            ) -> dict[str, Any]:
    by = {r["system"]: r for r in records}
    teachers = [r for r in records if r["system"].startswith("teacher_")
                and "combined" in r["scores"]]
    out: dict[str, Any] = {}
    if teachers and "mu" in by:
        best = max(teachers, key=lambda r: r["scores"]["combined"]["value"])
        rows = {n: paired(best["scores"][n], by["mu"]["scores"][n]) for n in ANSWER_SCORES
                if n in best["scores"] and n in by["mu"]["scores"]}
        out["diffusion_vs_mu"] = {
            "best_teacher": best["system"], "ms_per_audio_s": best["ms_per_audio_s"],
            "mu_ms_per_audio_s": by["mu"]["ms_per_audio_s"], "scores": rows,
            "earns_its_cost_by": [n for n, r in rows.items() if r["verdict"] == "higher"]}
    if "student_eager" in by:
        st = by["student_eager"]
        dd: dict[str, Any] = {}
        t1 = [r for r in teachers if r["steps"] == 1]
        if student_temperature is not None:
            t1 = [r for r in t1 if r["temperature"] == student_temperature] or t1
        for ref in ([by["evolved_1step"]] if "evolved_1step" in by else []) + t1[:1]:
            rows = {n: paired(st["scores"][n], ref["scores"][n]) for n in ANSWER_SCORES
                    if n in st["scores"] and n in ref["scores"]}
            dd[ref["system"]] = {"scores": rows,
                                 "better_by": [n for n, r in rows.items()
                                               if r["verdict"] == "higher"],
                                 "worse_by": [n for n, r in rows.items()
                                              if r["verdict"] == "lower"]}
        out["distill_vs_ddim"] = dd
    return out


def _fmt(r: dict[str, Any] | None) -> str:
    if r is None:
        return "—"
    return f"{r['value']:.3f}±{r['noise']:.3f}"


def print_table(records: list[dict[str, Any]]) -> None:
    cols = [n for n in TABLE_SCORES if any(n in r["scores"] for r in records)]
    head = f"{'system':24s} {'ms/audio s':>10s} " + " ".join(f"{c[:14]:>14s}" for c in cols)
    print(head)
    for r in records:
        print(f"{r['system']:24s} {r['ms_per_audio_s']:10.1f} "
              + " ".join(f"{_fmt(r['scores'].get(c)):>14s}" for c in cols))


def print_answers(ans: dict[str, Any]) -> None:
    d = ans.get("diffusion_vs_mu")
    if d:
        print(f"\ndiffusion vs μ: the best teacher setting by combined, {d['best_teacher']} "
              f"({d['ms_per_audio_s']:.1f} ms per audio s), against μ "
              f"({d['mu_ms_per_audio_s']:.1f} ms):")
        for n, r in d["scores"].items():
            print(f"  {n:20s} {r['delta']:+.4f} ± {r['noise'] or 0:.4f}  {r['verdict']}")
        print("  earns its cost by: " + (", ".join(d["earns_its_cost_by"]) or "no judge"))
    for ref, r in (ans.get("distill_vs_ddim") or {}).items():
        print(f"\ndistilled student (eager) vs {ref}:")
        for n, x in r["scores"].items():
            print(f"  {n:20s} {x['delta']:+.4f} ± {x['noise'] or 0:.4f}  {x['verdict']}")
        print(f"  better by: {', '.join(r['better_by']) or 'no judge'}; worse by: "
              f"{', '.join(r['worse_by']) or 'no judge'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a finished LHQ-SVC compress run folder")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--clips", type=int, default=6, help="test conversion jobs (default 6)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds per clip (default 4)")
    ap.add_argument("--steps", default="1,2,4,8,50", help="teacher DDIM step counts")
    ap.add_argument("--temperatures", default="0,0.5,1", help="teacher sampler temperatures")
    ap.add_argument("--seeds", type=int, default=1,
                    help="seeds averaged per clip at temperature > 0 (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--quick", action="store_true", help="a smoke test (module docstring)")
    args = ap.parse_args(argv)
    import logging

    from compress.cli_util import quiet_dependencies

    quiet_dependencies(logging.WARNING)  # dependency warnings stay out of the terminal
    try:
        steps = [int(x) for x in args.steps.split(",") if x.strip()]
        temps = [float(x) for x in args.temperatures.split(",") if x.strip()]
    except ValueError:
        print("error: --steps and --temperatures are comma-separated numbers", file=sys.stderr)
        return 2
    if args.quick:
        args.clips, args.seconds, args.repeats = 2, 2.0, 1
        steps, temps = [1, 4], [0.0, 1.0]
    if args.clips < 2 or min(steps, default=0) < 1 or args.seeds < 1:
        print("error: --clips >= 2 (the noise needs two), steps >= 1, --seeds >= 1",
              file=sys.stderr)
        return 2
    from models.errors import ModelsError

    try:
        return _run(args, steps, temps)
    except (CompressError, ModelsError) as exc:  # e.g. a run whose corpus was moved
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, steps: list[int], temps: list[float]) -> int:
    t_start = time.time()
    torch.set_num_threads(1)
    run = load_run(Path(args.run))
    student = run.recipe.load(run.root / "05_distill" / "model.safetensors")
    # the chunk the run's bench stage times: the first of the test split's example inputs
    inputs = run.recipe.example_inputs(student, run.splits, "test", 1,
                                       run.cfg.export.chunk_seconds)[0]
    secs = run.recipe.audio_seconds(student, inputs)
    systems = build_systems(run, steps, temps, inputs)
    say(f"ablation of {run.root}: {len(systems)} systems, {args.clips} test clips of "
        f"{args.seconds:g} s, timing {secs:g}-s chunks ({args.repeats} rounds)")
    timings = time_systems(systems, args.repeats)
    records = []
    for i, s in enumerate(systems):
        t0 = time.time()
        res = score_system(run, s, args.clips, args.seconds, args.seeds)
        rec = {"system": s.name, "stage": s.stage, "steps": s.steps,
               "temperature": s.temperature, "ms_per_audio_s": timings[s.name] / secs,
               "scores": {k: v.to_json() for k, v in res.items()}}
        records.append(rec)
        comb = res.get("combined")
        say(f"[{i + 1}/{len(systems)}] {s.name}: {timings[s.name] / secs:.1f} ms per audio s"
            + (f", combined {comb.value:.4f} ± {comb.noise:.4f}" if comb else "")
            + f" ({time.time() - t0:.0f} s)")
    ans = answers(records, float(student.temperature))
    print_table(records)
    print_answers(ans)
    out = {"run": str(run.root), "clips": args.clips, "seconds": args.seconds,
           "seeds": args.seeds, "chunk_seconds": run.cfg.export.chunk_seconds, "threads": 1,
           "quick": bool(args.quick), "weights": run.cfg.evolve.weights(),
           "pitch_judge": f"crepe-{run.cfg.evolve.pitch_judge}",
           "wall_seconds": time.time() - t_start, "systems": records, "answers": ans}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, allow_nan=False,
                                              default=lambda o: None))
        say(f"wrote {args.json}")
    say(f"ablation took {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    from compress.cli_util import filter_native_stderr

    filter_native_stderr()  # the runtime's own stderr lines (cpuinfo, threadpool)
    sys.exit(main())
