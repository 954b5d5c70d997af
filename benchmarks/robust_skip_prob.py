"""Choose the robust-training skip probability p (LHQ-SVC eq. 1, SnapFusion §3.1) by experiment.

From the trained ``lhq-svc-demo`` teacher, fine-tune the conditioner + decoder for the same
number of steps with the same seed for each p, then score the full architecture and every
single-block removal with :mod:`compress.scores` (speaker similarity, the evolution's "CLIP
score", and STOI against the target singer's ground truth) on a small held-out eval set with the
teacher's DDIM sampler. The untouched teacher is scored as a reference row.

A good p keeps the full model's scores while making removals cheap (small drops), which is what
the architecture search needs. The choice rule: among the p whose full speaker similarity is
within ``--sim-tol`` of the teacher's and whose STOI is within ``--stoi-tol`` of the teacher's,
take the one with the smallest removal cost: the mean over single-block removals of the average
of the speaker-similarity drop and the STOI drop (ties: smaller p).

    .venv/bin/python benchmarks/robust_skip_prob.py            # ~10 min on 2 shared cores

Writes ``benchmarks/results/robust_skip_prob.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress import scores
from compress.robust import removal_scores, robust_finetune
from models.checkpoint import load_model
from models.lhq_svc.data import load_corpus
from models.lhq_svc.pipeline import SVCPipeline

RESULTS = Path(__file__).resolve().parent / "results"
SCORES = ("speaker_similarity", "stoi")


def _load(path: str) -> tuple[SVCPipeline, Any]:
    model, header = load_model(path)
    if not isinstance(model, SVCPipeline):
        raise SystemExit(f"{path}: holds a {type(model).__name__}, expected an LHQ-SVC pipeline")
    return model, header


def _evaluate(model: torch.nn.Module, eval_set: scores.EvalSet) -> dict[str, float]:
    return {name: float(scores.get_score(name)(model, eval_set)) for name in SCORES}


def _row(label: str, p: float | None, fit: dict[str, Any] | None,
         by_block: dict[str, dict[str, float]]) -> dict[str, Any]:
    full = by_block.pop("full")
    drops = {b: {s: full[s] - v[s] for s in SCORES} for b, v in by_block.items()}
    return {
        "label": label,
        "skip_prob": p,
        "finetune": None if fit is None else {k: v for k, v in fit.items() if k != "losses"},
        "full": full,
        "without": by_block,
        "drops": drops,
        "mean_drop": {s: float(np.mean([d[s] for d in drops.values()])) for s in SCORES},
        "max_drop": {s: float(np.max([d[s] for d in drops.values()])) for s in SCORES},
    }


def _cost(row: dict[str, Any]) -> float:
    """Removal cost: mean over blocks of (Δ speaker similarity + Δ STOI) / 2."""
    return float(np.mean([row["mean_drop"][s] for s in SCORES]))


def choose(rows: list[dict[str, Any]], sim_tol: float, stoi_tol: float) -> tuple[float, str]:
    """The chosen p and the reason, by the rule in the module docstring."""
    teacher = rows[0]["full"]
    tuned = [r for r in rows if r["skip_prob"] is not None]
    ok = [r for r in tuned
          if r["full"]["speaker_similarity"] >= teacher["speaker_similarity"] - sim_tol
          and r["full"]["stoi"] >= teacher["stoi"] - stoi_tol]
    if not ok:
        raise SystemExit("no p kept the teacher's full-model scores; lower the learning rate "
                         "or raise the tolerances")
    pick = min(ok, key=lambda r: (round(_cost(r), 4), r["skip_prob"]))
    others = ", ".join(f"p={r['skip_prob']}" for r in tuned if r not in ok) or "none"
    rest = "; ".join(f"p={r['skip_prob']}: {_cost(r):+.3f}" for r in ok if r is not pick)
    why = (
        f"p={pick['skip_prob']}: its full model keeps the teacher's quality (speaker similarity "
        f"{pick['full']['speaker_similarity']:.3f} vs the teacher's "
        f"{teacher['speaker_similarity']:.3f}, tolerance {sim_tol}; STOI "
        f"{pick['full']['stoi']:.3f} vs {teacher['stoi']:.3f}, tolerance {stoi_tol}) and among "
        f"the p that do, it has the cheapest single-block removals (removal cost "
        f"{_cost(pick):+.3f}: mean Δsim {pick['mean_drop']['speaker_similarity']:+.3f}, mean "
        f"ΔSTOI {pick['mean_drop']['stoi']:+.3f}; the others: {rest or 'none'}; the teacher "
        f"without fine-tuning: {_cost(rows[0]):+.3f}). Rejected for losing full-model "
        f"quality: {others}."
    )
    return float(pick["skip_prob"]), why


def _table(rows: list[dict[str, Any]]) -> list[str]:
    blocks = list(rows[0]["drops"])
    head = ["run", "sim full", "STOI full", "loss start→end"]
    head += [f"Δsim −{b}" for b in blocks] + [f"ΔSTOI −{b}" for b in blocks]
    head += ["mean Δsim", "mean ΔSTOI", "removal cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ft = r["finetune"]
        loss = "—" if ft is None else f"{ft['loss_start']:.3f}→{ft['loss_end']:.3f}"
        cells = [r["label"], f"{r['full']['speaker_similarity']:.3f}",
                 f"{r['full']['stoi']:.3f}", loss]
        cells += [f"{r['drops'][b]['speaker_similarity']:+.3f}" for b in blocks]
        cells += [f"{r['drops'][b]['stoi']:+.3f}" for b in blocks]
        cells += [f"{r['mean_drop']['speaker_similarity']:+.3f}",
                  f"{r['mean_drop']['stoi']:+.3f}", f"{_cost(r):+.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="/tmp/svc/demo_final/model.safetensors")
    ap.add_argument("--data", default="/tmp/corpus_demo")
    ap.add_argument("--probs", default="0.0,0.1,0.2,0.3")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-items", type=int, default=4)
    ap.add_argument("--eval-seconds", type=float, default=3.0)
    ap.add_argument("--eval-steps", type=int, default=8)
    ap.add_argument("--sim-tol", type=float, default=0.01)
    ap.add_argument("--stoi-tol", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    probs = [float(p) for p in args.probs.split(",")]

    teacher, header = _load(args.checkpoint)
    corpus = load_corpus(args.data, sample_rate=16000, hop_length=128)
    eval_set = scores.build_eval_set(args.data, teacher.speakers, max_items=args.eval_items,
                                     seconds=args.eval_seconds, steps=args.eval_steps)
    t_start = time.perf_counter()
    rows = [_row("teacher (no fine-tune)", None, None,
                 removal_scores(teacher, lambda m: _evaluate(m, eval_set)))]
    print(f"teacher: {rows[0]['full']}  mean drop {rows[0]['mean_drop']}", flush=True)
    for p in probs:
        model, _ = _load(args.checkpoint)
        fit = robust_finetune(model, corpus, steps=args.steps, skip_prob=p, lr=args.lr,
                              batch=args.batch, frames=args.frames, seed=args.seed)
        row = _row(f"p={p}", p, fit, removal_scores(model, lambda m: _evaluate(m, eval_set)))
        rows.append(row)
        print(f"p={p}: {row['full']}  mean drop {row['mean_drop']}  "
              f"({fit['seconds']:.0f} s fine-tune)", flush=True)
    chosen, why = choose(rows, args.sim_tol, args.stoi_tol)
    table = _table(rows)
    print("\n".join(table))
    print(f"chosen: {why}")

    cmd = "python benchmarks/robust_skip_prob.py " + " ".join(argv or sys.argv[1:])
    result = {
        "command": cmd.strip(),
        "checkpoint": args.checkpoint,
        "model": header.model,
        "architecture": teacher.architecture,
        "data": args.data,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "eval_items": [it.id for it in eval_set.items],
        "host": {"machine": platform.machine(), "python": platform.python_version(),
                 "torch": torch.__version__, "threads": torch.get_num_threads()},
        "seconds": time.perf_counter() - t_start,
        "rows": rows,
        "chosen_skip_prob": chosen,
        "reason": why,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robust_skip_prob.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Robust training: choosing the skip probability p",
        "",
        f"Command: `{result['command']}` ({result['seconds'] / 60:.1f} min, 1 torch thread, "
        f"{platform.machine()}).",
        "",
        f"Teacher `{header.model}` from `{args.checkpoint}`, architecture "
        f"{teacher.architecture}, corpus `{args.data}`. Each p: {args.steps} steps of "
        f"conditioner + decoder fine-tuning (AdamW lr {args.lr}, cosine to 10 %, batch "
        f"{args.batch} × {args.frames} frames, seed {args.seed}, same seed for every p), then "
        f"scores on {len(eval_set.items)} held-out conversions ({args.eval_seconds} s each, "
        f"DDIM {args.eval_steps} steps): speaker similarity (resemblyzer cosine to the target "
        "singer) and STOI against the target singer's ground truth. "
        "Δ = score(full) − score(without that block); smaller Δ = cheaper removal.",
        "",
        *table,
        "",
        "## Choice",
        "",
        f"Rule: among the p whose full-model speaker similarity is within {args.sim_tol} of the "
        f"teacher's and whose STOI is within {args.stoi_tol} of the teacher's, pick the one "
        "with the smallest removal cost = mean over single-block removals of (Δsim + ΔSTOI) / 2 "
        "(ties: the smaller p). Speaker similarity is the evolution's score; STOI is included "
        "because removals hurt intelligibility much more than speaker identity.",
        "",
        f"**Chosen p = {chosen}.** {why}",
        "",
        *([f"p = {chosen} is the largest p tried: a larger p may make removals cheaper still "
           "(at the price of a longer fine-tune to recover the full model)."]
          if chosen == max(probs) else []),
        "",
        f"Caveats: {len(eval_set.items)} eval items and one seed, so differences of about "
        "±0.01 in speaker similarity are within noise; the fine-tune is short (the budget "
        "the pipeline's robust stage can afford on 2 CPU cores).",
        "",
    ]
    (args.out / "robust_skip_prob.md").write_text("\n".join(md))
    print(f"wrote {args.out / 'robust_skip_prob.json'} and {args.out / 'robust_skip_prob.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
