"""`compress run [CONFIG]`: teacher → mobile student, every stage, resumable, any family with a
recipe (:mod:`compress.recipes`)."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command, add_device_argument, add_set_argument


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "run",
        help="compress a model end to end: robust training, latency table, evolution, "
        "step distillation, int8, export, benchmark, report",
        example="compress run configs/default.yaml --out runs/demo --target host:threads=1",
        run=run,
        description="Run the pipeline of docs/design.md (data -> teacher -> robust -> latency -> "
        "evolve -> distill -> quantize -> export -> bench -> report) into RUN/<NN>_<stage>/. "
        "Without CONFIG the embedded default runs (synthetic corpus, lhq-svc-demo teacher, "
        "host target). An existing RUN made with the same config resumes at its first "
        "unfinished stage; finished stages are reused untouched. The report is "
        "RUN/report.html and RUN/report.json.",
    )
    p.add_argument("config", nargs="?", default=None,
                   help="run config YAML (default: the embedded default, see "
                   "configs/default.yaml)")
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--target", default=None,
                   help="latency target: host, host:threads=N or adb:SERIAL "
                   "(default: the config's latency.target)")
    p.add_argument("--fresh", action="store_true",
                   help="delete an existing run directory first instead of resuming it")
    add_device_argument(p, "training the teacher and the robust fine-tune (the search, "
                        "distillation, quantization and export run on the CPU)")
    add_set_argument(p, "--set evolve.max_rounds=3 --set evolve.budget_ms=12 (the same keys "
                     "as CONFIG; an override is part of the config the run directory "
                     "records)")


def run(args: argparse.Namespace) -> int:
    import logging
    import sys
    import time
    from dataclasses import replace
    from pathlib import Path

    from compress.cli_util import resolve_device
    from compress.config import RunConfig
    from compress.config_io import apply_overrides, from_dict, load_yaml, to_dict
    from compress.pipeline import RunState, build_stages, run_config_dict
    from compress.preflight import check_run
    from compress.recipes import recipe_for
    from compress.rundir import RunDir, RunLock, StageRecord, clear_run_dir, run_stages

    device = resolve_device(args.device)
    if args.config:
        cfg = load_yaml(RunConfig, args.config, args.overrides)
    elif args.overrides:
        cfg = from_dict(RunConfig, apply_overrides(to_dict(RunConfig()), args.overrides),
                        source="embedded default with --set")
    else:
        cfg = RunConfig()
    target = args.target or cfg.latency.target
    # what `compress validate` checks: refused here before the run directory is touched
    check_run(cfg, args.config or "embedded default", args.target)
    if target.startswith("host:threads="):
        cfg = replace(cfg, latency=replace(cfg.latency, threads=int(target.split("=")[1])))
    out = Path(args.out or f"runs/{cfg.name}")
    # one writer per run directory: refused here, before --fresh or any stage touches it
    command = " ".join(["compress", "run", *sys.argv[2:]])
    lock = RunLock(out)
    lock.acquire(command)
    if args.fresh:
        clear_run_dir(out)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    rows: list[dict] = []

    def on_stage(r: StageRecord) -> None:
        rows.append({"name": r.name, "status": r.status, "seconds": round(r.seconds, 1)})
        say(f"stage {r.index:02d} {r.name}: {r.status} ({r.seconds:.1f} s)")

    recipe = recipe_for(cfg.model.name)
    recipe.device = device
    recipe.configure(cfg)
    st = RunState(cfg=cfg, recipe=recipe, target=target, say=say,
                  progress=sys.stderr.isatty(), stage_rows=rows,
                  command=command)
    say(f"run {out} (config {args.config or 'embedded default'}, family {recipe.family}, "
        f"target {target}, device {device})")
    try:
        run_stages(RunDir(out, run_config_dict(cfg, target)), build_stages(), st, on_stage)
    finally:
        lock.release()
    rep = st.need("report")
    print(f"report: {rep.report_html}")
    tail = (f", {cfg.evolve.score} retention {rep.quality_retention:.3f}"
            if rep.quality_retention is not None else "")
    print(f"speedup {rep.speedup:.1f}x{tail}, budget {'met' if rep.budget_met else 'NOT met'}")
    return 0
