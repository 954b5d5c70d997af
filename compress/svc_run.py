"""`compress run` for LHQ-SVC: teacher → LHQ-SVC_mobile in ten resumable stages.

DESIGN.md, "Data flow of `compress run`":

    data → teacher → robust → latency → evolve → distill → quantize → export → bench → report

Each stage writes ``RUN/<NN>_<stage>/`` and its ``done.json`` last (:mod:`compress.rundir`), so a
killed run resumes at the first unfinished stage; ``teacher`` and ``distill`` also resume inside
the stage from their own checkpoints. What each stage does and returns (its ``done.json``
``result``):

* **data** — the synthetic corpus (``models.data.corpus``) or a folder; features are computed
  and cached by ``load_corpus``. → ``{corpus, singers, clips}``
* **teacher** — loads ``model.checkpoint`` or trains the preset (``models.lhq_svc.train``).
* **robust** — fine-tunes with each evolvable block skipped with probability p (LHQ-SVC eq. 1).
* **latency** — a per-block latency table of the one-step on-device path at the run's chunk,
  fp32 and int8, measured on the target (:mod:`compress.latency_probe`), validated against the
  whole teacher architecture; saved per device fingerprint and reused when found.
* **evolve** — remove / duplicate blocks by Δscore / Δlatency under the budget
  (:mod:`compress.evolve`), short robust fine-tunes between rounds.
* **distill** — progressive step distillation N → … → 1 (:mod:`compress.distill`).
* **quantize** — per-group int8 sensitivity; the groups that cost too much stay fp32
  (:mod:`compress.quantize`).
* **export** — the student's whole on-device path to ``.pte`` (int8, gated) (+ ``.onnx``).
* **bench** — teacher (``bench.teacher_steps`` DDIM steps, fp32, eager, 1 thread) vs student
  (``.pte`` on every bench target) per second of audio, side by side; every score for both on
  held-out songs; the latency table's error on the final architecture.
* **report** — ``RUN/report.json`` + ``RUN/report.html`` (:mod:`compress.report`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.config import RunConfig
from compress.errors import CompressError
from compress.rundir import Stage, atomic_write_text

log = logging.getLogger(__name__)

STAGES = ("data", "teacher", "robust", "latency", "evolve", "distill", "quantize", "export",
          "bench", "report")
MODEL_FILE = "model.safetensors"
LATENCY_CACHE_ENV = "LHQ_MOBILE_LATENCY_CACHE"


# ---- small helpers ----------------------------------------------------------------------------
def _say(ctx: dict[str, Any], msg: str) -> None:
    printer = ctx.get("print")
    if printer is not None:
        printer(msg)
    log.info(msg)


def _load(path: str | Path) -> Any:
    from models.checkpoint import load_model

    model, header = load_model(path)
    model.eval()
    return model, header


def _save(model: Any, path: Path, name: str, history: list[dict[str, Any]],
          extra: dict[str, Any]) -> Path:
    from models.checkpoint import save_checkpoint

    return save_checkpoint(path, model, model_name=name, config=model.config,
                           architecture=list(model.architecture), history=history, extra=extra)


def _corpus(ctx: dict[str, Any]) -> Any:
    from models.lhq_svc.data import load_corpus

    if "_corpus" not in ctx:
        model_cfg = _spec(ctx).config()
        ctx["_corpus"] = load_corpus(ctx["data"]["corpus"], sample_rate=model_cfg["sample_rate"],
                                     hop_length=model_cfg["hop_length"])
    return ctx["_corpus"]


def _spec(ctx: dict[str, Any]) -> Any:
    from models import registry

    return registry.get(ctx["cfg"].model.name)


def _params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _chunk_samples(ctx: dict[str, Any], model: Any) -> int:
    hop = model.hop_length
    n = int(round(ctx["cfg"].export.chunk_seconds * model.sample_rate / hop)) * hop
    limit = (model.noise.shape[-1] - 1) * hop
    if n > limit:
        raise CompressError(
            f"export.chunk_seconds={ctx['cfg'].export.chunk_seconds} is longer than the model's "
            f"noise buffer allows ({limit / model.sample_rate:.2f} s)"
        )
    return n


def _clip_inputs(ctx: dict[str, Any], model: Any, n: int, split: str = "train",
                 offset: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """`n` real input tuples ``(audio (1, T), speaker, shift)`` of one chunk from `split`."""
    corpus = _corpus(ctx)
    t = _chunk_samples(ctx, model)
    clips = [c for c in corpus.split(split) if len(c.wav) >= t]
    if not clips:
        raise CompressError(f"corpus {corpus.root}: no {split} clip is as long as one chunk "
                            f"({ctx['cfg'].export.chunk_seconds} s)")
    out: list[tuple[torch.Tensor, ...]] = []
    for i in range(n):
        c = clips[(offset + i * 7) % len(clips)]
        start = min(len(c.wav) - t, (len(c.wav) // 3))
        wav = torch.from_numpy(np.ascontiguousarray(c.wav[start : start + t], dtype=np.float32))
        spk = (corpus.singers.index(c.singer) + 1 + i) % len(corpus.singers)
        out.append((wav.unsqueeze(0), torch.tensor([spk], dtype=torch.long), torch.tensor([0.0])))
    return out


def _eval_set(ctx: dict[str, Any], model: Any, *, split: str, items: int, seconds: float,
              steps: int) -> Any:
    from compress.scores import build_eval_set

    return build_eval_set(ctx["data"]["corpus"], model.speakers, sample_rate=model.sample_rate,
                          hop_length=model.hop_length, max_items=items, seconds=seconds,
                          split=split, steps=steps, f0_method="dio")


def _fingerprint(target: str, threads: int) -> dict[str, Any]:
    from compress.latency_table import host_fingerprint

    if target.startswith("adb:"):
        from device_bench.adb import AdbServer, Device

        server = AdbServer()
        server.ensure(start=True)
        dev = Device(server, target[4:])
        dev.check_online()
        info = dev.info().result_device()
        return {"kind": "adb", "device": info, "threads": threads}
    return host_fingerprint(threads)


def latency_cache_dir() -> Path:
    """Where latency tables are kept across runs (``$LHQ_MOBILE_LATENCY_CACHE`` or
    ``~/.cache/lhq-mobile/latency``)."""
    import os

    env = os.environ.get(LATENCY_CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "lhq-mobile" / "latency"


# ---- stages -----------------------------------------------------------------------------------
def stage_data(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    dc = ctx["cfg"].data
    if dc.source == "synthetic":
        from models.data.corpus import CorpusConfig, synthesize_corpus

        root = out / "corpus"
        _say(ctx, f"data: synthesising {dc.singers} singers x {dc.minutes} min into {root}")
        synthesize_corpus(root, CorpusConfig(singers=dc.singers, minutes=dc.minutes,
                                             seed=dc.seed, sample_rate=dc.sample_rate,
                                             voice_noise=dc.voice_noise),
                          progress=ctx.get("progress"))
    else:
        root = Path(str(dc.path)).expanduser()
        if not root.is_dir():
            raise CompressError(f"data.path {root} is not a directory")
    ctx["data"] = {"corpus": str(root.resolve())}
    corpus = _corpus(ctx)
    return {"corpus": str(root.resolve()), "singers": corpus.singers,
            "clips": len(corpus.clips), "train_clips": len(corpus.split("train")),
            "test_clips": len(corpus.split("test"))}


def stage_teacher(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    cfg = ctx["cfg"]
    target = out / MODEL_FILE
    if cfg.model.checkpoint:
        src = Path(cfg.model.checkpoint).expanduser()
        model, header = _load(src)
        if getattr(model, "architecture", None) is None or not hasattr(model, "convert_long"):
            raise CompressError(f"{src}: {header.model!r} is not an evolvable SVC pipeline")
        shutil.copyfile(src, target)
        source = f"checkpoint {src}"
    else:
        from models.lhq_svc.train import PRESET_TRAINING, TrainConfig, train

        if cfg.model.overrides:
            raise CompressError("model.overrides is not supported when compress run trains the "
                                "teacher; register a preset or give model.checkpoint")

        base = PRESET_TRAINING.get(cfg.model.name, TrainConfig())
        tc = cfg.train
        train_cfg = TrainConfig(**{
            **asdict(base),
            "decoder_steps": tc.steps,
            "content_steps": base.content_steps if tc.content_steps is None else tc.content_steps,
            "vocoder_steps": base.vocoder_steps if tc.vocoder_steps is None else tc.vocoder_steps,
            "batch": tc.batch_size, "decoder_lr": tc.lr, "seed": tc.seed,
        })
        _say(ctx, f"teacher: training {cfg.model.name} (content {train_cfg.content_steps}, "
                  f"vocoder {train_cfg.vocoder_steps}, decoder {train_cfg.decoder_steps} steps)")
        train(cfg.model.name, ctx["data"]["corpus"], out, cfg=train_cfg, resume=True,
              show_progress=ctx.get("progress"))
        model, header = _load(target)
        source = f"trained {cfg.model.name}"
    return {"checkpoint": str(target), "source": source, "model": header.model,
            "params": _params(model), "architecture": list(model.architecture)}


def stage_robust(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    cfg = ctx["cfg"]
    model, header = _load(ctx["teacher"]["checkpoint"])
    rc = cfg.robust
    _say(ctx, f"robust: {rc.steps} steps with skip_prob={rc.skip_prob}")
    rec: dict[str, Any] = {"steps": 0}
    if rc.steps > 0:
        from compress.robust import robust_finetune

        rec = robust_finetune(model, _corpus(ctx), steps=rc.steps, skip_prob=rc.skip_prob,
                              lr=rc.lr, seed=cfg.seed)
    path = _save(model, out / MODEL_FILE, header.model,
                 [*header.history, {"event": "robust", "skip_prob": rc.skip_prob, **rec}],
                 header.extra)
    return {"checkpoint": str(path), "skip_prob": rc.skip_prob, **rec}


def stage_latency(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress import latency_probe as lp
    from compress.latency_table import LatencyTable

    cfg = ctx["cfg"]
    target = ctx["target"]
    threads = cfg.latency.threads
    model, _ = _load(ctx["robust"]["checkpoint"])
    lp.with_device_steps(model, 1)
    inputs = _clip_inputs(ctx, model, 1, offset=3)[0]
    calib = _clip_inputs(ctx, model, cfg.quantize.calibration_clips)
    shape = [int(s) for s in inputs[0].shape]
    fp = _fingerprint(target, threads)
    precision = cfg.export.precision
    table = None
    source = "measured"
    if cfg.latency.table:
        table = LatencyTable.load(cfg.latency.table)
        source = f"loaded {cfg.latency.table}"
    else:
        table = LatencyTable.find(latency_cache_dir(), target, fp)
        if table is not None:
            source = f"reused {latency_cache_dir()}"
    if table is not None:
        try:
            lp.predictor(table, model, shape, precision)(list(model.architecture))
        except CompressError as exc:
            _say(ctx, f"latency: saved table does not fit this run ({exc}); measuring")
            table, source = None, "measured"
    details: dict[str, Any] = {}
    samples_fn = lp.bench_samples_fn(target, threads, cfg.latency.warmup,
                                     cfg.latency.iterations, out)
    only = list(getattr(model, "export_int8_modules", ()) or ()) or None
    whole = None
    if table is None:
        _say(ctx, f"latency: measuring blocks on {target} (fp32, int8) and the whole teacher "
                  f"architecture ({precision})")
        table, details, whole = lp.measure_table(
            model, inputs, calib, target=target, fingerprint=fp, precisions=("fp32", "int8"),
            out_dir=out / "probes", samples_fn=samples_fn, rounds=cfg.latency.repeats,
            keep_fp32=model.export_keep_fp32, only_modules=only, whole=precision,
            progress=lambda s: _say(ctx, f"latency: {s}"),
        )
    elif not target.startswith("adb:"):
        _say(ctx, f"latency: validating the saved table on the whole teacher ({precision})")
        pte, details["whole"] = lp.export_probe(model, inputs, calib, precision,
                                                "probe-whole-teacher", out / "probes",
                                                model.export_keep_fp32, only)
        whole = lp.measure_rounds({"whole": (pte, inputs)}, samples_fn,
                                  cfg.latency.repeats)["whole"]
    predicted = lp.predictor(table, model, shape, precision, calibrated=False)(
        list(model.architecture))
    calibration = None
    if whole is not None:
        table.record_validation(
            f"teacher architecture {model.architecture} ({precision}, sum of parts)",
            predicted, whole.p50_ms)
        if source == "measured":
            calibration = lp.calibrate(table, model, shape, precision, whole,
                                       list(model.architecture))
    path = table.save(out)
    try:
        cache = table.save(latency_cache_dir())
    except OSError as exc:
        cache = None
        log.warning("could not save the latency table to the cache: %s", exc)
    seconds = shape[-1] / model.sample_rate
    errs = [v["error_pct"] for v in table.validation]
    return {"table": str(path), "cache": str(cache) if cache else None, "source": source,
            "fingerprint_id": table.fingerprint_id, "precision": precision, "shape": shape,
            "audio_seconds": seconds, "teacher_predicted_ms": predicted,
            "calibration_ms": calibration,
            "validation": table.validation,
            "prediction_error_pct": errs[-1] if errs else None, "probes": details}


def _latency_fn(ctx: dict[str, Any], model: Any) -> Callable[[list[str]], float]:
    """Predicted ms per second of audio of the one-step on-device path of an architecture."""
    from compress import latency_probe as lp
    from compress.latency_table import LatencyTable

    lat = ctx["latency"]
    table = LatencyTable.load(lat["table"])
    predict = lp.predictor(table, model, lat["shape"], lat["precision"])
    return lambda arch: predict(arch) / lat["audio_seconds"]


def resolve_budget(ctx: dict[str, Any], model: Any) -> dict[str, float]:
    """The budget in ms per second of audio: ``evolve.budget_ms`` or base + a fraction of the
    teacher's block latency."""
    ec = ctx["cfg"].evolve
    lat_fn = _latency_fn(ctx, model)
    teacher_ms = lat_fn(list(model.architecture))
    first = list(model.architecture)[:1]
    one = lat_fn(first)
    per_block_first = one - (lat_fn(first + first) - one)  # base = one block minus a block
    base = per_block_first
    if ec.budget_ms is not None:
        budget = float(ec.budget_ms)
    else:
        budget = base + ec.budget_fraction * (teacher_ms - base)
    return {"budget_ms": budget, "teacher_predicted_ms": teacher_ms, "base_ms": base}


def stage_evolve(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress.evolve import evolve
    from compress.scores import get_score

    cfg = ctx["cfg"]
    ec = cfg.evolve
    model, header = _load(ctx["robust"]["checkpoint"])
    budget = resolve_budget(ctx, model)
    score = get_score(ec.score)
    eval_set = _eval_set(ctx, model, split="train", items=ec.val_clips, seconds=ec.val_seconds,
                         steps=cfg.distill.teacher_steps)
    from compress.robust import robust_finetune as robust

    corpus = _corpus(ctx)

    def finetune(m: Any, rnd: int) -> None:
        if ec.finetune_steps > 0:
            robust(m, corpus, steps=ec.finetune_steps, skip_prob=cfg.robust.skip_prob,
                   lr=cfg.robust.lr, seed=cfg.seed + rnd)

    _say(ctx, f"evolve: budget {budget['budget_ms']:.2f} ms per audio second "
              f"(teacher architecture {budget['teacher_predicted_ms']:.2f} ms), "
              f"score {ec.score} on {len(eval_set.items)} clips")
    res = evolve(model, score_fn=lambda m: score(m, eval_set), latency_fn=_latency_fn(ctx, model),
                 budget_ms=budget["budget_ms"], max_rounds=ec.max_rounds, finetune_fn=finetune,
                 require_gain=ec.require_gain, swap=ec.swap,
                 on_round=lambda r: _say(ctx, f"evolve: round {r['round']}: {r['action']} "
                                              f"{r['block']} (value {r['value']:.4g}) -> "
                                              f"{r['latency_ms']:.2f} ms"))
    path = _save(model, out / MODEL_FILE, header.model,
                 [*header.history, {"event": "evolve", "history": res.history}], header.extra)
    evaluated = [asdict(c) for c in res.evaluated]
    atomic_write_text(out / "evolution.json", json.dumps(
        {"history": res.history, "evaluated": evaluated}, indent=2))
    return {"checkpoint": str(path), **budget, "history": res.history, "evaluated": evaluated,
            "architecture": list(model.architecture), "final_score": res.final_score,
            "final_latency_ms": res.final_latency_ms, "met_budget": res.met_budget,
            "converged": res.converged, "score": ec.score}


def _decoder_batches(ctx: dict[str, Any], model: Any, seed: int) -> Callable[[], Any]:
    """Distillation batches ``(x0 (B, 80, F), cond (B, 256, F))`` from the corpus."""
    from models.lhq_svc.train import PRESET_TRAINING, TrainConfig, Trainer

    base = PRESET_TRAINING.get(ctx["cfg"].model.name, TrainConfig())
    tr = Trainer(model, ctx["cfg"].model.name, _corpus(ctx), ctx["dirs"]["distill"] / "batches",
                 TrainConfig(**{**asdict(base), "batch": ctx["cfg"].train.batch_size}),
                 show_progress=False)
    rng = np.random.default_rng(seed)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            x, cond = tr.decoder_batch(rng)[:2]
        return x.detach(), cond.detach()

    return batch


def stage_distill(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress import latency_probe as lp
    from compress.distill import distill_progressive

    cfg = ctx["cfg"]
    dc = cfg.distill
    model, header = _load(ctx["evolve"]["checkpoint"])
    prediction = model.prediction if dc.prediction == "auto" else dc.prediction
    if prediction != model.prediction:
        raise CompressError(f"distill.prediction={dc.prediction!r} but the decoder is trained "
                            f"for {model.prediction!r}-prediction; use 'auto'")
    progress_path = out / "progress.json"
    done: list[dict[str, Any]] = []
    teacher = model.decoder
    steps = dc.teacher_steps
    if progress_path.exists():  # resume after the last finished halving
        done = json.loads(progress_path.read_text())["stages"]
        if done:
            last = done[-1]
            student_model, _ = _load(last["checkpoint"])
            teacher, steps = student_model.decoder, int(last["to_steps"])
            _say(ctx, f"distill: resuming at {steps} steps")
    history = list(done)

    def on_stage(rec: dict[str, Any], student: torch.nn.Module) -> None:
        m = model
        m.decoder = student
        p = _save(m, out / f"student_{rec['to_steps']}steps.safetensors", header.model,
                  header.history, header.extra)
        history.append({**rec, "checkpoint": str(p)})
        atomic_write_text(progress_path, json.dumps({"stages": history}, indent=2))
        _say(ctx, f"distill: {rec['from_steps']} -> {rec['to_steps']} steps, loss "
                  f"{rec['loss_start']:.4g} -> {rec['loss_end']:.4g}")

    if steps > 1:
        _say(ctx, f"distill: {steps} -> 1 DDIM steps, {dc.steps_per_stage} steps per halving")
        batches = _decoder_batches(ctx, model, cfg.seed + len(done))
        student, _ = distill_progressive(teacher, batches, steps, dc.steps_per_stage, lr=dc.lr,
                                         prediction=prediction, on_stage=on_stage,
                                         seed=cfg.seed + len(done))
    else:
        student = teacher
    model.decoder = student
    lp.with_device_steps(model, 1)
    path = _save(model, out / MODEL_FILE, header.model,
                 [*header.history, {"event": "distill", "stages": history}], header.extra)
    return {"checkpoint": str(path), "teacher_steps": dc.teacher_steps, "prediction": prediction,
            "history": [{k: v for k, v in h.items() if k != "checkpoint"} for h in history]}


def _graph_scorer(ctx: dict[str, Any], model: Any, eval_set: Any, score_name: str
                  ) -> Callable[[Any, str], float]:
    from compress.scores import get_score
    from compress.svc_adapter import ChunkedSVC

    score = get_score(score_name)
    n = _chunk_samples(ctx, model)

    def fn(graph: Any, tag: str) -> float:
        return score(ChunkedSVC(graph, n, model.speakers, model.sample_rate, tag), eval_set)

    return fn


def stage_quantize(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress.quantize import choose_fp32, layer_groups, sensitivity

    cfg = ctx["cfg"]
    qc = cfg.quantize
    if not qc.enabled or cfg.export.precision != "int8":
        return {"enabled": False, "rows": [], "keep_fp32": []}
    model, _ = _load(ctx["distill"]["checkpoint"])
    groups = layer_groups(model, model.export_keep_fp32)
    calib = _clip_inputs(ctx, model, qc.calibration_clips)
    val = _clip_inputs(ctx, model, cfg.evolve.val_clips, offset=1)
    eval_set = _eval_set(ctx, model, split="train", items=cfg.evolve.val_clips,
                         seconds=cfg.export.chunk_seconds, steps=1)
    _say(ctx, f"quantize: int8 sensitivity of {len(groups)} layer groups")
    rows, summary = sensitivity(model, groups, val, calib, keep_fp32=model.export_keep_fp32,
                                score_fn=_graph_scorer(ctx, model, eval_set, cfg.evolve.score),
                                progress=lambda g: _say(ctx, f"quantize: {g}"))
    keep = choose_fp32(rows, score_threshold=qc.sensitivity_threshold,
                       sqnr_floor_db=cfg.export.sqnr_floor_db, margin_db=qc.sqnr_margin_db)
    _say(ctx, f"quantize: keeping fp32: {keep or 'none'}")
    atomic_write_text(out / "sensitivity.json", json.dumps(
        {"rows": rows, "summary": summary, "keep_fp32": keep}, indent=2, default=str))
    return {"enabled": True, "rows": rows, "summary": summary, "keep_fp32": keep,
            "model_keep_fp32": list(model.export_keep_fp32)}


@torch.no_grad()
def _decoder_inputs(model: Any, clips: list[tuple[torch.Tensor, ...]]
                    ) -> list[tuple[torch.Tensor, ...]]:
    """``(z_1, t = 1, cond)`` the one-step decoder sees for each input clip."""
    out: list[tuple[torch.Tensor, ...]] = []
    for audio, spk, shift in clips:
        cond, _ = model.features(audio, spk, shift)  # (1, D, F)
        z = model.device_latent(cond.shape[-1])  # (1, M, F)
        out.append((z, torch.ones(1), cond))
    return out


def _gated_pte(ctx: dict[str, Any], module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
               calib: list[tuple[torch.Tensor, ...]], out: Path, name: str, *, precision: str,
               groups: list[str], left: list[str], prefix: str, attempts: list[dict[str, Any]],
               **kwargs: Any) -> tuple[Any, list[str]]:
    """Export `module` to a gated ``.pte``; int8 quantizes the layer `groups` (names under
    `prefix`), and after an :class:`ExportError` (gate or lowering) keeps the next group of
    `left` fp32 and tries again. Returns the result and the groups kept fp32."""
    from export.calibration import CalibrationSet
    from export.errors import ExportError
    from export.pte import export_pte

    int8 = precision == "int8"
    keep: list[str] = []
    left = list(left)
    while True:
        try:
            res = export_pte(
                module, inputs, out, name, precision=precision,
                calibration=CalibrationSet(calib, {"kind": "real clips", "n_batches": len(calib)})
                if int8 else None,
                only_modules=[g[len(prefix):] for g in groups if g not in keep] if int8 else None,
                **kwargs,
            )
            return res, keep
        except ExportError as exc:
            if not (int8 and left):
                raise
            attempts.append({"model": name, "keep_fp32": list(keep), "error": str(exc)})
            keep.append(left.pop(0))
            _say(ctx, f"export: {name} int8 failed ({str(exc)[:160]}); also keeping {keep[-1]} "
                      "fp32 and retrying")


def stage_export(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress.quantize import layer_groups
    from export.metadata import spec_metadata
    from export.parity import GateConfig

    cfg = ctx["cfg"]
    ec = cfg.export
    model, _ = _load(ctx["distill"]["checkpoint"])
    inputs = _clip_inputs(ctx, model, 1, split="test")[0]
    calib = _clip_inputs(ctx, model, cfg.quantize.calibration_clips)
    chosen = list(ctx["quantize"].get("keep_fp32", []))
    by_noise = [r["layer"] for r in sorted(ctx["quantize"].get("rows", []),
                                           key=lambda r: r["sqnr_db"])]
    groups = [g for g in layer_groups(model, model.export_keep_fp32) if g not in chosen]
    meta = dict(spec_metadata(_spec(ctx), model.config))
    meta["chunk_seconds"] = _chunk_samples(ctx, model) / model.sample_rate
    meta["device_steps"] = 1
    meta["architecture"] = ",".join(model.architecture)
    gate = GateConfig(int8_min_sqnr_db=ec.sqnr_floor_db)
    name = f"{cfg.name}-student"
    artifacts: dict[str, str] = {}
    parity: dict[str, Any] = {}
    attempts: list[dict[str, Any]] = []
    keep = list(chosen)
    for fmt in ec.formats:
        if fmt == "pte":
            res, extra = _gated_pte(
                ctx, model, inputs, calib, out, name, precision=ec.precision, groups=groups,
                left=[g for g in by_noise if g in groups], prefix="", attempts=attempts,
                metadata=meta, gate=gate, audio_sample_rate=model.sample_rate,
                allow_fallback_ops=ec.allow_fallback_ops, keep_fp32=model.export_keep_fp32)
            keep += extra
            artifacts[f"pte_{ec.precision}"] = str(res.path)
            parity[f"pte_{ec.precision}"] = res.parity
            # the mobile decoder alone (Table I reports the decoder's size): one DDIM step's
            # denoiser (z_t, t, cond) -> prediction, calibrated on the real clips' conditioning.
            # Gated on its own output, it starts from every decoder group int8: keeping one
            # cross-attention block fp32 between int8 neighbours fails XNNPACK lowering
            # ("missing out variant dequantize_per_channel")
            dec = [g for g in layer_groups(model, model.export_keep_fp32)
                   if g.startswith("decoder.")]
            res, _ = _gated_pte(
                ctx, model.decoder, _decoder_inputs(model, [inputs])[0],
                _decoder_inputs(model, calib), out, f"{name}-decoder", precision=ec.precision,
                groups=dec, left=[g for g in by_noise if g in dec], prefix="decoder.",
                attempts=attempts, metadata={**meta, "component": "decoder"}, gate=gate)
            artifacts[f"decoder_pte_{ec.precision}"] = str(res.path)
            parity[f"decoder_pte_{ec.precision}"] = res.parity
        elif fmt == "onnx":
            from export.onnx_export import export_onnx

            res = export_onnx(model, inputs, out, name, precision="fp32", metadata=meta,
                              gate=gate, audio_sample_rate=model.sample_rate)
            artifacts["onnx_fp32"] = str(res.path)
            parity["onnx_fp32"] = res.parity
        else:
            raise CompressError(f"compress run exports pte and onnx; {fmt!r} is not supported "
                                "here (use `compress export --format tflite` on the checkpoint)")
    return {"artifacts": artifacts, "parity": parity, "keep_fp32": keep,
            "gate_retries": attempts, "chunk_seconds": meta["chunk_seconds"],
            "student_checkpoint": ctx["distill"]["checkpoint"]}


def stage_bench(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress import latency_probe as lp
    from compress.scores import evaluate
    from compress.svc_adapter import ChunkedSVC, eager_ms_per_audio_s
    from device_bench.api import measure
    from device_bench.protocol import write_input_file
    from export.runtime import PteRunner

    cfg = ctx["cfg"]
    bc = cfg.bench
    teacher, _ = _load(ctx["teacher"]["checkpoint"])
    student, _ = _load(ctx["distill"]["checkpoint"])
    art = ctx["export"]["artifacts"]
    pte = art.get(f"pte_{cfg.export.precision}") or next(iter(art.values()))
    inputs = _clip_inputs(ctx, student, 1, split="test")[0]
    seconds = inputs[0].shape[-1] / student.sample_rate
    raw = write_input_file(inputs, out / "inputs.raw")
    _say(ctx, f"bench: teacher, {bc.teacher_steps} DDIM steps, fp32 eager, 1 thread")
    t_speed = eager_ms_per_audio_s(teacher, inputs[0][0], bc.teacher_steps,
                                   repeats=bc.repeats, threads=1, speaker=int(inputs[1]))
    targets: dict[str, Any] = {}
    for tgt in bc.targets:
        _say(ctx, f"bench: student {Path(pte).name} on {tgt}")
        res = measure(pte, tgt, warmup=bc.warmup, iterations=bc.iterations, repeats=bc.repeats,
                      threads=bc.threads, input_file=raw, out_dir=out / "raw")
        d = res.to_dict()
        atomic_write_text(out / f"bench_{tgt.replace(':', '_')}.json", json.dumps(d, indent=2))
        p50 = float(d["metrics"]["p50_inference_latency(ms)"])
        targets[tgt] = {"p50_ms": p50, "ms_per_audio_s": p50 / seconds,
                        "rtf": p50 / 1000.0 / seconds, "metrics": d["metrics"],
                        "flags": d.get("flags", [])}
    first = targets[bc.targets[0]]
    # latency-table prediction of the final architecture, on the latency target
    lat_target = ctx["target"]
    if lat_target in targets:
        measured = targets[lat_target]["p50_ms"]
    else:
        lat_res = measure(pte, lat_target, warmup=cfg.latency.warmup,
                          iterations=cfg.latency.iterations, threads=cfg.latency.threads,
                          input_file=raw, out_dir=out / "raw").to_dict()
        measured = float(lat_res["metrics"]["p50_inference_latency(ms)"])
    from compress.latency_table import LatencyTable

    table = LatencyTable.load(ctx["latency"]["table"])
    predicted = lp.predictor(table, student, ctx["latency"]["shape"],
                             ctx["latency"]["precision"])(list(student.architecture))
    err = table.record_validation(f"final architecture {student.architecture}", predicted,
                                  measured)
    table.save(out)
    # quality on held-out songs: teacher eager (multi-step) vs the student .pte
    _say(ctx, f"bench: scoring teacher and student on {bc.eval_clips} held-out clips")
    es_t = _eval_set(ctx, teacher, split="test", items=bc.eval_clips, seconds=bc.eval_seconds,
                     steps=bc.teacher_steps)
    t_scores = evaluate(teacher, es_t)
    runner = PteRunner(pte, threads=bc.threads)
    adapter = ChunkedSVC(runner, inputs[0].shape[-1], student.speakers, student.sample_rate,
                         hashlib.sha256(Path(pte).read_bytes()).hexdigest())
    es_s = _eval_set(ctx, student, split="test", items=bc.eval_clips, seconds=bc.eval_seconds,
                     steps=1)
    s_scores = evaluate(adapter, es_s)
    _write_examples(ctx, out, teacher, adapter, es_t, es_s)
    return {
        "audio_seconds": seconds, "teacher_speed": t_speed, "student_speed": targets,
        "speedup": t_speed["ms_per_audio_s"] / first["ms_per_audio_s"],
        "teacher_scores": t_scores, "student_scores": s_scores,
        "final_prediction": {"predicted_ms": predicted, "measured_ms": measured,
                             "error_pct": err, "target": lat_target},
        "pte": pte, "teacher_params": _params(teacher), "student_params": _params(student),
    }


def _write_examples(ctx: dict[str, Any], out: Path, teacher: Any, student: Any, es_t: Any,
                    es_s: Any) -> None:
    from compress.scores import converted
    from models.audio import write_wav

    sr = teacher.sample_rate
    t_out = converted(teacher, es_t)
    s_out = converted(student, es_s)
    rows = []
    for i, (it, yt, ys) in enumerate(zip(es_t.items, t_out, s_out)):
        if i >= 2:
            break
        rec = {"name": it.id}
        for role, wav in (("source", it.source), ("teacher", yt), ("student", ys)):
            p = out / "audio" / f"{i}_{role}.wav"
            write_wav(p, np.asarray(wav, dtype=np.float32), sr)
            rec[role] = str(p)
        rows.append(rec)
    atomic_write_text(out / "audio.json", json.dumps(rows, indent=2))


def _model_summary(params: int, size_mb: float, speed: dict[str, Any], scores: dict[str, Any]
                   ) -> dict[str, Any]:
    return {"params": params, "size_mb": size_mb,
            "latency_ms_per_audio_s": speed["ms_per_audio_s"], "rtf": speed["rtf"],
            "scores": {k: v for k, v in scores.items()
                       if isinstance(v, int | float) and not isinstance(v, bool)}}


def stage_report(ctx: dict[str, Any], out: Path) -> dict[str, Any]:
    from compress.report import pareto_points, write_report

    cfg = ctx["cfg"]
    b = ctx["bench"]
    ev = ctx["evolve"]
    root = out.parent
    teacher_mb = Path(ctx["teacher"]["checkpoint"]).stat().st_size / 1e6
    student_mb = Path(b["pte"]).stat().st_size / 1e6
    first = b["student_speed"][cfg.bench.targets[0]]
    teacher = _model_summary(b["teacher_params"], teacher_mb, b["teacher_speed"],
                             b["teacher_scores"])
    student = _model_summary(b["student_params"], student_mb, first, b["student_scores"])
    score = cfg.evolve.score
    retention: dict[str, float | None] = {}
    for name, tv in teacher["scores"].items():
        sv = student["scores"].get(name)
        retention[name] = (sv / tv if sv is not None and tv and math.isfinite(tv) and tv > 0
                           else None)

    final = {k: b["final_prediction"][k] for k in ("predicted_ms", "measured_ms", "error_pct")}
    lat_valid = [*ctx["latency"]["validation"],
                 {"name": f"final architecture {ev['architecture']}", **final}]
    audio_rows = json.loads((ctx["dirs"]["bench"] / "audio.json").read_text())
    data = {
        "title": f"compress run {cfg.name}: {ctx['teacher']['model']} -> LHQ-SVC_mobile",
        "teacher": teacher, "student": student,
        "budget_ms": ev["budget_ms"], "target": ctx["target"],
        "speedup": b["speedup"],
        "quality_retention": retention.get(score),
        "quality_retention_all": retention,
        "evolution": ev["history"],
        "latency_table": {"prediction_error_pct": b["final_prediction"]["error_pct"],
                          "teacher_architecture_error_pct":
                              ctx["latency"]["prediction_error_pct"],
                          "validation": lat_valid, "table": ctx["latency"]["table"],
                          "source": ctx["latency"]["source"]},
        "artifacts": ctx["export"]["artifacts"],
        "stages": ctx.get("stage_rows", []),
        "pareto": pareto_points(ev["evaluated"], ev["architecture"]),
        "quant_sensitivity": [{"layer": r["layer"], "score_drop": r["score_drop"],
                               "sqnr_db": r["sqnr_db"], "kept_fp32": bool(r["kept_fp32"])}
                              for r in ctx["quantize"].get("rows", [])],
        "distill": ctx["distill"]["history"],
        "audio": audio_rows,
        "bench": {"teacher": b["teacher_speed"], "student": b["student_speed"]},
        "notes": [
            f"Teacher: {cfg.bench.teacher_steps}-step DDIM, fp32, eager PyTorch, 1 thread. "
            f"Student: 1 step, {cfg.export.precision}, whole on-device path as one .pte, "
            f"ExecuTorch runner, {cfg.bench.threads} thread(s). Both on "
            f"{b['audio_seconds']:.2f} s chunks of the same held-out clip.",
            "Scores: teacher eager on held-out songs; student = the exported .pte run "
            "chunk by chunk (crossfade) on the same songs.",
        ],
        "commands": {"this run": ctx.get("command", "compress run")},
    }
    json_path, html_path = write_report(root, data)
    return {"report_json": str(json_path), "report_html": str(html_path),
            "speedup": b["speedup"], "quality_retention": retention.get(score)}


STAGE_FUNCS: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "data": stage_data, "teacher": stage_teacher, "robust": stage_robust,
    "latency": stage_latency, "evolve": stage_evolve, "distill": stage_distill,
    "quantize": stage_quantize, "export": stage_export, "bench": stage_bench,
    "report": stage_report,
}
RESUMABLE = {"teacher", "distill"}


def build_stages() -> list[Stage]:
    return [Stage(name, STAGE_FUNCS[name], resumable=name in RESUMABLE) for name in STAGES]


def run_config_dict(cfg: RunConfig, target: str) -> dict[str, Any]:
    """What the run directory's config digest covers (the config plus the target)."""
    from compress.config_io import to_dict

    return {"config": to_dict(cfg), "target": target}

