"""Speed of the harmonic-plus-noise vocoder (:class:`models.lhq_svc.vocoder.HNVocoder`), one run.

Exports the HN vocoder of an LHQ-SVC pipeline checkpoint (its ``vocoder.*`` weights), of an HN
vocoder checkpoint, or a registry preset (default ``lhq-svc-vocoder-hn-demo``) to ExecuTorch /
XNNPACK fp32 and int8, then prints, per second of audio at one thread:

* eager PyTorch ms (median of timed calls),
* ``.pte`` fp32 and int8 p50 ms from the native runner (``device_bench.api.measure``, host),
  fed the real example inputs (``device_bench.protocol.write_input_file``),
* the parity figures of the exports (fp32 max-abs / scale, int8 SQNR, STOI), the ops left on
  portable kernels, and the ratios eager / pte.

Example::

    .venv/bin/python benchmarks/vocoder_speed.py --checkpoint /tmp/svc/demo_final/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from device_bench.api import measure
from device_bench.protocol import write_input_file
from export.api import export_model
from models import registry
from models.checkpoint import load_model, read_header, save_checkpoint

DEFAULT_PRESET = "lhq-svc-vocoder-hn-demo"


def vocoder_checkpoint(checkpoint: str | None, preset: str, work: Path) -> tuple[str, str]:
    """A checkpoint path (or registry name) that ``export_model`` takes, and the preset name.

    A pipeline checkpoint (model ``lhq-svc*`` with an HN vocoder) is split: the pipeline is
    loaded (strictly) and its vocoder saved alone under the matching HN vocoder preset's name.
    """
    if checkpoint is None:
        return preset, preset
    header = read_header(checkpoint)
    spec = registry.get(header.model)
    if spec.component == "vocoder":
        return checkpoint, header.model
    if spec.component != "pipeline" or header.config.get("vocoder_kind") != "hn":
        raise SystemExit(f"{checkpoint}: model {header.model} is neither an HN vocoder nor a "
                         f"pipeline with vocoder_kind='hn'")
    name = "lhq-svc-vocoder-hn" + header.model[len("lhq-svc"):]
    # the pipeline builds its own vocoder (channels, synthesis, ...; older checkpoints get
    # the defaults they were written with)
    vocoder = load_model(checkpoint)[0].vocoder
    config = {k: vocoder.config[k] for k in registry.get(name).defaults}  # the preset's keys
    path = save_checkpoint(work / "vocoder.safetensors", vocoder, model_name=name, config=config)
    return str(path), name


def eager_ms(model: torch.nn.Module, inputs: tuple[Any, ...], iters: int) -> float:
    with torch.no_grad():
        model(*inputs)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            model(*inputs)
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="pipeline or HN vocoder checkpoint (default: preset)")
    ap.add_argument("--preset", default=DEFAULT_PRESET, help="registry preset without checkpoint")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--out", help="keep the .pte files here (default: a temporary directory)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vocoder_speed_") as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        source, name = vocoder_checkpoint(args.checkpoint, args.preset, work)
        spec = registry.get(name)
        if Path(source).exists():
            model = load_model(source)[0].eval()
        else:
            model = spec.build().eval()
        inputs = tuple(spec.example_inputs(model))
        seconds = inputs[0].shape[-1] * spec.audio.hop_length / spec.audio.sample_rate
        input_file = write_input_file(inputs, work / "inputs.bin")
        rows: dict[str, Any] = {"model": name, "source": source, "audio_seconds": seconds}
        rows["eager_ms_per_s"] = eager_ms(model, inputs, args.iterations) / seconds
        print(f"{name} ({source}), {seconds:.3f} s of audio, 1 thread")
        print(f"  eager fp32      {rows['eager_ms_per_s']:8.2f} ms / s audio")
        for precision in args.precisions.split(","):
            r = export_model(source, "pte", precision, work / precision, name=name, threads=1)
            bench = measure(r.path, "host", threads=1, iterations=args.iterations,
                            input_file=input_file)
            p50 = bench.p50_ms
            if p50 is None:
                raise SystemExit(f"{r.path}: the runner reported no p50 ({bench.errors})")
            par = r.sidecar["parity"]
            out = par["outputs"][0]
            deleg = r.sidecar["delegation"]
            rows[precision] = {
                "pte_ms_per_s": p50 / seconds,
                "size_bytes": r.path.stat().st_size,
                "parity": par,
                "portable_ops": deleg["portable"],
            }
            fig = (f"max_abs/scale {out['max_abs'] / out['scale']:.2e}" if precision == "fp32"
                   else f"SQNR {out['sqnr_db']} dB")
            stoi = par.get("stoi", out.get("stoi"))
            print(f"  pte {precision:<5}       {p50 / seconds:8.2f} ms / s audio "
                  f"(eager/pte {rows['eager_ms_per_s'] * seconds / p50:.2f}x), {fig}"
                  + (f", STOI {stoi}" if stoi is not None else "")
                  + f", {r.path.stat().st_size / 1e6:.2f} MB")
            print(f"      portable ops: {deleg['portable']}")
        if "fp32" in rows and "int8" in rows:
            ratio = rows["fp32"]["pte_ms_per_s"] / rows["int8"]["pte_ms_per_s"]
            print(f"  pte fp32 / int8 time {ratio:.2f}x")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
