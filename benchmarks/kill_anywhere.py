"""Kill `compress run` anywhere, resume it, and compare with a run that was never killed.

    python benchmarks/kill_anywhere.py --json benchmarks/results/kill_anywhere.json
    python benchmarks/kill_anywhere.py --kills 4 --json /tmp/k.json     # a quick look

On the tiny preset (``configs/tiny.yaml``):

1. a warm-up run fills a fresh latency cache, so that every later run decides from the same
   latency table (the latency stage times nothing when the cached table has every entry; a
   killed latency stage would otherwise re-time the host and move the search's budget);
2. the reference run, never killed;
3. ``--kills`` runs, each in its own directory, killed with SIGKILL once: the kills are spread
   over the ten stages in turn (two per stage for 20), each at a random instant inside its
   stage — the stage's directory appears, then the run is killed after a uniform fraction of
   the reference's time for that stage; then the same command resumes it to the end.

For each killed run the JSON records where the kill landed (the stage running, the stages
finished), the temporary files the kill left, and after the resume: the exit code, whether any
stage directory holds a ``done.json`` for work the kill cut short (a stage that finished
after the kill point must show "done", not "reused"), the temporary files left (none
allowed), and the comparison with the reference: the chosen architecture, the evolution
history, every stage's recorded result (``done.json``) with the run directory's path and wall
times taken out, the tensor digests of every checkpoint and the sha256 of every exported
program. Differences are listed by key; those in measured timings (the bench stage times the
programs again beside the student) are listed as expected, any other is a failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "tiny.yaml"
STAGES = ["data", "teacher", "robust", "latency", "evolve", "distill", "quantize", "export",
          "bench", "report"]
# keys whose values are measured times or derived from them (the operator profile's rows are
# ordered by measured time, the verdict quotes the speed-up), which may differ run to run
TIMING_WORDS = ("seconds", "_ms", "ms_", "latency", "p50", "p90", "rtf", "speedup", "drift",
                "created", "error_pct", "error_unanchored", "replication", "samples", "profile",
                "validation", "verdict")
MEASURED_VERDICTS = ("budget_met",)
RUN_TIMEOUT = 1800.0


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, LHQ_MOBILE_LATENCY_CACHE=str(cache), PYTHONPATH=str(ROOT))


def _start(out: Path, cache: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "compress", "run", str(CONFIG), "--out",
                                 str(out)], cwd=ROOT, env=_env(cache), stdout=fh,
                                stderr=subprocess.STDOUT)


def _run_to_end(out: Path, cache: Path, log: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    p = _start(out, cache, log)
    try:
        code = p.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        code = -9
    return code, time.monotonic() - t0


def _stage_dir(run: Path, i: int) -> Path:
    return run / f"{i:02d}_{STAGES[i]}"


def _done(run: Path) -> list[str]:
    return [STAGES[i] for i in range(len(STAGES)) if (_stage_dir(run, i) / "done.json").is_file()]


def _temporaries(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp"))


def _seconds(run: Path) -> dict[str, float]:
    out = {}
    for i, name in enumerate(STAGES):
        rec = json.loads((_stage_dir(run, i) / "done.json").read_text())
        out[name] = float(rec["seconds"])
    return out


def _normalise(obj: Any, run: Path) -> Any:
    if isinstance(obj, dict):
        return {k: _normalise(v, run) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise(v, run) for v in obj]
    if isinstance(obj, str):
        return obj.replace(str(run), "RUN")
    return obj


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: obj}


def _is_timing(key: str) -> bool:
    k = key.lower()
    # budget_met: the student program as measured in the bench stage against the budget (the
    # table's verdict, budget_met_predicted, is a decision)
    return any(w in k for w in TIMING_WORDS) or k.rsplit(".", 1)[-1] in MEASURED_VERDICTS


def _digests(run: Path) -> dict[str, str]:
    """Tensor digests of every checkpoint (the header's sha256 over names, dtypes, shapes and
    bytes: the file itself also holds wall times) and the sha256 of every exported program."""
    from models.checkpoint import read_header

    out = {}
    for p in sorted(run.rglob("*.safetensors")):
        out[str(p.relative_to(run))] = read_header(p).sha256
    for p in sorted(run.rglob("*.pte")):
        out[str(p.relative_to(run))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _summary(run: Path) -> dict[str, Any]:
    """What a run decided, normalised for comparison."""
    stages = {}
    for i, name in enumerate(STAGES):
        rec = json.loads((_stage_dir(run, i) / "done.json").read_text())
        stages[name] = _normalise(rec["result"], run)
    rep = _normalise(json.loads((run / "report.json").read_text()), run)
    return {"stages": stages, "report": rep, "digests": _digests(run)}


def compare(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Differences between two runs' summaries: `unexpected` (decisions, results, artifacts),
    `timing` (measured times, expected to differ) and `resume_record` (the report's list of
    stages, each "done" or "reused", with its wall time)."""
    unexpected: list[str] = []
    timing: list[str] = []
    for name in STAGES:
        a, b = _flatten(ref["stages"][name]), _flatten(got["stages"][name])
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                (timing if _is_timing(k) else unexpected).append(f"{name}: {k}")
    resume: list[str] = []
    ra, rb = _flatten(ref["report"]), _flatten(got["report"])
    for k in sorted(set(ra) | set(rb)):
        if ra.get(k) != rb.get(k):
            if k.startswith("stages["):  # the run's own record: "done" or "reused", seconds
                resume.append(f"report: {k}")
            else:
                (timing if _is_timing(k) else unexpected).append(f"report: {k}")
    da, db = ref["digests"], got["digests"]
    artifacts = [k for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
    rep_a, rep_b = ref["report"], got["report"]
    return {
        "architecture_equal": rep_a.get("student", {}).get("architecture")
        == rep_b.get("student", {}).get("architecture"),
        "history_equal": rep_a.get("evolution") == rep_b.get("evolution"),
        "artifacts_equal": not artifacts,
        "artifact_differences": artifacts,
        "unexpected_differences": unexpected,
        "timing_differences": timing,
        "resume_record_differences": resume,
    }


def _kill_once(run: Path, cache: Path, stage: int, frac: float, ref_secs: dict[str, float],
               log: Path) -> dict[str, Any]:
    """Start a fresh run, SIGKILL it `frac` of the reference stage time into stage `stage`."""
    p = _start(run, cache, log)
    target = _stage_dir(run, stage)
    t_start = time.monotonic()
    while not target.exists():
        if p.poll() is not None:
            raise RuntimeError(f"{run}: the run ended (exit {p.returncode}) before stage "
                               f"{STAGES[stage]}; see {log}")
        if time.monotonic() - t_start > RUN_TIMEOUT:
            p.kill()
            raise RuntimeError(f"{run}: stage {STAGES[stage]} never started; see {log}")
        time.sleep(0.002)
    delay = frac * ref_secs[STAGES[stage]]
    time.sleep(delay)
    done_before = _done(run)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done_after = _done(run)  # written between the look and the kill
    running = next((s for s in STAGES if s not in done_after), None)
    return {"planned_stage": STAGES[stage], "fraction": round(frac, 3),
            "delay_s": round(delay, 3), "at_s": round(time.monotonic() - t_start, 2),
            "landed_in": running, "done_at_kill": done_after,
            "raced_a_done_json": done_before != done_after,
            "temporaries_left_by_kill": _temporaries(run)}


def judge(row: dict[str, Any], ref: dict[str, Any], run: Path, log: Path) -> dict[str, Any]:
    """Fill `row` (one killed run, resumed) with its comparison to the reference."""
    row["ok"] = False
    if row.get("resume_exit") != 0:
        return row
    text = log.read_text(errors="replace").split("===== SIGKILL", 1)[1]
    row["stages_rerun"] = [s for s in STAGES if f" {s}: done" in text]
    row["stages_reused"] = [s for s in STAGES if f" {s}: reused" in text]
    # a stage is reused only when its done.json was complete before the kill
    row["reused_only_finished"] = set(row["stages_reused"]) <= set(row["done_at_kill"])
    row["temporaries_after_resume"] = _temporaries(run)
    row.update(compare(ref, _summary(run)))
    row["ok"] = (row["architecture_equal"] and row["history_equal"] and row["artifacts_equal"]
                 and not row["unexpected_differences"] and row["reused_only_finished"]
                 and not row["temporaries_after_resume"])
    return row


def summarise(rows: list[dict[str, Any]], ref_secs: dict[str, float], warm: dict[str, Any],
              wall: float, cache: Path) -> dict[str, Any]:
    landed = sorted({r["landed_in"] for r in rows if r["landed_in"]}, key=STAGES.index)
    return {
        "config": str(CONFIG.relative_to(ROOT)),
        "kills": len(rows),
        "completed": sum(r["resume_exit"] == 0 for r in rows),
        "same_as_reference": sum(bool(r["ok"]) for r in rows),
        "stages_killed_in": landed,
        "kills_per_stage": {s: sum(r["landed_in"] == s for r in rows) for s in STAGES},
        "reference_stage_seconds": ref_secs,
        "warmup_vs_reference": warm,
        "cache_temporaries": sorted(str(p) for p in cache.rglob(".*.tmp")),
        "wall_seconds": round(wall, 1),
        "runs": rows,
    }


def _print(result: dict[str, Any]) -> None:
    for r in result["runs"]:
        print(f"[kill] {r['run']} {r['planned_stage']:>8} +{r['delay_s']:.2f} s -> killed in "
              f"{r['landed_in']}, resume exit {r['resume_exit']}, "
              f"{'same as the reference' if r['ok'] else 'DIFFERENT'} "
              f"({len(r.get('timing_differences', []))} timing keys differ)")
    print(f"{result['completed']}/{result['kills']} resumed runs completed; "
          f"{result['same_as_reference']}/{result['kills']} equal the reference (architecture, "
          f"history, every stage's result, checkpoints and programs); killed in "
          f"{len(result['stages_killed_in'])} of {len(STAGES)} stages: "
          f"{', '.join(result['stages_killed_in'])}; {result['wall_seconds'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="killed runs (default 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="killed runs at once (default 1; each run uses one core at a time)")
    ap.add_argument("--work", type=Path, default=Path("runs/kill_anywhere"),
                    help="where the runs go (default runs/kill_anywhere)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--recompare", type=Path, default=None, metavar="RESULT.json",
                    help="judge the runs of an earlier result again (its --work) without "
                    "running anything, e.g. after a change to the comparison")
    args = ap.parse_args(argv)
    work = args.work.resolve()
    cache = work / "latency_cache"
    if args.recompare is not None:
        old = json.loads(args.recompare.read_text())
        ref = _summary(work / "reference")
        rows = [judge(r, ref, work / r["run"], work / f"{r['run']}.log") for r in old["runs"]]
        result = summarise(rows, old["reference_stage_seconds"],
                           compare(ref, _summary(work / "warmup")), old["wall_seconds"], cache)
        result["recompared"] = True
    else:
        if work.exists() and any(work.iterdir()):
            ap.error(f"--work {work} is not empty; give a new directory")
        result = _run(args, work, cache)
        if result is None:
            return 1
    _print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if result["same_as_reference"] == result["kills"] else 1


def _run(args: argparse.Namespace, work: Path, cache: Path) -> dict[str, Any] | None:
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    print(f"[kill] warm-up run (fills the latency cache) in {work / 'warmup'}", flush=True)
    code, _ = _run_to_end(work / "warmup", cache, work / "warmup.log")
    if code != 0:
        print(f"kill_anywhere: the warm-up run failed (exit {code}); see {work / 'warmup.log'}",
              file=sys.stderr)
        return None
    print("[kill] reference run", flush=True)
    code, ref_wall = _run_to_end(work / "reference", cache, work / "reference.log")
    if code != 0:
        print(f"kill_anywhere: the reference run failed (exit {code}); see "
              f"{work / 'reference.log'}", file=sys.stderr)
        return None
    ref_secs = _seconds(work / "reference")
    ref = _summary(work / "reference")
    print(f"[kill] reference {ref_wall:.0f} s; stages " + ", ".join(
        f"{k} {v:.1f}" for k, v in ref_secs.items()), flush=True)
    rng = random.Random(args.seed)
    plan = [(k, k % len(STAGES), rng.uniform(0.05, 0.95)) for k in range(args.kills)]

    def one(k: int, stage: int, frac: float) -> dict[str, Any]:
        run, log = work / f"kill{k:02d}", work / f"kill{k:02d}.log"
        row: dict[str, Any] = {"run": run.name}
        row.update(_kill_once(run, cache, stage, frac, ref_secs, log))
        with open(log, "a") as fh:
            fh.write(f"\n===== SIGKILL in {row['landed_in']} =====\n")
        code, secs = _run_to_end(run, cache, log)
        row.update({"resume_exit": code, "resume_seconds": round(secs, 1)})
        judge(row, ref, run, log)
        print(f"[kill] {row['run']} done: killed in {row['landed_in']}, resume exit {code}, "
              f"{'same as the reference' if row['ok'] else 'DIFFERENT'}", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda job: one(*job), plan))
    return summarise(rows, ref_secs, compare(ref, _summary(work / "warmup")),
                     time.monotonic() - t_all, cache)


if __name__ == "__main__":
    raise SystemExit(main())
