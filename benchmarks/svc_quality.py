"""LHQ-SVC acceptance check: train (optional), then measure the issue's quality numbers.

Usage::

    python benchmarks/svc_quality.py --data /tmp/svc_corpus --checkpoint /tmp/svc/demo \
        [--train --model lhq-svc-demo] [--steps 50] [--items 12] [--seconds 8] \
        [--long-seconds 210] [--json out.json]

Measures (held-out songs of the corpus):

1. vocoder copy-synthesis STOI (ground-truth mel (+ DIO F0 for the HN vocoder) -> vocoder ->
   audio vs the original), next to Griffin-Lim from the same mel and from the linear STFT;
2. A -> B conversion with the multi-step teacher (DDIM, ``--steps``): fraction of clips whose
   output is closer (Resemblyzer cosine) to B's references than to A's; F0 raw chroma accuracy
   vs the source melody + shift; STOI vs B's ground-truth rendering;
3. A -> A reconstruction STOI;
   STOI is measured against B's *parallel* rendering (B's voice on A's performance) when the
   synthetic corpus has one (``models.data.corpus``), else against B's own rendering; the
   report says which (``reference_kind``) and also gives the **corpus ceiling**: STOI of each
   held-out source against its retake (the same performance and voice, another noise stream),
   the best a re-synthesis from frame-level features can expect, and the same retake passed
   through the checkpoint's vocoder (the reconstruction ceiling of the pipeline as trained);
4. ``compress convert`` on a ``--long-seconds`` input (held-out clips concatenated) in a child
   process: wall time and peak RSS (``ru_maxrss`` of the child).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "compress", *args]


@torch.no_grad()
def copy_synthesis(model, wav: np.ndarray, f0: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """`wav`'s log-mel (+ its DIO F0 `f0`, used by the HN vocoder only) through the vocoder."""
    mel = model.mel(torch.from_numpy(wav)[None])
    f0_t = torch.from_numpy(np.asarray(f0[: mel.shape[-1]], dtype=np.float32))[None]
    return model.vocode(mel, f0_t)[0, : wav.shape[0]].numpy()


def vocoder_copy_synthesis(model, corpus, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    from models import metrics

    vals = []
    n = int(seconds * corpus.sample_rate)
    for c in corpus.split("test"):
        wav = c.wav[:n]
        vals.append(metrics.stoi(wav, copy_synthesis(model, wav, c.f0), corpus.sample_rate))
    return {"stoi_mean": float(np.mean(vals)), "stoi_min": float(np.min(vals)), "clips": len(vals)}


def griffin_lim_reference(corpus, seconds: float, n_mels: int) -> dict:  # type: ignore[no-untyped-def]
    """STOI of Griffin-Lim (60 iterations) from the same log-mel's power mel spectrogram and
    from the full linear STFT magnitude (512 / 128, as the model's mel): what a classic
    inversion of the vocoder's input, and of the richer spectrogram, gets on these clips."""
    import librosa

    from models import metrics

    sr, n = corpus.sample_rate, int(seconds * corpus.sample_rate)
    out: dict[str, list[float]] = {"mel": [], "linear": []}
    kw = {"n_fft": 512, "hop_length": 128, "win_length": 512}
    for c in corpus.split("test"):
        wav = c.wav[:n]
        mag = np.abs(librosa.stft(wav, **kw))
        y = librosa.griffinlim(mag, n_iter=60, **kw)
        out["linear"].append(metrics.stoi(wav[: len(y)], y, sr))
        mel = librosa.feature.melspectrogram(S=mag**2, sr=sr, n_mels=n_mels, norm="slaney")
        y = librosa.feature.inverse.mel_to_audio(mel, sr=sr, n_iter=60, norm="slaney", **kw)
        out["mel"].append(metrics.stoi(wav[: len(y)], y, sr))
    return {f"stoi_{k}": float(np.mean(v)) for k, v in out.items()} | {"clips": len(out["mel"])}


def corpus_ceiling(corpus, seconds: float, model=None) -> dict | None:  # type: ignore[no-untyped-def]
    """STOI(source, retake) over the held-out clips that have a retake (module docstring).

    With `model`, also STOI(source, vocoder(mel(retake), DIO F0 of the retake)): what a decoder
    that generated a perfect retake's mel would score through this checkpoint's vocoder, i.e.
    the reconstruction (A -> A) ceiling of the pipeline as trained.
    """
    from models import metrics
    from models.audio import load_audio
    from models.data.features import dio_f0

    n = int(seconds * corpus.sample_rate)
    vals, voc = [], []
    for c in corpus.split("test"):
        ref = corpus.parallel_reference(c.id, c.singer)
        if ref is None or not ref.retake:
            continue
        retake, _ = load_audio(ref.path, sample_rate=corpus.sample_rate)
        m = min(n, len(retake), len(c.wav))
        vals.append(metrics.stoi(c.wav[:m], retake[:m], corpus.sample_rate))
        if model is not None:
            f0, _ = dio_f0(retake[:m], corpus.sample_rate, model.hop_length)
            y = copy_synthesis(model, retake[:m], f0)
            voc.append(metrics.stoi(c.wav[:m], y, corpus.sample_rate))
    if not vals:
        return None
    out = {"stoi_mean": float(np.mean(vals)), "stoi_min": float(np.min(vals)),
           "clips": len(vals)}
    if voc:
        out["retake_through_vocoder_stoi_mean"] = float(np.mean(voc))
    return out


def conversion(model, data: str, speakers: list[str], args, recon: bool) -> dict:  # type: ignore[no-untyped-def]
    from compress.scores import build_eval_set, evaluate

    es = build_eval_set(
        data,
        speakers,
        sample_rate=model.sample_rate,
        hop_length=model.hop_length,
        max_items=args.items,
        seconds=args.seconds,
        steps=args.steps,
        sampler="ddim",
        reconstruction=recon,
    )
    names = [
        "stoi",
        "chroma_accuracy",
        "neg_f0_rmse_cents",
        "speaker_similarity",
        "speaker_margin",
        "pesq",
        "neg_lsd",
        "neg_mcd",
    ]
    if recon:
        names = ["stoi", "chroma_accuracy", "pesq", "neg_lsd"]
    kinds = Counter(it.reference_kind for it in es.items)
    return {**evaluate(model, es, names), "reference_kind": dict(kinds)}


def long_convert(ckpt: str, corpus, seconds: float, speaker: str,
                 temperature: float) -> dict:  # type: ignore[no-untyped-def]
    from models.audio import write_wav

    clips = [c.wav for c in corpus.split("test")] or [c.wav for c in corpus.clips]
    total = int(seconds * corpus.sample_rate)
    wav = np.concatenate(clips * (total // sum(len(c) for c in clips) + 1))[:total]
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "long.wav", Path(d) / "out.wav"
        write_wav(inp, wav, corpus.sample_rate)
        t0 = time.time()
        proc = subprocess.run(
            _cli(
                "convert",
                "--checkpoint",
                ckpt,
                "--input",
                str(inp),
                "--speaker",
                speaker,
                "--output",
                str(out),
                "--steps",
                "50",
                "--temperature",
                str(temperature),
            ),
            capture_output=True,
            text=True,
        )
        elapsed = time.time() - t0
        rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        ok = proc.returncode == 0 and out.exists()
        import soundfile as sf

        n_out = sf.info(str(out)).frames if ok else 0
    return {
        "input_seconds": seconds,
        "returncode": proc.returncode,
        "seconds": elapsed,
        "peak_rss_mb": rss_kb / 1024,
        "output_samples": n_out,
        "input_samples": total,
        "stderr": proc.stderr.strip()[-300:],
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument("--checkpoint", required=True, help="checkpoint dir (written by --train)")
    p.add_argument("--train", action="store_true", help="run `compress train` first")
    p.add_argument("--model", default="lhq-svc-demo")
    p.add_argument("--steps", type=int, default=50, help="teacher DDIM steps")
    p.add_argument("--items", type=int, default=12)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--long-seconds", type=float, default=210.0)
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--temperature", type=float, default=None,
                   help="teacher sampling temperature (default: the checkpoint's)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    report: dict = {}
    if args.train:
        t0 = time.time()
        rc = subprocess.run(
            _cli(
                "train",
                "--model",
                args.model,
                "--data",
                args.data,
                "--out",
                args.checkpoint,
                "--resume",
                "--threads",
                str(args.threads),
            )
        )
        report["train"] = {"returncode": rc.returncode, "seconds": round(time.time() - t0, 1)}
        if rc.returncode:
            print(json.dumps(report, indent=2))
            return 1
    from models.checkpoint import load_model
    from models.lhq_svc.data import load_corpus

    model, header = load_model(args.checkpoint)
    if args.temperature is not None:
        from models.lhq_svc.pipeline import check_temperature

        model.temperature = check_temperature(args.temperature)
    report["temperature"] = model.temperature
    speakers = list(header.extra.get("speakers") or model.speakers)
    corpus = load_corpus(
        args.data, sample_rate=model.sample_rate, hop_length=model.hop_length, splits=("test",)
    )
    report["model"] = header.model
    report["history"] = header.history
    report["corpus_voice_noise"] = corpus.voice_noise
    report["corpus_ceiling"] = corpus_ceiling(corpus, args.seconds, model)
    print("corpus ceiling (source vs retake):", report["corpus_ceiling"], flush=True)
    report["vocoder_copy_synthesis"] = vocoder_copy_synthesis(model, corpus, args.seconds)
    print("vocoder:", report["vocoder_copy_synthesis"], flush=True)
    report["griffin_lim"] = griffin_lim_reference(corpus, args.seconds, model.n_mels)
    print("Griffin-Lim (same clips):", report["griffin_lim"], flush=True)
    report["conversion"] = conversion(model, args.data, speakers, args, recon=False)
    print("conversion A->B:", report["conversion"], flush=True)
    report["reconstruction"] = conversion(model, args.data, speakers, args, recon=True)
    print("reconstruction A->A:", report["reconstruction"], flush=True)
    if not args.skip_long:
        report["long_convert"] = long_convert(
            args.checkpoint, corpus, args.long_seconds, speakers[-1], model.temperature
        )
        print("long convert:", report["long_convert"], flush=True)
    conv, rec = report["conversion"], report["reconstruction"]
    report["acceptance"] = {
        "target_closer_fraction>=0.9": conv.get("target_closer_fraction", 0) >= 0.9,
        "chroma>=0.9": (conv.get("chroma_accuracy") or 0) >= 0.9,
        "stoi_vs_B>=0.7": (conv.get("stoi") or 0) >= 0.7,
        "reconstruction_stoi>=0.8": (rec.get("stoi") or 0) >= 0.8,
        "vocoder_stoi>=0.9": report["vocoder_copy_synthesis"]["stoi_mean"] >= 0.9,
    }
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
