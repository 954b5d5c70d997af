"""`compress train`: train an LHQ-SVC pipeline (or one of its components) on a corpus."""

from __future__ import annotations

import argparse

from compress.cli_util import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "train",
        help="train an LHQ-SVC model (content encoder, vocoder, decoder) on a corpus",
        example="compress train --model lhq-svc-demo --data corpus --out ckpt/demo",
        run=run,
        description="Train a registered LHQ-SVC pipeline preset on a corpus folder (written by "
        "`compress data synth` or a dataset_raw/<singer>/*.wav tree). Writes "
        "OUT/model.safetensors (periodically), OUT/train_log.jsonl and OUT/loss.png; "
        "--resume continues a stopped run from its last checkpoint.",
    )
    p.add_argument("--model", required=True, help="registry name, e.g. lhq-svc-demo")
    p.add_argument("--data", required=True, help="corpus folder")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per selected component (default: the preset's budget)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--component", default="all",
                   choices=["all", "content", "vocoder", "decoder"],
                   help="which part to train (default: all, in that order)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")


def run(args: argparse.Namespace) -> int:
    import torch

    from compress.errors import CompressError
    from models.lhq_svc.train import COMPONENTS, train

    if args.steps is not None and args.steps < 1:
        raise CompressError(f"--steps {args.steps}: expected a positive number of steps")
    if args.threads:
        torch.set_num_threads(args.threads)
    comps = list(COMPONENTS) if args.component == "all" else [args.component]
    path = train(args.model, args.data, args.out, components=comps, steps=args.steps,
                 resume=args.resume)
    print(f"checkpoint: {path}")
    return 0
