"""CWS separators beside Table 2 of the paper: parameters and GFLOPs (static part, issue 23).

For UNet-5, UNet-6, MDenseNet and MMDenseNet with K = 1, 2, 4, 8 subbands, at the paper's
sizes (``width = 1``, stereo), one record each::

    {"model", "k", "params", "gflops", "paper_params", "paper_gflops"}

``params``: trainable parameters of the mask network; ``gflops``: its multiply-adds on 3 s of
stereo 44.1 kHz, / 1e9 — Table 2's convention (:mod:`models.separation.flops`: MACs, network
only, filter bank and STFT not counted). ``paper_*``: Table 2 (parameters as a count from its
millions), ``null`` where Table 2 has no row (MMDenseNet is reported without CWS only).
Nothing is run: the networks are built on the ``meta`` device, so this takes seconds.

Trained part (``--train-corpus DIR``, a MUSDB layout ``DIR/{train,test}/<song>/*.wav``, e.g.
``compress data synth``'s ``musdb`` folder): the ``-demo`` presets of :data:`TRAINED_RUNS`
(MDN K = 1 and 4, UNet-5, UNet-6 and MMDN at K = 4; ``k`` is the model override) are, one after
the other, on one torch thread:

1. trained into ``--work DIR/<arch>-k<K>/`` with their ``PRESET_TRAINING`` budget
   (:func:`models.separation.train.train_separator`; a finished checkpoint there is reused, a
   killed one continued);
2. evaluated on the held-out (test) songs (:func:`models.separation.infer.evaluate`: museval
   medians over 1-s windows then over songs, SI-SDR, SDRi of vocals and accompaniment), in
   chunks of the preset's length, the exported program's;
3. exported to ExecuTorch / XNNPACK ``.pte``, fp32 and int8 (calibrated on training mixtures),
   through the parity gates (:func:`export.api.export_model`; existing programs newer than the
   checkpoint are reused); the int8 program also separates the held-out songs (``sdr_int8``);

then every program is measured by the native host runner (``device_bench.api.measure``, one
thread, the same warmup / iterations / repeats for all, one after the other in this run):
``latency_ms_per_audio_s`` is the int8 program's p50 per chunk divided by the chunk's seconds.
One record per model, merged by :func:`add_trained_results` under ``"trained"``::

    {"model", "k", "preset", "sdr", "sdri", "si_sdr", "latency_ms_per_audio_s", "pte_int8", ...}

and printed beside Table 2, followed by the acceptance verdict: SDRi > 0 dB for each model, and
for each architecture trained at K = 1 and K = 4 the K = 4 SDR (not lower) and latency (lower),
with the noise of the SDR comparison (paired per-song differences). ``--quick``: a smoke run
(a few steps, the first seconds of each song, a short latency run); ``--size unittest`` takes
the ``-unittest`` presets (8 kHz). The trained records also go to ``WORK/trained.json``, which
``--trained`` merges again without rerunning anything.

Examples::

    .venv/bin/python benchmarks/separation.py --json benchmarks/results/separation.json
    .venv/bin/python benchmarks/separation.py --train-corpus runs/demo/00_data/corpus/musdb \
        --work runs/separation_bench --json benchmarks/results/separation.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.separation.flops import (
    PAPER_CHANNELS,
    PAPER_SAMPLE_RATE,
    PAPER_SECONDS,
    PAPER_TABLE2,
    network_gflops,
    network_params,
)
from models.separation.nets import ARCHS
from models.separation.subband import SUBBANDS

log = logging.getLogger(__name__)

NAMES = {"unet5": "UNet-5", "unet6": "UNet-6", "mdensenet": "MDN", "mmdensenet": "MMDN"}
#: (arch, K) trained by ``--train-corpus``: the acceptance pair MDN K = 1 / 4, every net at K = 4
TRAINED_RUNS: tuple[tuple[str, int], ...] = (
    ("mdensenet", 1), ("mdensenet", 4), ("unet5", 4), ("unet6", 4), ("mmdensenet", 4))
SIZES = ("demo", "unittest")
#: trained-record fields shown in the table beside Table 2
TABLE_KEYS = ("sdr", "sdri", "si_sdr", "sdr_int8", "latency_ms_per_audio_s")
#: the other separators trained by ``--others`` (issue 25): Vox-TasNet offline and near-causal,
#: asteroid's ConvTasNet on each channel (the peer: same data, budget and loss), the Chimera
#: network (its MI output, and its DC output as a second record) and the MI network alone
OTHER_RUNS = ("vox-tasnet-demo", "vox-tasnet-causal-demo", "asteroid-convtasnet-demo",
              "chimera-demo", "chimera-mi-demo")


def static_records(seconds: float = PAPER_SECONDS, sample_rate: int = PAPER_SAMPLE_RATE,
                   channels: int = PAPER_CHANNELS) -> list[dict[str, Any]]:
    """One record per (architecture, K) with our and Table 2's parameters and GFLOPs."""
    records = []
    for arch in ARCHS:
        paper = PAPER_TABLE2[arch]
        for k in SUBBANDS:
            in_paper = k in paper.gflops  # Table 2 has a row for this (model, K)
            records.append({
                "model": arch,
                "k": k,
                "params": network_params(arch, k, channels),
                "gflops": round(network_gflops(arch, k, seconds=seconds,
                                               sample_rate=sample_rate, channels=channels), 2),
                "paper_params": round(paper.params_m * 1e6) if in_paper else None,
                "paper_gflops": paper.gflops.get(k),
            })
    return records


# ------------------------------------------------------------------------------------------
# TRAINED DEMO RESULTS: the place where the results of trained separators are added.
# ------------------------------------------------------------------------------------------
def add_trained_results(records: list[dict[str, Any]],
                        trained: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Merge results of trained models into the static records (returns new records).

    ``trained``: records with ``"model"`` and ``"k"`` (matching a static record) and any
    further measured fields (SDR / SIR / SAR per source, training time, latency ...), which are
    copied into that record under ``"trained"``. A result for a (model, k) that has no static
    record is an error; static records without a result stay as they are. With ``None``
    (nothing trained yet) the records are returned unchanged.
    """
    out = [dict(r) for r in records]
    if trained is None:
        return out
    index = {(r["model"], r["k"]): r for r in out}
    for result in trained:
        key = (result.get("model"), result.get("k"))
        if key not in index:
            raise SystemExit(f"trained result for model={key[0]!r} k={key[1]!r} matches no "
                             f"static record; models: {', '.join(ARCHS)}, k: {SUBBANDS}")
        index[key]["trained"] = {n: v for n, v in result.items() if n not in ("model", "k")}
    return out


# ------------------------------------------------------------------------------------------
# Training, evaluation, export and latency of the demo presets (--train-corpus).
# ------------------------------------------------------------------------------------------
def parse_runs(text: str | None) -> list[tuple[str, int]]:
    """``"mdensenet:1,unet5:4"`` → ``[("mdensenet", 1), ("unet5", 4)]``; None: TRAINED_RUNS."""
    if text is None:
        return list(TRAINED_RUNS)
    runs = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        arch, _, k = item.partition(":")
        if arch not in ARCHS or not k.isdigit() or int(k) not in SUBBANDS:
            raise SystemExit(f"--models {item!r}: expected ARCH:K with ARCH one of "
                             f"{', '.join(ARCHS)} and K one of {SUBBANDS}")
        runs.append((arch, int(k)))
    if not runs:
        raise SystemExit("--models: no model given")
    return runs


def run_name(arch: str, k: int) -> str:
    """The work subdirectory of one trained model: ``<arch>-k<K>``."""
    return f"{arch}-k{k}"


def training_config(preset: str, chunk_seconds: float, quick: bool) -> Any:
    """The preset's ``PRESET_TRAINING`` budget on one thread; with `quick` a few steps."""
    from models.separation.train import PRESET_TRAINING, SeparationTrainConfig

    if quick:
        return SeparationTrainConfig(steps=4, batch=2, chunk_seconds=chunk_seconds,
                                     val_every=2, patience=2, val_seconds=1.0, val_tracks=1,
                                     select_by="loss", val_sdr=False, ckpt_every=2,
                                     log_every=1, threads=1)
    if preset not in PRESET_TRAINING:
        raise SystemExit(f"{preset} has no training budget in "
                         "models.separation.train.PRESET_TRAINING")
    return replace(PRESET_TRAINING[preset], threads=1)


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _scores(res: Mapping[str, Any], suffix: str = "") -> dict[str, Any]:
    """The record's quality fields from an :func:`~models.separation.infer.evaluate` result."""
    med = res["median"]
    voc, acc = med["vocals"], med["accompaniment"]
    per_song = {name: _finite(t["vocals"]["sdr"]) for name, t in res["tracks"].items()}
    out: dict[str, Any] = {
        "sdr": _finite(voc["sdr"]), "sdri": _finite(voc["sdri"]),
        "si_sdr": _finite(voc["si_sdr"]), "ssa_si_sdr": _finite(voc.get("ssa_si_sdr")),
        "sir": _finite(voc["sir"]),
        "sar": _finite(voc["sar"]),
        "sdr_accompaniment": _finite(acc["sdr"]), "sdri_accompaniment": _finite(acc["sdri"]),
        "si_sdr_accompaniment": _finite(acc["si_sdr"]),
        "average": _finite(res["average"]), "museval_median": med,
        "sdr_per_song": per_song,
    }
    if suffix:  # a second program's scores: the headline figures only
        return {f"{n}{suffix}": out[n] for n in ("sdr", "sdri", "si_sdr", "sdr_per_song")}
    return out


def _export(ckpt: Path, precision: str, out_dir: Path, calibration: Path | None) -> Any:
    """``export_model`` to ``.pte`` at `precision` through the parity gate, or the program
    already there when it is newer than the checkpoint; returns ``(path, sidecar, failures)``.

    A program that fails the gate is exported again with the gate reporting only, so its
    latency and its SDR on the held-out songs are still measured; ``failures`` (the gate's
    messages, also in ``parity_failed.txt`` beside it) says so in the record and the verdict.
    """
    from export.api import export_model
    from export.errors import ParityError
    from export.parity import GateConfig
    from models.checkpoint import read_header

    name = read_header(ckpt).model
    path = out_dir / f"{name}_xnnpack_{precision}.pte"
    side = path.with_suffix(".json")
    failed = out_dir / f"{path.stem}.parity_failed.txt"
    if path.is_file() and side.is_file() and path.stat().st_mtime >= ckpt.stat().st_mtime:
        log.info("reusing %s", path)
        failures = failed.read_text().splitlines() if failed.is_file() else []
        return path, json.loads(side.read_text()), failures
    calib = calibration if precision == "int8" else None
    failures = []
    try:
        r = export_model(ckpt, "pte", precision, out_dir, threads=1, calibration=calib)
        failed.unlink(missing_ok=True)
    except ParityError as exc:
        failures = [str(exc)]
        log.warning("%s; exporting it with the gate reporting only, to measure it", exc)
        report_only = GateConfig(fp32_rel_tol=1e6, int8_min_sqnr_db=-1e6,
                                 min_stoi=0.0)
        r = export_model(ckpt, "pte", precision, out_dir, threads=1, calibration=calib,
                         gate=report_only)
        failed.write_text("\n".join(failures) + "\n")
    assert r.path is not None
    return r.path, r.sidecar, failures


def _parity(sidecar: Mapping[str, Any], failures: Sequence[str]) -> dict[str, Any]:
    par = sidecar.get("parity") or {}
    out0 = (par.get("outputs") or [{}])[0]
    scale = out0.get("scale") or 0.0
    stoi = par.get("stoi", out0.get("stoi"))
    return {"passed": not failures and bool(par.get("passed")),
            "sqnr_db": _finite(par.get("sqnr_db")), "stoi": _finite(stoi),
            "max_abs_over_scale": _finite(out0["max_abs"] / scale) if scale else None,
            "failures": list(failures)}


def calibration_folder(corpus: Path, work: Path, files: int = 8) -> Path:
    """A folder of links to the first training mixtures (int8 calibration audio)."""
    from models.data.datasets import MusdbDataset

    root = MusdbDataset(corpus, subset="train", sample_rate=None).root / "train"
    folder = work / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    for song in sorted(p for p in root.iterdir() if (p / "mixture.wav").is_file())[:files]:
        link = folder / f"{song.name}.wav"
        if not link.exists():
            link.symlink_to((song / "mixture.wav").resolve())
    return folder


def train_and_measure_one(arch: str, k: int, size: str, corpus: Path, work: Path,
                          calibration: Path, quick: bool) -> dict[str, Any]:
    """Train (or reuse), evaluate and export one CWS model; latency is measured later."""
    return train_and_measure(f"cws-{arch}-{size}", {"k": k}, corpus, work / run_name(arch, k),
                             calibration, quick, {"model": arch, "k": k})


def train_and_measure(preset: str, overrides: Mapping[str, Any], corpus: Path, out: Path,
                      calibration: Path, quick: bool, record: Mapping[str, Any],
                      export: bool = True) -> dict[str, Any]:
    """Train (or reuse) `preset` (with model `overrides`) into `out`, evaluate it on the
    held-out songs, export it to ``.pte`` fp32 and int8 and evaluate the int8 program (not with
    `export` False); the returned record starts with `record`. Latency is measured later
    (:func:`measure_latency`)."""
    import torch

    from compress.commands.separate import load_separator
    from models import registry
    from models.checkpoint import read_header
    from models.separation.infer import DEFAULT_OVERLAP_SECONDS, evaluate
    from models.separation.train import train_separator

    spec = registry.get(preset)
    chunk = float(spec.audio.chunk_seconds)
    overlap = min(DEFAULT_OVERLAP_SECONDS, chunk / 4)
    max_seconds = 2.0 * chunk if quick else None
    cfg = training_config(preset, chunk, quick)
    torch.manual_seed(cfg.seed)
    model = spec.build(**overrides)
    t0 = time.time()
    ckpt = train_separator(model, preset, corpus, out, cfg=cfg, resume=True,
                           show_progress=False)
    header = read_header(ckpt)
    prog = header.extra.get("progress", {})
    train_seconds = sum(float(h.get("seconds", 0.0)) for h in header.history
                        if h.get("event") == "train")
    log.info("%s %s: trained (%s stop at step %s, best step %s) in %.0f s", preset,
             dict(overrides), prog.get("stopped"), prog.get("step"), prog.get("best_step"),
             time.time() - t0)
    res = evaluate(model, corpus, "test", max_seconds, chunk_seconds=chunk,
                   overlap_seconds=overlap, show_progress=False)
    rec: dict[str, Any] = {
        **record, "preset": preset, "checkpoint": str(ckpt),
        "demo_params": sum(p.numel() for p in model.parameters()),
        "sample_rate": int(spec.audio.sample_rate), "chunk_seconds": chunk,
        "test_songs": len(res["tracks"]), "eval_max_seconds": max_seconds,
        **_scores(res),
        "train_steps": prog.get("step"), "best_step": prog.get("best_step"),
        "stopped": prog.get("stopped"), "train_seconds": round(train_seconds, 1),
        "train_config": header.extra.get("train_config"),
    }
    if not export:
        return rec
    from export.errors import ExportError

    t0 = time.time()
    for precision in ("fp32", "int8"):
        try:
            path, sidecar, failures = _export(ckpt, precision, out, calibration)
        except ExportError as exc:  # e.g. a peer's code that torch.export cannot trace
            log.warning("%s: no %s program: %s", preset, precision, exc)
            rec["export_error"] = str(exc).splitlines()[0]
            return rec
        rec[f"pte_{precision}"] = str(path)
        rec[f"pte_{precision}_bytes"] = path.stat().st_size
        rec[f"parity_{precision}"] = _parity(sidecar, failures)
    rec["export_seconds"] = round(time.time() - t0, 1)
    program, pte_chunk, _ = load_separator(rec["pte_int8"])
    res8 = evaluate(program, corpus, "test", max_seconds, chunk_seconds=float(pte_chunk or chunk),
                    overlap_seconds=overlap, show_progress=False)
    rec.update(_scores(res8, "_int8"))
    return rec


def measure_latency(records: Sequence[dict[str, Any]], work: Path, quick: bool) -> None:
    """Host latency of every record's programs, one after the other, one runner thread, the
    same settings for all; sets ``latency_ms_per_audio_s`` (int8) and ``_fp32``."""
    from device_bench.api import measure
    from device_bench.protocol import write_input_file
    from export.api import load_for_export

    warmup, iterations, repeats = (1, 3, 1) if quick else (3, 20, 3)
    for r in records:
        if "pte_int8" not in r:
            continue  # not exported (train_other_models: a recurrent network)
        inputs = load_for_export(r["checkpoint"]).example_inputs  # the programs' chunk
        seconds = inputs[0].shape[-1] / r["sample_rate"]
        raw = write_input_file(inputs, Path(r["checkpoint"]).parent / "bench_input.raw")
        for precision, key in (("int8", "latency_ms_per_audio_s"),
                               ("fp32", "latency_fp32_ms_per_audio_s")):
            bench = measure(r[f"pte_{precision}"], "host", warmup=warmup, iterations=iterations,
                            repeats=repeats, threads=1, input_file=raw)
            p50 = bench.p50_ms
            if p50 is None:
                raise SystemExit(f"{r[f'pte_{precision}']}: the runner reported no p50")
            r[key] = round(p50 / seconds, 3)
            rss = bench.metrics.get("peak_rss(mb)")
            r[f"peak_rss_mb_{precision}"] = None if rss is None else round(float(rss), 1)
        r["latency_settings"] = {"target": "host", "threads": 1, "warmup": warmup,
                                 "iterations": iterations, "repeats": repeats,
                                 "chunk_seconds": seconds, "statistic": "p50"}
        log.info("%s: %.1f ms / s audio (int8), %.1f (fp32)", r["preset"],
                 r["latency_ms_per_audio_s"], r["latency_fp32_ms_per_audio_s"])


def paired_difference(a: Mapping[str, float | None], b: Mapping[str, float | None]
                      ) -> dict[str, Any]:
    """Per-song vocal SDR differences ``a - b`` over the songs both scored: median, mean,
    its 95 % half-width (1.96 standard errors) and how many songs have ``a >= b``."""
    pairs = [(a[n], b.get(n)) for n in a]
    d = np.array([x - y for x, y in pairs if x is not None and y is not None],
                 dtype=np.float64)
    if d.size == 0:
        return {"songs": 0}
    half = float(1.96 * d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else None
    return {"songs": int(d.size), "median": float(np.median(d)), "mean": float(d.mean()),
            "ci95_half_width": half, "not_lower": int((d >= 0).sum())}


def verdict(trained: Sequence[Mapping[str, Any]]) -> list[str]:
    """The acceptance lines: SDRi > 0 dB for each model; K = 4 vs K = 1 (SDR not lower, latency
    lower) for each architecture trained at both."""
    lines = []
    for r in trained:
        sdri = r.get("sdri")
        ok = sdri is not None and sdri > 0
        q = [v for v in (r.get("sdr_per_song") or {}).values() if v is not None]
        iqr = (f", per-song SDR IQR {np.percentile(q, 25):.2f}..{np.percentile(q, 75):.2f} dB"
               if q else "")
        lines.append(f"{'PASS' if ok else 'FAIL'} {NAMES[r['model']]} K={r['k']}: vocal SDRi "
                     f"{'nan' if sdri is None else f'{sdri:+.2f}'} dB > 0 "
                     f"(SDR {r.get('sdr') or float('nan'):.2f} dB, {r.get('test_songs')} "
                     f"held-out songs{iqr})")
    for r in trained:
        for precision in ("fp32", "int8"):
            par = r.get(f"parity_{precision}") or {}
            if par.get("failures"):
                lines.append(f"NOTE {NAMES[r['model']]} K={r['k']}: the {precision} .pte fails "
                             f"the parity gate (measured anyway): {par['failures'][0]}")
    by = {(r["model"], r["k"]): r for r in trained}
    for arch in ARCHS:
        one, four = by.get((arch, 1)), by.get((arch, 4))
        if one is None or four is None:
            continue
        s1, s4 = one.get("sdr"), four.get("sdr")
        l1, l4 = one.get("latency_ms_per_audio_s"), four.get("latency_ms_per_audio_s")
        d = paired_difference(four.get("sdr_per_song") or {}, one.get("sdr_per_song") or {})
        sdr_ok = s1 is not None and s4 is not None and s4 >= s1
        lat_ok = l1 is not None and l4 is not None and l4 < l1
        noise = (f"paired per-song difference K4-K1: median {d['median']:+.2f} dB, mean "
                 f"{d['mean']:+.2f}"
                 + (f" ± {d['ci95_half_width']:.2f} dB (95 %)" if d.get("ci95_half_width")
                    is not None else "")
                 + f", K4 >= K1 on {d['not_lower']}/{d['songs']} songs") if d["songs"] else \
            "no song scored by both"
        within = (not sdr_ok and d.get("ci95_half_width") is not None
                  and abs(d["mean"]) <= d["ci95_half_width"])
        lines.append(
            f"{'PASS' if sdr_ok and lat_ok else 'FAIL'} {NAMES[arch]} K=4 vs K=1: SDR "
            f"{s4 if s4 is not None else float('nan'):.2f} vs "
            f"{s1 if s1 is not None else float('nan'):.2f} dB "
            f"({'not lower' if sdr_ok else 'lower' + (', within the noise' if within else '')}"
            f"; {noise}); int8 latency {l4 or float('nan'):.1f} vs {l1 or float('nan'):.1f} "
            f"ms per audio second ({'lower' if lat_ok else 'not lower'})")
    return lines


def train_demo_models(corpus: Path, work: Path, runs: Sequence[tuple[str, int]],
                      size: str = "demo", quick: bool = False) -> dict[str, Any]:
    """The trained part: ``{"records": [...], "verdict": [...]}`` (module docstring), also
    written to ``work/trained.json``."""
    import torch

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    calibration = calibration_folder(corpus, work)
    t0 = time.time()
    records = []
    for arch, k in runs:
        log.info("=== %s K=%d (%s) ===", NAMES[arch], k, size)
        records.append(train_and_measure_one(arch, k, size, corpus, work, calibration, quick))
    measure_latency(records, work, quick)
    result = {"corpus": str(corpus), "size": size, "quick": quick,
              "seconds": round(time.time() - t0, 1), "records": records,
              "verdict": verdict(records)}
    tmp = work / "trained.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(work / "trained.json")
    return result


# ------------------------------------------------------------------------------------------
# The other separators (issue 25): Vox-TasNet, its asteroid peer, the Chimera network.
# ------------------------------------------------------------------------------------------
def paper_size_stats(preset: str, seconds: float = 3.0) -> dict[str, Any]:
    """Parameters and multiply-adds (GMACs, / 1e9; ``torch.utils.flop_counter``, which counts
    convolutions, matrix products and the LSTM's) on `seconds` of stereo at the preset's own
    rate, for `preset` and for its paper-size preset (the name without ``-demo`` /
    ``-unittest``, when registered). Counted on the ``meta`` device (nothing runs), or on the
    CPU for code that reads tensor values."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from models import registry

    def count(name: str) -> dict[str, Any]:
        spec = registry.get(name)

        def run(device: str) -> tuple[torch.nn.Module, FlopCounterMode]:
            with torch.device(device), torch.no_grad():
                model = spec.build().eval()
                x = torch.zeros(1, int(model.channels), int(round(seconds * model.sample_rate)))
                with FlopCounterMode(display=False) as fc:
                    model(x)
            return model, fc

        try:
            model, fc = run("meta")
        except NotImplementedError:  # code that reads tensor values (asteroid's gLN): on CPU
            model, fc = run("cpu")
        return {"params": sum(p.numel() for p in model.parameters()),
                "gmacs": round(fc.get_total_flops() / 2 / 1e9, 3),
                "sample_rate": int(model.sample_rate)}

    out = {"size": count(preset)}
    stem = preset.removesuffix("-demo").removesuffix("-unittest")
    if stem != preset and stem in registry.names():
        out["paper_size"] = {"name": stem, **count(stem)}
    return out


def evaluate_dc(ckpt: Path, corpus: Path, max_seconds: float | None) -> dict[str, Any]:
    """The Chimera network's DC output on the held-out songs, in the format of
    :func:`models.separation.infer.evaluate`: K-means on the embeddings of the whole song per
    channel (``separate_dc``), the network run on segments of the training chunk's frames
    (§3.2), the cluster order by the best permutation against the references (§3.4: the DC
    output has no source order of its own)."""
    import torch

    from models.checkpoint import load_model
    from models.separation.data import load_test_tracks
    from models.separation.metrics import median_over_tracks, paper_average, separation_scores

    model, header = load_model(ckpt)
    model.eval()
    chunk = float((header.extra.get("train_config") or {}).get("chunk_seconds", 1.0))
    segment = model.frames(int(round(chunk * model.sample_rate)))
    sr, ch = int(model.sample_rate), int(model.channels)
    t0 = time.time()
    per_track = {}
    for tr in load_test_tracks(corpus, sr, ch, max_seconds):
        refs = np.stack([tr.vocals, tr.accompaniment])
        with torch.no_grad():
            est = model.separate_dc(torch.from_numpy(tr.mixture).float()[None],
                                    torch.from_numpy(refs).float(), segment_frames=segment)
        per_track[tr.name] = separation_scores(refs, est.numpy(), tr.mixture, sr)
    median = median_over_tracks(per_track)
    return {"split": "test", "sample_rate": sr, "channels": ch, "max_seconds": max_seconds,
            "seconds": round(time.time() - t0, 2), "tracks": per_track, "median": median,
            "average": paper_average(median) if median else float("nan")}


def expected_params(preset: str) -> int | None:
    """The parameter count the chosen hyper-parameters give (Vox-TasNet and the asteroid
    peer; None for other models): the acceptance's check that the counts agree."""
    from models import registry
    from models.separation.tasnet import tcn_parameters

    cfg = dict(registry.get(preset).defaults)
    if preset.startswith("vox-tasnet"):
        h = (cfg["n"], cfg["b"], cfg["h"], cfg["p"], cfg["x"], cfg["r"])
        return tcn_parameters(cfg["channels"] * h[0], *h[1:]) + 2 * cfg["n"] * cfg["l"]
    if preset.startswith("asteroid-convtasnet"):
        from models.separation.peer import asteroid_parameters

        return asteroid_parameters(cfg["n"], cfg["l"], cfg["b"], cfg["h"], cfg["p"], cfg["x"],
                                   cfg["r"])
    return None


def recurrent(preset: str) -> bool:
    """Whether `preset` holds an LSTM (built on the meta device)."""
    import torch

    from models import registry

    with torch.device("meta"):
        model = registry.get(preset).build()
    return any(isinstance(m, torch.nn.LSTM) for m in model.modules())


def train_other_models(corpus: Path, work: Path, presets: Sequence[str], quick: bool = False,
                       export_lstm: bool = False) -> dict[str, Any]:
    """Train, evaluate, export and time each of `presets` like the CWS models (one record
    each; a Chimera network with a DC head adds a ``<preset>:dc`` record for its DC output),
    then the verdict (:func:`verdict_others`); also written to ``work/others.json``. Networks
    with an LSTM are trained and evaluated but not exported or timed unless `export_lstm`."""
    import torch

    torch.set_num_threads(1)
    work.mkdir(parents=True, exist_ok=True)
    calibration = calibration_folder(corpus, work)
    t0 = time.time()
    records: list[dict[str, Any]] = []
    for preset in presets:
        saved = work / preset / "record.json"
        ckpt = work / preset / "model.safetensors"
        if saved.is_file() and ckpt.is_file() and saved.stat().st_mtime >= ckpt.stat().st_mtime:
            log.info("=== %s: the record of an earlier run (%s) ===", preset, saved)
            records.append(json.loads(saved.read_text()))
            continue
        log.info("=== %s ===", preset)
        export = export_lstm or not recurrent(preset)
        if not export:
            log.info("%s: not exported (an LSTM: torch.export unrolls it frame by frame and "
                     "the lowering of a whole chunk takes many minutes; --export-lstm)", preset)
        rec = train_and_measure(preset, {}, corpus, work / preset, calibration, quick,
                                {"model": preset, "k": None, **paper_size_stats(preset),
                                 "expected_params": expected_params(preset),
                                 "exported": export}, export=export)
        records.append(rec)
        tmp = saved.with_suffix(".json.tmp")  # a killed run picks it up again
        tmp.write_text(json.dumps(rec, indent=2) + "\n")
        tmp.replace(saved)
    measure_latency(records, work, quick)
    for rec in list(records):
        from models import registry

        alpha = registry.get(rec["preset"]).defaults.get("alpha")
        if alpha is not None and alpha > 0:  # a trained DC head
            res = evaluate_dc(Path(rec["checkpoint"]), corpus,
                              rec["eval_max_seconds"])
            records.append({"model": f"{rec['preset']}:dc", "k": None,
                            "preset": rec["preset"], "output": "dc",
                            "test_songs": len(res["tracks"]), **_scores(res)})
    result = {"corpus": str(corpus), "quick": quick, "seconds": round(time.time() - t0, 1),
              "records": records, "verdict": verdict_others(records)}
    tmp = work / "others.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(work / "others.json")
    return result


def verdict_others(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Acceptance lines for the other separators: SDRi > 0 dB each; the parameter count of
    the chosen hyper-parameters; int8 against fp32 latency; Vox-TasNet beside its asteroid
    peer (same data and budget) and their stereo asymmetry; Chimera's MI and DC outputs beside
    the MI network trained alone, with the paired per-song noise."""
    lines = []
    by = {r["model"]: r for r in records}

    def f(v: Any, fmt: str = ".2f") -> str:
        return "nan" if v is None else format(v, fmt)

    for r in records:
        sdri = r.get("sdri")
        ok = sdri is not None and sdri > 0
        lines.append(f"{'PASS' if ok else 'FAIL'} {r['model']}: vocal SDRi {f(sdri, '+.2f')} dB "
                     f"> 0 (SDR {f(r.get('sdr'))} dB, {r.get('test_songs', '?')} held-out songs)")
    for r in records:
        want = r.get("expected_params")
        if want is not None:
            got = r.get("demo_params")
            lines.append(f"{'PASS' if got == want else 'FAIL'} {r['model']}: {got} parameters, "
                         f"{want} from its hyper-parameters")
        l8, l32 = r.get("latency_ms_per_audio_s"), r.get("latency_fp32_ms_per_audio_s")
        if l8 is not None and l32 is not None:
            lines.append(f"{'PASS' if l8 < l32 else 'FAIL'} {r['model']}: int8 {l8:.1f} vs fp32 "
                         f"{l32:.1f} ms per audio second; SDR int8 {f(r.get('sdr_int8'))} vs "
                         f"fp32 {f(r.get('sdr'))} dB")
        for precision in ("fp32", "int8"):
            par = r.get(f"parity_{precision}") or {}
            if par.get("failures"):
                lines.append(f"NOTE {r['model']}: the {precision} .pte fails the parity gate "
                             f"(measured anyway): {par['failures'][0]}")

    def pair(a: str, b: str, what: str) -> None:
        ra, rb = by.get(a), by.get(b)
        if ra is None or rb is None:
            return
        d = paired_difference(ra.get("sdr_per_song") or {}, rb.get("sdr_per_song") or {})
        noise = (f"paired per-song difference: mean {d['mean']:+.2f}"
                 + (f" ± {d['ci95_half_width']:.2f} dB (95 %)"
                    if d.get("ci95_half_width") is not None else " dB")
                 + f", {d['not_lower']}/{d['songs']} songs not lower") if d["songs"] else ""
        lines.append(f"INFO {what}: {a} SDR {f(ra.get('sdr'))} vs {b} {f(rb.get('sdr'))} dB "
                     f"({noise})")

    pair("vox-tasnet-demo", "asteroid-convtasnet-demo", "our Vox-TasNet vs asteroid ConvTasNet")
    tas, peer = by.get("vox-tasnet-demo"), by.get("asteroid-convtasnet-demo")
    if tas is not None and peer is not None:
        same = tas.get("train_config") == peer.get("train_config")
        lines.append(f"{'PASS' if same else 'FAIL'} same data and budget: training configs "
                     f"{'equal' if same else 'differ'} (steps, batch, chunk, schedule, "
                     f"validation, seed); trained {tas.get('train_steps')} vs "
                     f"{peer.get('train_steps')} steps, best at {tas.get('best_step')} vs "
                     f"{peer.get('best_step')} (the same early-stopping rule ends each)")
        lines.append(f"INFO stereo asymmetry (SSA SI-SDR of the vocals, lower is better): "
                     f"Vox-TasNet {f(tas.get('ssa_si_sdr'))} dB vs the per-channel asteroid "
                     f"model {f(peer.get('ssa_si_sdr'))} dB")
    pair("chimera-demo", "chimera-demo:dc", "Chimera MI output vs its DC output")
    pair("chimera-demo", "chimera-mi-demo", "Chimera MI output vs the MI network alone")
    return lines


def format_others(records: Sequence[Mapping[str, Any]]) -> str:
    """A text table of the other separators' records."""
    keys = [("demo_params", "params", 1e-6, ".3f"), ("gmacs", "GMACs 3s", 1, ".2f"),
            ("sdr", "SDR", 1, ".2f"), ("sdri", "SDRi", 1, ".2f"), ("si_sdr", "SI-SDR", 1, ".2f"),
            ("ssa_si_sdr", "SSA", 1, ".2f"), ("sdr_int8", "SDR int8", 1, ".2f"),
            ("latency_fp32_ms_per_audio_s", "ms/s fp32", 1, ".1f"),
            ("latency_ms_per_audio_s", "ms/s int8", 1, ".1f"),
            ("peak_rss_mb_int8", "RSS MB", 1, ".0f")]
    head = f"{'model':<28}" + "".join(f"{h:>11}" for _, h, _, _ in keys)
    lines = [head, "-" * len(head)]
    for r in records:
        row = dict(r)
        row["gmacs"] = (r.get("size") or {}).get("gmacs")
        cells = []
        for k, _, scale, fmt in keys:
            v = row.get(k)
            cells.append("-" if not isinstance(v, (int, float)) else format(v * scale, fmt))
        lines.append(f"{r['model']:<28}" + "".join(f"{c:>11}" for c in cells))
    lines.append("params: millions (demo preset); GMACs: multiply-adds of the demo preset on 3 s "
                 "of stereo / 1e9; SDR / SDRi / SI-SDR / SSA (vocals): dB on held-out songs; "
                 "latency: host runner, 1 thread, p50 ms per audio second.")
    return "\n".join(lines)


def format_table(records: list[dict[str, Any]]) -> str:
    """A text table: our figures beside Table 2's, and any trained results."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    present = {n for r in records for n in r.get("trained", {})}
    trained_keys = [n for n in TABLE_KEYS if n in present]
    head = (f"{'model':<8}{'K':>3}{'params (M)':>12}{'paper':>8}{'diff':>8}"
            f"{'GFLOPs':>9}{'paper':>9}{'diff':>8}")
    widths = {n: max(9, len(n) + 2) for n in trained_keys}
    head += "".join(f"{n:>{widths[n]}}" for n in trained_keys)
    lines = [head, "-" * len(head)]
    for r in records:
        pp, pg = r["paper_params"], r["paper_gflops"]
        dp = None if pp is None else f"{100 * (r['params'] / pp - 1):+.1f}%"
        dg = None if pg is None else f"{100 * (r['gflops'] / pg - 1):+.1f}%"
        line = (f"{NAMES[r['model']]:<8}{r['k']:>3}{r['params'] / 1e6:>12.3f}"
                f"{num(None if pp is None else pp / 1e6, '.2f'):>8}{num(dp, ''):>8}"
                f"{r['gflops']:>9.2f}{num(pg, '.2f'):>9}{num(dg, ''):>8}")
        trained = r.get("trained", {})
        line += "".join(f"{num(trained.get(n), '.3g'):>{widths[n]}}" for n in trained_keys)
        lines.append(line)
    lines.append("GFLOPs: multiply-adds of the network on 3 s of stereo 44.1 kHz / 1e9 "
                 "(Table 2's convention); filter bank and STFT not counted.")
    if trained_keys:
        lines.append("Trained (demo presets, held-out songs): vocal SDR / SDRi / SI-SDR in dB "
                     "(museval medians; sdr_int8: the int8 program's); latency: int8 .pte, "
                     "host runner, 1 thread, p50 ms per second of audio.")
    return "\n".join(lines)


def get_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the records here")
    ap.add_argument("--trained", type=Path,
                    help="trained-model results to merge (add_trained_results): a JSON list of "
                    "records, a WORK/trained.json, or a WORK/others.json (--others)")
    ap.add_argument("--train-corpus", type=Path, metavar="DIR",
                    help="train, evaluate, export and time the demo presets on this MUSDB-layout "
                    "corpus (DIR/{train,test}/<song>/{mixture,vocals,accompaniment}.wav)")
    ap.add_argument("--work", type=Path, default=Path("runs/separation_bench"),
                    help="checkpoints and programs, one subdirectory per model (reused when "
                    "finished); default: %(default)s")
    ap.add_argument("--models", default=None, metavar="ARCH:K,...",
                    help="what to train (default: "
                    + ",".join(f"{a}:{k}" for a, k in TRAINED_RUNS) + ")")
    ap.add_argument("--size", choices=SIZES, default="demo",
                    help="preset size to train: cws-<arch>-<size> (default: %(default)s)")
    ap.add_argument("--others", nargs="?", const=",".join(OTHER_RUNS), default=None,
                    metavar="PRESET,...",
                    help="also train, evaluate, export and time these other separators on "
                    "--train-corpus (default with no value: " + ",".join(OTHER_RUNS) + ")")
    ap.add_argument("--export-lstm", action="store_true",
                    help="with --others: export and time recurrent networks (Chimera) too; "
                    "their whole-chunk lowering takes many minutes a program")
    ap.add_argument("--skip-cws", action="store_true",
                    help="with --others: train only the other separators")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: a few training steps, two chunks of each held-out song, a "
                    "short latency run")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    trained: list[dict[str, Any]] | None = None
    others: dict[str, Any] | None = None
    lines: list[str] = []
    if args.others and not args.train_corpus:
        raise SystemExit("--others needs --train-corpus")
    if args.trained:
        loaded = json.loads(args.trained.read_text())
        if isinstance(loaded, dict) and loaded["records"] and \
                loaded["records"][0].get("k") is None:  # a WORK/others.json
            others = {**loaded, "verdict": verdict_others(loaded["records"])}
        else:
            trained = loaded["records"] if isinstance(loaded, dict) else loaded
            lines = verdict(trained) if isinstance(loaded, dict) else []
    if args.train_corpus:
        if not args.train_corpus.is_dir():
            raise SystemExit(f"--train-corpus {args.train_corpus}: no such directory")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        if not args.skip_cws:
            result = train_demo_models(args.train_corpus, args.work, parse_runs(args.models),
                                       args.size, args.quick)
            trained = [*(trained or []), *result["records"]]
            lines = result["verdict"]
            print(f"trained part: {result['seconds']:.0f} s; records in "
                  f"{args.work / 'trained.json'}")
        if args.others:
            presets = [p.strip() for p in args.others.split(",") if p.strip()]
            others = train_other_models(args.train_corpus, args.work, presets, args.quick,
                                        args.export_lstm)
            print(f"other separators: {others['seconds']:.0f} s; records in "
                  f"{args.work / 'others.json'}")
    records = add_trained_results(static_records(), trained)
    print(format_table(records))
    for line in lines:
        print(line)
    if others is not None:
        print(format_others(others["records"]))
        for line in others["verdict"]:
            print(line)
        records += [{"model": r["model"], "k": None, "trained": r} for r in others["records"]]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(records, indent=2) + "\n")
        tmp.replace(args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
