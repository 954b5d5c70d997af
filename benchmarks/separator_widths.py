"""What narrowing a separator's blocks buys on a target: the whole program timed at each width.

Loads a separator checkpoint (a ``compress run`` stage's or a trained one), narrows copies of it
to ``--factors`` of its block widths (:meth:`models.separation.separator.Separator.narrow`: dense
growth rates or UNet conv-block channels, at least 2), exports each as the program that ships
(int8 mask network, filter banks and STFT fp32, calibrated on the same seeded chunk) and times
all of them interleaved on ``--target`` (:func:`compress.latency_probe.measure_rounds`: a slow
spell of a shared machine hits every width alike). Printed per width: the block widths, the
parameters, p50 / min ms per chunk and the ratio to the full width. Weights are sliced, not
trained: this measures speed, not quality.

Example::

    .venv/bin/python benchmarks/separator_widths.py \\
        --checkpoint runs/separation-demo/02_robust/model.safetensors --factors 0.75 0.5 0.25
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

from compress.latency_probe import PROBE_GATE, bench_samples_fn, measure_rounds
from compress.recipes.separation import SeparationRecipe
from export.calibration import CalibrationSet
from export.pte import export_pte
from models.separation.nets import narrow_widths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="separator checkpoint")
    ap.add_argument("--factors", type=float, nargs="+", default=[0.75, 0.5, 0.25])
    ap.add_argument("--chunk-seconds", type=float, default=2.0)
    ap.add_argument("--target", default="host:threads=1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    recipe = SeparationRecipe()
    model = recipe.load(args.checkpoint)
    n = int(round(args.chunk_seconds * model.sample_rate))
    x = (0.1 * torch.randn(1, model.channels, n),)
    widths = {"1.0": list(model.block_widths)}
    for f in args.factors:
        widths[f"{f:g}"] = narrow_widths(model.block_widths, f)  # what compress run narrows to
    jobs, params = {}, {}
    with tempfile.TemporaryDirectory(prefix="sepwidths_") as tmp:
        out = Path(tmp)
        for name, w in widths.items():
            m = copy.deepcopy(model)
            if w != m.block_widths:
                m.narrow(w)
            params[name] = sum(p.numel() for p in m.parameters())
            res = export_pte(m.eval(), x, out, f"width_{name}", precision="int8",
                             calibration=CalibrationSet([x], {"kind": "seeded chunk"}),
                             gate=PROBE_GATE, keep_fp32=list(recipe.keep_fp32(m)),
                             only_modules=list(recipe.int8_modules(m) or []) or None)
            jobs[name] = (Path(str(res.path)), x)
            print(f"exported width x{name}: {w}", flush=True)
        stats = measure_rounds(jobs, bench_samples_fn(args.target, 1, 2, args.iterations, out),
                               args.rounds)
    full = stats["1.0"].p50_ms
    rows = []
    print(f"\n{'factor':>6} {'params':>8} {'p50 ms':>8} {'min ms':>8} {'vs full':>8}  widths")
    for name, st in stats.items():
        rows.append({"factor": float(name), "widths": widths[name], "params": params[name],
                     "p50_ms": st.p50_ms, "min_ms": st.min_ms, "vs_full": st.p50_ms / full})
        print(f"{name:>6} {params[name]:8d} {st.p50_ms:8.2f} {st.min_ms:8.2f} "
              f"{st.p50_ms / full:8.3f}  {widths[name]}")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": args.checkpoint, "target": args.target,
                                         "chunk_seconds": args.chunk_seconds, "rows": rows},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
