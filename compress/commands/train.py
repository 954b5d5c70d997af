"""`compress train`: train an LHQ-SVC pipeline (or one of its components) on a corpus."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from compress.cli_util import add_command, add_device_argument, add_set_argument

if TYPE_CHECKING:
    from models.lhq_svc.train import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "train",
        help="train an LHQ-SVC model or a vocal separator on a corpus",
        example="compress train --model lhq-svc-demo --data corpus --out ckpt/demo\n"
        "  compress train --model lhq-svc-demo --data my_wavs --content-model hubert-base "
        "--out ckpt/mine\n"
        "  compress train --model cws-mdensenet-demo --data corpus/musdb --out ckpt/sep\n"
        "  compress train --model sts-demo --data corpus --out ckpt/sts",
        run=run,
        description="Train a registered LHQ-SVC pipeline preset on a corpus folder (written by "
        "`compress data synth`, a dataset_raw/<singer>/*.wav tree, or a plain folder of one "
        "singer's wavs). Writes OUT/model.safetensors (periodically), OUT/train_log.jsonl and "
        "OUT/loss.png; --resume continues a stopped run from its last checkpoint. The "
        "built-in content encoder learns from the corpus's phoneme labels; with "
        "--content-model a pretrained HuBERT / ContentVec encoder is used instead, frozen, "
        "and no labels are needed. Nothing is downloaded. A separator preset (cws-*, see "
        "`compress models`) trains on the MUSDB18-HQ layout "
        "(DATA/{train,test}/<song>/{mixture,vocals,accompaniment}.wav, any rate and channel "
        "count); its --set takes training keys (steps, batch, lr...) and model keys (k, "
        "width...). A speech-to-singing preset (sts-*) trains on the NUS-48E layout "
        "(DATA/nus48e/<singer>/{sing,read}/<song>.{wav,txt}, or that folder itself); its --set "
        "takes training keys (models.sts.train.StsTrainConfig) and model keys.",
    )
    p.add_argument("--model", required=True, help="registry name, e.g. lhq-svc-demo")
    p.add_argument("--data", required=True,
                   help="corpus folder (dataset_raw/<singer>/*.wav, <singer>/*.wav, or one "
                   "singer's wavs)")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per selected component (default: the preset's budget)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--component", default="all",
                   choices=["all", "content", "vocoder", "decoder"],
                   help="which part to train (default: all, in that order)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--f0", choices=["dio", "crepe", "crepe-full"], default="dio",
                   help="SVC: the F0 the model is conditioned on — DIO (the paper's), or CREPE "
                   "tiny (crepe: 0.27 s per audio second on one thread, 20x DIO's cost) / full "
                   "(5.9 s); recorded in the checkpoint, which convert then uses by default")
    p.add_argument("--content-model", default=None, metavar="PATH",
                   help="a LOCAL pretrained HuBERT / ContentVec content encoder: a transformers "
                   "save_pretrained directory (config.json + model.safetensors or "
                   "pytorch_model.bin), a fairseq / ContentVec .pt, or a .safetensors state "
                   "dict. It stays frozen; its config and weights go into the checkpoint")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let a --content-model .pt unpickle its config (fairseq checkpoints "
                   "need it). WARNING: unpickling runs code stored in the file; use it only "
                   "for files from a source you trust")
    add_device_argument(p, "training")
    add_set_argument(p, "--set decoder_steps=3000 --set batch=16 --set lr=1e-3 (keys of "
                     "models.lhq_svc.train.TrainConfig)")


def training_config(model: str, overrides: list[str]) -> TrainConfig | None:
    """The preset's training budget (models.lhq_svc.train.PRESET_TRAINING, or the TrainConfig
    defaults) with ``--set KEY=VALUE`` overrides; None when there are none."""
    if not overrides:
        return None
    from compress.config_io import apply_overrides, from_dict, to_dict
    from models.lhq_svc.train import PRESET_TRAINING, TrainConfig

    base = PRESET_TRAINING.get(model, TrainConfig())
    return from_dict(TrainConfig, apply_overrides(to_dict(base), overrides), source="--set")


def _training_values(args: argparse.Namespace, base: Any
                     ) -> tuple[dict[str, Any], list[str], set[str]]:
    """The training config of a one-network family as a dict: the preset's budget `base` (a
    dataclass) with the ``--set`` overrides naming its fields, ``--steps`` and ``--threads``
    applied; also the remaining ``--set`` overrides (the model's) and the field names."""
    import dataclasses

    from compress.config_io import apply_overrides

    fields = {f.name for f in dataclasses.fields(base)}
    train_over = [o for o in args.overrides if o.split("=", 1)[0].strip() in fields]
    model_over = [o for o in args.overrides if o not in train_over]
    values = apply_overrides(dataclasses.asdict(base), train_over)
    if args.steps is not None:
        values["steps"] = args.steps
    if args.threads:
        values["threads"] = args.threads
    return values, model_over, fields


def _train_separator(args: argparse.Namespace, device: str) -> int:
    """`compress train` for the separation family: the MUSDB layout under --data."""

    from compress.config_io import apply_overrides
    from compress.errors import CompressError
    from models import registry
    from models.separation.train import (
        PRESET_TRAINING,
        SeparationTrainConfig,
        train_separator,
    )

    for flag, value in (("--content-model", args.content_model),
                        ("--allow-pickle", args.allow_pickle)):
        if value:
            raise CompressError(f"{flag} is for LHQ-SVC models; {args.model} is a separator")
    if args.component != "all":
        raise CompressError(f"--component {args.component}: a separator trains as one network")
    spec = registry.get(args.model)
    values, model_over, fields = _training_values(
        args, PRESET_TRAINING.get(args.model, SeparationTrainConfig()))
    try:
        cfg = SeparationTrainConfig(**values)
        model_cfg = apply_overrides(dict(spec.defaults), model_over) if model_over else {}
        model = spec.build(**model_cfg)
    except (TypeError, ValueError) as exc:
        raise CompressError(f"--set: {exc} (keys: {', '.join(sorted(fields))}, or the "
                            f"model's: {', '.join(sorted(spec.defaults))})") from None
    path = train_separator(model, args.model, args.data, args.out, cfg=cfg, resume=args.resume,
                           device=device)
    print(f"checkpoint: {path}")
    return 0


def _train_sts(args: argparse.Namespace, device: str) -> int:
    """`compress train` for the speech-to-singing family: the NUS-48E layout under --data."""

    from compress.config_io import apply_overrides
    from compress.errors import CompressError
    from models import registry
    from models.sts import StsError
    from models.sts.data import phoneme_list
    from models.sts.train import PRESET_TRAINING, StsTrainConfig, train_sts

    for flag, value in (("--content-model", args.content_model),
                        ("--allow-pickle", args.allow_pickle)):
        if value:
            raise CompressError(f"{flag} is for LHQ-SVC models; {args.model} is "
                                "speech-to-singing")
    if args.component != "all":
        raise CompressError(f"--component {args.component}: a speech-to-singing model trains "
                            "as one network")
    spec = registry.get(args.model)
    values, model_over, fields = _training_values(
        args, PRESET_TRAINING.get(args.model, StsTrainConfig()))
    model_cfg = apply_overrides(dict(spec.defaults), model_over)
    if model_cfg.get("phonemes") and not any(o.split("=", 1)[0].strip() == "phonemes"
                                             for o in model_over):
        model_cfg["phonemes"] = len(phoneme_list(args.data))  # the corpus's dictionary
    try:
        cfg = StsTrainConfig(**values)
        model = spec.build(**model_cfg)
    except (TypeError, ValueError) as exc:
        raise CompressError(f"--set: {exc} (keys: {', '.join(sorted(fields))}, or the "
                            f"model's: {', '.join(sorted(spec.defaults))})") from None
    try:
        path = train_sts(model, args.model, args.data, args.out, cfg=cfg, resume=args.resume,
                         device=device)
    except StsError as exc:
        raise CompressError(str(exc)) from None
    print(f"checkpoint: {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from compress.cli_util import resolve_device
    from compress.errors import CompressError
    from models import registry
    from models.lhq_svc.train import COMPONENTS, train

    if args.steps is not None and args.steps < 1:
        raise CompressError(f"--steps {args.steps}: expected a positive number of steps")
    device = resolve_device(args.device)
    family = registry.get(args.model).family
    if family == "separation":
        return _train_separator(args, device)
    if family == "sts":
        return _train_sts(args, device)
    cfg = training_config(args.model, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    comps = list(COMPONENTS) if args.component == "all" else [args.component]
    path = train(args.model, args.data, args.out, components=comps, steps=args.steps,
                 resume=args.resume, cfg=cfg, content_model=args.content_model,
                 allow_pickle=args.allow_pickle, device=device, f0_method=args.f0)
    print(f"checkpoint: {path}")
    return 0
