"""How chunked conversion is stitched, measured on a `compress run` directory's student.

Usage::

    python benchmarks/chunk_stitch.py RUN_DIR [--split test] [--items 6] [--seconds 4]
        [--json out.json]

The app and :class:`compress.svc_adapter.ChunkedSVC` convert long inputs as fixed chunks of
the shipped program (``export.chunk_seconds``) overlapping by a quarter chunk. This compares,
side by side on the same held-out conversions (``RUN/00_data`` splits, the run's score):

- ``fade=overlap``: a linear crossfade over the whole overlap (the edges of both chunks mix in);
- ``fade=40ms`` / ``10ms`` / ``5ms``: a short crossfade centred in the overlap, the chunks'
  outer edges dropped (``ChunkedSVC``'s default is 10 ms);
- ``one call``: the clip converted in a single call of a program as long as the clip (the
  ceiling chunking can reach).

The subject is the run's exported ``.pte`` (``07_export``) on the ExecuTorch runtime when it
exists, else the distilled student's device program in eager mode (``05_distill``); the
one-call ceiling is always the eager device program. Prints mean ± standard error per scheme.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from compress.config import RunConfig
from compress.config_io import from_dict
from compress.recipes import recipe_for
from compress.recipes.base import DataSplits
from compress.rundir import CONFIG
from compress.svc_adapter import ChunkedSVC


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--items", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    stored = json.loads((args.run / CONFIG).read_text())["config"]  # {config, target}
    cfg = from_dict(RunConfig, stored["config"])
    recipe = recipe_for(cfg.model.name)
    recipe.configure(cfg)
    data = DataSplits.from_json(
        json.loads((args.run / "00_data" / "done.json").read_text())["result"]["splits"])
    student = recipe.load(args.run / "05_distill" / "model.safetensors")
    eager = recipe.device_program(student).eval()
    ptes = sorted(p for p in (args.run / "07_export").glob("*.pte") if "decoder" not in p.name)
    if ptes:
        from export.runtime import PteRunner

        program, subject = PteRunner(ptes[0], threads=1), f"{ptes[0].name} (ExecuTorch)"
    else:
        program, subject = eager, "device program (eager)"
    chunk_s = float(cfg.export.chunk_seconds)
    chunk = recipe.chunk_samples(student, chunk_s)
    sr = student.sample_rate
    score = cfg.evolve.score
    scorer = recipe.scorer(student, data, args.split, items=args.items, seconds=args.seconds,
                           chunk_seconds=chunk_s, score=score)
    schemes = {"fade=overlap": chunk / 4 / sr, "fade=40ms": 0.04, "fade=10ms": 0.01,
               "fade=5ms": 0.005}
    rows = []
    for name, fade in schemes.items():
        svc = ChunkedSVC(program, chunk, student.speakers, sr, f"bench-{name}", fade)
        res = scorer(svc, name)
        rows.append({"scheme": name, "subject": subject, score: res.value, "se": res.noise})
    whole = ChunkedSVC(eager, recipe.chunk_samples(student, args.seconds),
                       student.speakers, sr, "bench-one-call")
    res = scorer(whole, "one call")
    rows.append({"scheme": "one call", "subject": "device program (eager)", score: res.value,
                 "se": res.noise})
    print(f"{'scheme':14s} {score:>9s} {'± se':>7s}  subject")
    for r in rows:
        print(f"{r['scheme']:14s} {r[score]:9.4f} {r['se']:7.4f}  {r['subject']}")
    if args.json:
        args.json.write_text(json.dumps({"run": str(args.run), "split": args.split,
                                         "items": args.items, "chunk_seconds": chunk_s,
                                         "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
