"""Side-by-side runtimes for one model: eager PyTorch vs ExecuTorch vs onnxruntime vs LiteRT.

Usage::

    python benchmarks/runtimes.py --model lhq-svc-decoder [--threads 1] [--iterations 30]
        [--out benchmarks/results/runtimes_lhq-svc-decoder.md] [--calibration DIR]

Every exported program is produced in memory through the library (``export.pte``,
``export.onnx_export``, ``export.tflite``), so each one passed its parity gate; a format that
fails to export is listed with its error instead of a latency. All runtimes are timed in ONE
process on the same inputs with ``threads`` intra-op threads, and their iterations are
interleaved round-robin (with a rotating start) so machine noise hits all of them alike. The
table reports p50 / p90 latency, file size, parity against eager fp32 (max-abs, SQNR) and the
ratios against eager fp32 (size and speed). A markdown table and a JSON file are written.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("benchmarks.runtimes")


@dataclass
class Entry:
    """One runtime under test."""

    name: str
    runtime: str
    precision: str
    run: Callable[[], Any] | None
    size_bytes: int
    parity: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    export_seconds: float = 0.0
    times_ms: list[float] = field(default_factory=list)


def _eager_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.state_dict().values())
    return sum(t.numel() * t.element_size() for t in tensors)


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def build_entries(args: argparse.Namespace) -> tuple[list[Entry], dict[str, Any]]:
    from export.api import load_for_export
    from export.calibration import calibration_from_dir, calibration_from_examples, resolve_adapter
    from export.common import fill_zero_parameters
    from export.errors import ExportError
    from export.parity import flatten_outputs
    from export.runtime import OnnxRunner, PteRunner, TfliteRunner, litert_available

    lm = load_for_export(args.model)
    model, inputs = lm.model, lm.example_inputs
    filled: list[str] = []
    with torch.no_grad():
        zero_out = all(not bool(t.abs().sum()) for t in flatten_outputs(model(*inputs)))
    if zero_out:  # untrained preset with zero-initialised output layers
        filled = fill_zero_parameters(model)
    sr = int(lm.spec.audio.sample_rate)
    if args.calibration:
        adapter = resolve_adapter(lm.spec, model, inputs)
        calib = calibration_from_dir(
            args.calibration,
            adapter,
            sample_rate=sr,
            chunk_seconds=float(lm.spec.audio.chunk_seconds) or 1.0,
            max_batches=args.calibration_batches,
        )
    else:
        calib = calibration_from_examples(inputs)
    audio_sr = sr if lm.audio_out else None

    def eager() -> Any:
        with torch.no_grad():
            return model(*inputs)

    entries = [
        Entry(
            "eager fp32",
            "PyTorch eager",
            "fp32",
            eager,
            _eager_bytes(model),
            parity={"max_abs": 0.0, "sqnr_db": "inf"},
        )
    ]
    plans: list[tuple[str, str, str]] = [
        ("pte", "fp32", "ExecuTorch XNNPACK"),
        ("pte", "int8", "ExecuTorch XNNPACK"),
        ("onnx", "fp32", "onnxruntime CPU"),
        ("onnx", "int8", "onnxruntime CPU"),
    ]
    if litert_available():
        plans += [("tflite", "fp32", "LiteRT"), ("tflite", "int8", "LiteRT")]
    skipped = (
        [] if litert_available() else ["LiteRT fp32 / int8: the [tflite] extra is not installed"]
    )
    for fmt, prec, runtime in plans:
        if args.formats and fmt not in args.formats:
            continue
        label = f"{runtime.split()[0]} {prec}"
        t0 = time.perf_counter()
        common: dict[str, Any] = dict(
            precision=prec,
            calibration=calib if prec == "int8" else None,
            metadata=lm.metadata,
            audio_sample_rate=audio_sr,
            threads=args.threads,
        )
        try:
            if fmt == "pte":
                from export.pte import export_pte

                res = export_pte(
                    model, inputs, None, lm.name, dynamic_shapes=lm.dynamic_shapes, **common
                )
                runner: Any = PteRunner(res.data, threads=args.threads)
            elif fmt == "onnx":
                from export.onnx_export import export_onnx

                res = export_onnx(
                    model, inputs, None, lm.name, dynamic_shapes=lm.dynamic_shapes, **common
                )
                runner = OnnxRunner(res.data, threads=args.threads)
            else:
                from export.tflite import export_tflite

                res = export_tflite(model, inputs, None, lm.name, **common)
                runner = TfliteRunner(res.data, threads=args.threads)
        except ExportError as exc:
            log.warning("%s failed: %s", label, exc)
            entries.append(
                Entry(
                    label,
                    runtime,
                    prec,
                    None,
                    0,
                    error=str(exc)[:300],
                    export_seconds=time.perf_counter() - t0,
                )
            )
            continue
        par = res.sidecar["parity"]
        entries.append(
            Entry(
                label,
                runtime,
                prec,
                functools.partial(runner, *inputs),
                res.size_bytes,
                parity={"max_abs": par["max_abs"], "sqnr_db": par["sqnr_db"], "stoi": par["stoi"]},
                export_seconds=time.perf_counter() - t0,
            )
        )
        log.info("%s exported in %.1f s", label, entries[-1].export_seconds)
    info = {
        "model": lm.name,
        "source": lm.source,
        "params": sum(p.numel() for p in model.parameters()),
        "inputs": [list(x.shape) for x in inputs],
        "calibration": calib.source,
        "skipped": skipped,
        "filled_zero_parameters": filled,
    }
    return entries, info


def time_round_robin(entries: list[Entry], iterations: int, warmup: int) -> None:
    live = [e for e in entries if e.run is not None]
    for e in live:
        for _ in range(warmup):
            e.run()  # type: ignore[misc]
    for i in range(iterations):
        k = i % len(live)
        for e in live[k:] + live[:k]:
            t0 = time.perf_counter()
            e.run()  # type: ignore[misc]
            e.times_ms.append((time.perf_counter() - t0) * 1e3)


def _fmt_sqnr(x: Any) -> str:
    return "∞" if x == "inf" else (f"{x:.1f}" if isinstance(x, (int, float)) else "–")


def render(
    entries: list[Entry], info: dict[str, Any], args: argparse.Namespace
) -> tuple[str, dict]:
    eager = entries[0]
    e_p50 = statistics.median(eager.times_ms)
    rows: list[str] = []
    out_rows: list[dict[str, Any]] = []
    for e in entries:
        if e.error:
            rows.append(f"| {e.name} | failed to export: {e.error.replace('|', '/')} | | | | | | |")
            out_rows.append({"name": e.name, "error": e.error})
            continue
        p50, p90 = statistics.median(e.times_ms), _percentile(e.times_ms, 0.9)
        speed = e_p50 / p50 if p50 > 0 else float("nan")
        smaller = eager.size_bytes / e.size_bytes if e.size_bytes else float("nan")
        rows.append(
            f"| {e.name} | {p50:.2f} | {p90:.2f} | {e.size_bytes / 1e6:.2f} | {smaller:.2f}× | "
            f"{speed:.2f}× | {e.parity.get('max_abs', 0):.2g} | "
            f"{_fmt_sqnr(e.parity.get('sqnr_db'))} |"
        )
        out_rows.append(
            {
                "name": e.name,
                "runtime": e.runtime,
                "precision": e.precision,
                "p50_ms": p50,
                "p90_ms": p90,
                "mean_ms": statistics.fmean(e.times_ms),
                "min_ms": min(e.times_ms),
                "size_bytes": e.size_bytes,
                "size_ratio_vs_eager": smaller,
                "speedup_vs_eager": speed,
                "parity": e.parity,
                "export_seconds": round(e.export_seconds, 1),
                "n": len(e.times_ms),
            }
        )
    by = {r["name"]: r for r in out_rows if "p50_ms" in r}
    checks = []
    if "ExecuTorch fp32" in by and "ExecuTorch int8" in by:
        size_x = by["ExecuTorch fp32"]["size_bytes"] / by["ExecuTorch int8"]["size_bytes"]
        speed_x = by["ExecuTorch int8"]["speedup_vs_eager"]
        checks = [
            f"- int8 `.pte` is {size_x:.2f}× smaller than fp32 `.pte` (target ≥ 3.5×): "
            f"{'PASS' if size_x >= 3.5 else 'FAIL'}",
            f"- int8 `.pte` is {speed_x:.2f}× faster than eager fp32 on {args.threads} thread(s) "
            f"(target ≥ 2×): {'PASS' if speed_x >= 2.0 else 'FAIL'}",
        ]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    md = [
        f"### Runtimes: `{info['model']}` ({info['params']:,} parameters)",
        "",
        f"Input shapes {info['inputs']}; {args.threads} thread(s); {args.iterations} interleaved "
        f"iterations after {args.warmup} warm-up; {platform.processor() or platform.machine()}, "
        f"load average at the end {load[0]:.1f}. Calibration: {info['calibration'].get('kind')}."
        " Parity is against eager fp32 on the same input (SQNR in dB).",
        "",
        "| runtime | p50 ms | p90 ms | size MB | smaller vs eager | faster vs eager "
        "| max-abs | SQNR dB |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if info["filled_zero_parameters"]:
        md += [
            "",
            f"The untrained preset's output was identically zero: its "
            f"{len(info['filled_zero_parameters'])} all-zero parameters (e.g. "
            f"{', '.join(info['filled_zero_parameters'][-2:])}) were filled with seeded "
            "N(0, 0.05²) noise so that the parity figures mean something.",
        ]
    if info["skipped"]:
        md += ["", *[f"Not measured: {s}." for s in info["skipped"]]]
    if checks:
        md += ["", *checks]
    md.append("")
    md.append(f"Command: `python benchmarks/runtimes.py {' '.join(sys.argv[1:])}`")
    data = {
        "info": info,
        "threads": args.threads,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "load_average": list(load),
        "rows": out_rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return "\n".join(md) + "\n", data


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="registry name or checkpoint path")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--out",
        default=None,
        help="markdown path (default: "
        "benchmarks/results/runtimes_<model>.md); JSON is written next to it",
    )
    p.add_argument("--calibration", default=None, help="folder of audio for int8 calibration")
    p.add_argument("--calibration-batches", type=int, default=8)
    p.add_argument(
        "--formats",
        nargs="*",
        default=None,
        choices=["pte", "onnx", "tflite"],
        help="restrict the exported formats (default: all available)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    if args.threads < 1 or args.iterations < 1:
        print("error: --threads and --iterations must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    entries, info = build_entries(args)
    time_round_robin(entries, args.iterations, args.warmup)
    md, data = render(entries, info, args)
    name = Path(str(info["model"])).name
    out = Path(args.out or f"benchmarks/results/runtimes_{name}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(md)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
