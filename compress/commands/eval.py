"""`compress eval`: quality metrics of an LHQ-SVC checkpoint on a corpus's held-out songs."""

from __future__ import annotations

import argparse
import json

from models.fileio import atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    from compress.cli_util import add_command, add_device_argument

    p = add_command(
        sub,
        "eval",
        help="score a checkpoint on held-out songs (SVC: speaker similarity, STOI, PESQ, "
        "F0...; separator: SDR / SIR / SAR with museval, SI-SDR, SDRi; speech-to-singing: LSD, "
        "raw chroma accuracy, phoneme accuracy)",
        example="compress eval --checkpoint ckpt/demo --data corpus --json eval.json",
        run=run,
    )
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True,
                   help="checkpoint file or directory")
    p.add_argument("--data", required=True, help="corpus folder")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    p.add_argument("--steps", type=int, default=50, help="sampler steps")
    p.add_argument("--sampler", choices=["ddim", "ancestral"], default="ddim")
    p.add_argument("--max-items", type=int, default=None,
                   help="held-out clips to convert (default 8; speech-to-singing: 100 random "
                   "test samples with >= 1 s of speech, as its paper)")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds of each clip (default 6; a separator: whole songs)")
    p.add_argument("--scores", default=None, help="comma-separated score names (default all)")
    p.add_argument("--pitch-judge", choices=["full", "tiny"], default="full",
                   help="SVC: the CREPE model of the crepe_* scores (full: ~6 s per audio "
                   "second on 2 cores; tiny: ~0.3 s, the same chroma accuracy on sung clips)")
    p.add_argument("--temperature", type=float, default=None,
                   help="SVC: the sampler's temperature (default: the checkpoint's)")
    add_device_argument(p, "the conversions")


def _is_separator(header) -> bool:  # type: ignore[no-untyped-def]
    from models import registry

    return registry.get(header.model).family == "separation"  # load_model checked the name


def _eval_separator(args: argparse.Namespace, model, header,  # type: ignore[no-untyped-def]
                    device: str) -> int:
    """SDR / SIR / SAR (BSSEval v4, museval; 1 s windows, median over windows then over
    tracks, as CWS §3.2), SI-SDR and SDRi of a separator on the corpus's test songs."""
    from models.separation.infer import evaluate

    model.to(device).eval()
    res = evaluate(model, args.data, "test", max_seconds=args.seconds)
    for src in ("vocals", "accompaniment"):
        m = res["median"][src]
        print(f"{src}: " + ", ".join(f"{k}={m[k]:.2f}" for k in
                                     ("sdr", "sir", "sar", "si_sdr", "sdri", "ssa_si_sdr")
                                     if k in m))
    print(f"average (SDR, SIR, SAR of both sources): {res['average']:.2f} dB; "
          f"{len(res['tracks'])} test song(s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"checkpoint": str(args.checkpoint), "model": header.model, **res}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _eval_sts(args: argparse.Namespace, model, header,  # type: ignore[no-untyped-def]
              device: str) -> int:
    """LSD, raw chroma accuracy and phoneme accuracy of a speech-to-singing model on random
    samples (>= 1 s of speech) of the held-out test songs (Parekh et al. 2020, §3.1)."""
    import sys

    from compress.errors import CompressError
    from models.sts import StsError
    from models.sts.data import StsData
    from models.sts.evaluate import PAPER_ITEMS, evaluate_sts

    items = PAPER_ITEMS if args.max_items is None else args.max_items
    if items < 1:
        raise CompressError(f"--max-items {items}: expected a positive number of samples")
    tcfg = header.extra.get("train_config") or {}
    songs = header.extra.get("songs") or {}
    try:
        data = StsData(args.data, splits=("test",), min_units=int(tcfg.get("min_units", 3)),
                       versions=0, phonemes=header.extra.get("phonemes"),
                       test_songs=songs.get("test"), val_songs=songs.get("val"),
                       autoencoder=bool(model.cfg.autoencoder), progress=sys.stderr.isatty())
        res = evaluate_sts(model, data, "test", items=items, device=device,
                           progress=sys.stderr.isatty())
    except StsError as exc:
        raise CompressError(str(exc)) from None
    m, e = res["mean"], res["stderr"]
    acc = ("n/a (no phoneme decoder)" if res["phoneme_accuracy"] is None
           else "n/a (no labelled frames)" if m["phoneme_accuracy"] is None
           else f"{m['phoneme_accuracy']:.3f} ± {e['phoneme_accuracy']:.3f}")
    print(f"LSD: {m['lsd']:.2f} ± {e['lsd']:.2f} dB; RCA: {m['rca']:.3f} ± {e['rca']:.3f}; "
          f"phoneme accuracy: {acc}")
    print(f"{res['items']} test sample(s) of {res['eligible']} with >= 1 s of speech, songs "
          f"{', '.join(res['songs'])}")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"checkpoint": str(args.checkpoint), "model": header.model, **res}, indent=2))
        print(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace) -> int:
    from compress.cli_util import resolve_device
    from compress.errors import CompressError
    from compress.scores import build_eval_set, evaluate, get_score
    from models import registry
    from models.checkpoint import load_model

    device = resolve_device(args.device)
    model, header = load_model(args.checkpoint)
    if _is_separator(header):
        return _eval_separator(args, model, header, device)
    if registry.get(header.model).family == "sts":
        return _eval_sts(args, model, header, device)
    if not hasattr(model, "convert_long"):
        raise CompressError(f"checkpoint {args.checkpoint} holds {header.model!r}, which is not "
                            "an LHQ-SVC pipeline")
    model.to(device)
    names = None
    if args.scores:
        names = [s.strip() for s in args.scores.split(",") if s.strip()]
        for n in names:
            get_score(n)
    speakers = list(header.extra.get("speakers") or model.speakers)
    results = {}
    for label, recon in (("conversion", False), ("reconstruction", True)):
        es = build_eval_set(args.data, speakers, sample_rate=model.sample_rate,
                            hop_length=model.hop_length,
                            max_items=8 if args.max_items is None else args.max_items,
                            seconds=6.0 if args.seconds is None else args.seconds,
                            steps=args.steps, sampler=args.sampler,
                            reconstruction=recon)
        es.pitch_judge, es.pitch_stride, es.temperature = (args.pitch_judge, 1,
                                                           args.temperature)
        results[label] = evaluate(model, es, names)
    report = {"checkpoint": str(args.checkpoint), "model": header.model, "steps": args.steps,
              "sampler": args.sampler, "temperature": args.temperature,
              "pitch_judge": f"crepe-{args.pitch_judge}", **results}
    for label in ("conversion", "reconstruction"):
        r = results[label]
        line = ", ".join(f"{k}={v:.3f}" for k, v in r.items() if isinstance(v, float))
        print(f"{label}: {line}")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2))
    return 0
