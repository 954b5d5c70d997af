"""Training of an LHQ-SVC pipeline, component by component, with checkpoints and resume.

Order for ``component="all"``: ``content`` (built-in PPG encoder, cross-entropy on the corpus's
frame phoneme labels) -> ``vocoder`` (MelGAN, multi-resolution STFT + log-mel L1, optional
adversarial loss) -> ``decoder`` (conditioning + diffusion decoder, eq. 5 on normalised log-mel
with content from the trained encoder, DIO F0 as in §IV.B and the singer id).

With a pretrained content encoder (``train(content_model=PATH)``: a local HuBERT / ContentVec
checkpoint, :func:`models.lhq_svc.content.load_hubert`) the ``content`` step is skipped and the
encoder stays frozen (the paper uses ContentVec features as they are), so no phoneme labels
are needed: a folder of unlabelled wavs trains the rest. Its config and weights go into the
checkpoint, which then rebuilds without the original file. ``device`` (``"cpu"``,
``"cuda"``...) is where every step runs; checkpoints are always written from CPU copies.

Everything lands in ``out`` (a directory):

* ``model.safetensors`` — the pipeline checkpoint (``models.checkpoint``); its header's
  ``extra`` holds ``speakers``, ``phonemes``, ``progress`` (steps done per component),
  ``data`` and ``f0_stats`` (per-singer F0 medians, for ``--pitch auto``); ``history`` has
  one record per finished component;
* ``train_state.pt`` — optimizer state of the running component (tensors only);
* ``train_log.jsonl`` — one JSON line per logged step; ``loss.png`` — loss curves.

A checkpoint is written every ``ckpt_every`` steps and at the end of each component, so a
killed run continues from the last checkpoint (``resume=True``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from models import checkpoint, registry
from models.errors import CheckpointError, DataError
from models.fileio import atomic_path
from models.lhq_svc import diffusion
from models.lhq_svc.data import Clip, Corpus, load_corpus
from models.lhq_svc.mel import BandEnvelopeLoss
from models.lhq_svc.pipeline import SVCPipeline
from models.lhq_svc.pitch import singer_f0_stats
from models.lhq_svc.vocoder import (
    MultiScaleDiscriminator,
    discriminator_loss,
    generator_adv_loss,
    multi_resolution_stft_loss,
)

log = logging.getLogger(__name__)

COMPONENTS = ("content", "vocoder", "decoder")


@dataclass(frozen=True)
class TrainConfig:
    """Step budgets and batch shapes per component (defaults sized for ``lhq-svc-demo``)."""

    content_steps: int = 300
    vocoder_steps: int = 600
    decoder_steps: int = 2000
    batch: int = 8
    content_frames: int = 128
    vocoder_frames: int = 32
    decoder_frames: int = 128
    lr: float = 2e-3
    vocoder_lr: float = 1e-3
    decoder_lr: float = 1e-3
    vocoder_gan: bool = False
    vocoder_mel_weight: float = 0.5  # weight of the log-mel L1 next to the multi-resolution STFT
    prior_weight: float = 1.0  # weight of the mel prior's L1 next to eq. (5) (mel_prior_layers)
    # weight of the prior's band-envelope correlation loss (mel.BandEnvelopeLoss, STOI's core);
    # standalone prior, 2000 steps, 6 held-out clips: mu STOI 0.805 (0) -> 0.830 (0.3 and 1)
    # -> 0.807 (3, where its mel L1 0.17 -> 0.27 nats)
    prior_envelope_weight: float = 1.0
    gan_start: int = 500
    ckpt_every: int = 200
    log_every: int = 10
    seed: int = 0
    threads: int = 0

    def steps(self, component: str) -> int:
        return int(getattr(self, f"{component}_steps"))


PRESET_TRAINING: dict[str, TrainConfig] = {
    "lhq-svc-unittest": TrainConfig(content_steps=5, vocoder_steps=5, decoder_steps=5, batch=2,
                                    content_frames=32, vocoder_frames=8, decoder_frames=32,
                                    ckpt_every=1000, log_every=1),
    # vocoder budget and mel weight: copy-synthesis STOI (as in benchmarks/svc_quality.py) on
    # the held-out clips of a 4-singer corpus went 0.780 (600 steps, mel weight 0.5) -> 0.794
    # (1500, 0.5) -> 0.801 (1500, 3.0) -> 0.811 (3000, 0.5); on the default corpus (voice
    # noise 0.25) 0.851 (2000, 3.0) -> 0.867 (4000, 3.0) with the sum-of-sinusoids synthesis;
    # 0.916 (4000, 3.0) with the STFT synthesis on the 8-minute corpus. Decoder:
    # clip(snr,1,5) weighting (diffusion.py); its loss still falls at 3000 steps, and 5000
    # steps took the A -> A STOI of 8 held-out clips from 0.620 to 0.655 (sampled-mel L1
    # 0.32 -> 0.27). About 15 min on 2 threads here.
    "lhq-svc-demo": TrainConfig(vocoder_steps=4000, vocoder_mel_weight=3.0, decoder_steps=3500),
    "lhq-svc": TrainConfig(content_steps=5000, vocoder_steps=100000, decoder_steps=200000,
                           batch=16, vocoder_frames=64, vocoder_gan=True, gan_start=20000,
                           ckpt_every=1000, lr=1e-3, decoder_lr=1e-4),
}


def _segments(
    clips: list[Clip], n: int, frames: int, rng: np.random.Generator
) -> list[tuple[Clip, int]]:
    out = []
    weights = np.array([max(c.mel.shape[1] - frames, 1) for c in clips], dtype=np.float64)
    idx = rng.choice(len(clips), size=n, p=weights / weights.sum())
    for i in idx:
        c = clips[int(i)]
        start = int(rng.integers(0, max(c.mel.shape[1] - frames, 0) + 1))
        out.append((c, start))
    return out


def _crop(x: np.ndarray, start: int, length: int) -> np.ndarray:
    y = x[..., start : start + length]
    if y.shape[-1] < length:
        pad = [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])]
        y = np.pad(y, pad)
    return y


class DecoderBatches:
    """Decoder training batches (eq. 5) from `clips`: normalised log-mel targets and their
    conditioning.

    ``batches(rng) -> (x (B, 80, F), cond (B, D, F))``: `batch` random `frames`-long segments
    (clips weighted by length), ``x`` the normalised mel and ``cond`` the conditioner's output
    for the segment's content (from the model's content encoder, cached per clip), DIO F0 and
    singer id. ``cond`` is built with autograd through ``conditioner`` (default
    ``model.conditioner``). :meth:`inputs` gives the conditioner's inputs instead (to run the
    conditioner inside one DDP-wrapped module with the decoder). Only `rng` is consumed (the
    torch RNG is not touched), so equal `rng` states give equal batches.
    """

    def __init__(self, model: SVCPipeline, clips: list[Clip], batch: int, frames: int):
        if not clips:
            raise DataError("decoder batches: no clips to draw from")
        if batch < 1 or frames < 1:
            raise DataError(f"decoder batches: batch={batch}, frames={frames}; both must be >= 1")
        self.model = model
        self.clips = clips
        self.batch = int(batch)
        self.frames = int(frames)
        self._content_cache: dict[str, np.ndarray] = {}

    def clear(self) -> None:
        """Forget cached content features (after the content encoder changed)."""
        self._content_cache.clear()

    @torch.no_grad()
    def content_of(self, clip: Clip) -> np.ndarray:
        if clip.id not in self._content_cache:
            was = self.model.content.training
            self.model.content.eval()
            wav = torch.from_numpy(clip.wav).unsqueeze(0).to(self.model.device)
            feats = self.model.content(wav)[0]
            self.model.content.train(was)
            self._content_cache[clip.id] = feats[:, : clip.mel.shape[1]].cpu().numpy()
        return self._content_cache[clip.id]

    def inputs(
        self, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x (B, 80, F), content (B, C, F), f0_feats (B, K, F), speaker (B,))``: the target and
        the conditioner's inputs, for callers that run the conditioner themselves (on the
        model's device)."""
        m = self.model
        dev = m.device
        n = self.frames
        segs = _segments(self.clips, self.batch, n, rng)

        def stack(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(arrays)).to(dev)

        x = m.normalize_mel(stack([_crop(c.mel, s, n) for c, s in segs]))
        content = stack([_crop(self.content_of(c), s, n) for c, s in segs])
        f0 = stack([_crop(c.f0, s, n) for c, s in segs])
        voiced = stack([_crop(c.voiced.astype(np.float32), s, n) for c, s in segs])
        spk = torch.tensor([m.speaker_index(c.singer) for c, _ in segs], dtype=torch.long,
                           device=dev)
        return x, content, m.f0_features(f0, voiced), spk

    def __call__(
        self, rng: np.random.Generator, conditioner: Callable[..., torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, content, f0_feats, spk = self.inputs(rng)
        cond_fn = self.model.conditioner if conditioner is None else conditioner
        cond = cond_fn(content, f0_feats, spk)  # (B, D, F)
        return x, cond  # (B, 80, F), (B, D, F)


class Trainer:
    """Train `model` (an :class:`SVCPipeline` built from registry preset `model_name`) on
    `device` (None: where the model is)."""

    def __init__(
        self,
        model: SVCPipeline,
        model_name: str,
        corpus: Corpus,
        out: str | os.PathLike[str],
        cfg: TrainConfig,
        progress: dict[str, int] | None = None,
        history: list[dict[str, Any]] | None = None,
        show_progress: bool | None = None,
        device: str | torch.device | None = None,
        provenance: dict[str, Any] | None = None,
    ):
        if device is not None:
            model.to(device)
        self.device = model.device
        # extra header entries kept from run to run (e.g. where a pretrained encoder came from)
        self.provenance = dict(provenance or {})
        self.model = model
        self.model_name = model_name
        self.corpus = corpus
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.progress = dict(progress or {})
        self.history = list(history or [])
        self.show = sys.stderr.isatty() if show_progress is None else show_progress
        self.train_clips = corpus.split("train")
        if not self.train_clips:
            raise DataError(f"corpus {corpus.root}: no clips in the train split")
        self.batches = DecoderBatches(model, self.train_clips, cfg.batch, cfg.decoder_frames)
        # per-singer F0 medians of the training clips, for `compress convert --pitch auto`
        self.f0_stats = singer_f0_stats(self.train_clips, model.sample_rate, model.hop_length)

    # ---- bookkeeping ------------------------------------------------------------------------
    def extra(self) -> dict[str, Any]:
        return {"speakers": self.model.speakers, "phonemes": self.corpus.phonemes,
                "progress": self.progress, "data": str(self.corpus.root),
                "f0_stats": self.f0_stats}

    def save(self, optimizer: torch.optim.Optimizer | None, component: str) -> Path:
        p = checkpoint.save_checkpoint(
            self.out / checkpoint.DEFAULT_FILENAME, self.model, model_name=self.model_name,
            config=self.model.config, architecture=self.model.architecture,
            history=self.history, extra={**self.extra(), **self.provenance},
        )
        if optimizer is not None:
            with atomic_path(self.out / "train_state.pt") as tmp:
                torch.save({"component": component, "step": self.progress.get(component, 0),
                            "optimizer": optimizer.state_dict()}, tmp)
        self.plot()
        return p

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "train_log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        path = self.out / "train_log.jsonl"
        if not path.exists():
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        series: dict[str, list[tuple[int, float]]] = {}
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            series.setdefault(r["component"], []).append((r["step"], r["loss"]))
        fig, axes = plt.subplots(1, max(len(series), 1), figsize=(4 * max(len(series), 1), 3))
        axes = np.atleast_1d(axes)
        for ax, (name, pts) in zip(axes, series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts])
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.set_yscale("log")
        fig.tight_layout()
        with atomic_path(self.out / "loss.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)

    def _restore_optimizer(self, opt: torch.optim.Optimizer, component: str) -> None:
        p = self.out / "train_state.pt"
        if not p.exists():
            return
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            log.warning("ignoring unreadable %s (%s)", p, exc)
            return
        if state.get("component") == component and state.get("step") == self.progress.get(
            component, 0
        ):
            opt.load_state_dict(state["optimizer"])

    # ---- components -------------------------------------------------------------------------
    def run(self, components: list[str]) -> None:
        for comp in components:
            self.train_component(comp)

    def train_component(self, comp: str) -> None:
        if comp not in COMPONENTS:
            raise ValueError(f"component={comp!r}; valid: {COMPONENTS}")
        total = self.cfg.steps(comp)
        done = self.progress.get(comp, 0)
        if done >= total:
            log.info("%s: already trained (%d/%d steps)", comp, done, total)
            return
        if comp == "content" and self.model.content.kind != "builtin":
            log.info("content: pretrained %s encoder, nothing to train", self.model.content.kind)
            self.progress[comp] = total
            return
        step_fn, params, lr = self._setup(comp)
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.8, 0.99) if comp == "vocoder" else
                                (0.9, 0.999))
        self._restore_optimizer(opt, comp)
        from tqdm import tqdm

        bar = tqdm(total=total, initial=done, desc=f"train {comp}", disable=not self.show)
        t0 = time.time()
        self.model.train()
        if self.model.content.kind != "builtin":  # the pretrained encoder stays frozen
            self.model.content.eval()
        losses: list[float] = []
        for step in range(done, total):
            rng = np.random.default_rng([self.cfg.seed, COMPONENTS.index(comp), step])
            torch.manual_seed(self.cfg.seed * 100003 + step)
            frac = step / max(total, 1)
            for g in opt.param_groups:  # cosine decay to 10 %
                g["lr"] = float(lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac))))
            loss = step_fn(rng, opt, step)
            losses.append(loss)
            self.progress[comp] = step + 1
            bar.update(1)
            if (step + 1) % self.cfg.log_every == 0 or step + 1 == total:
                mean = float(np.mean(losses))
                losses = []
                bar.set_postfix(loss=f"{mean:.4f}")
                self._log({"component": comp, "step": step + 1, "loss": mean,
                           "seconds": round(time.time() - t0, 2)})
            if (step + 1) % self.cfg.ckpt_every == 0 and step + 1 < total:
                self.save(opt, comp)
        bar.close()
        self.model.eval()
        self.history.append({"event": "train", "component": comp, "steps": total,
                             "seconds": round(time.time() - t0, 1)})
        self.batches.clear()
        self.save(opt, comp)

    def _setup(self, comp: str) -> tuple[Callable[..., float], list, float]:
        m = self.model
        if comp == "content":
            clips = [c for c in self.train_clips if c.phonemes is not None]
            if not clips:
                raise DataError(
                    f"corpus {self.corpus.root}: no phoneme labels; the built-in content "
                    "encoder needs labels/*.npz, or give a pretrained HuBERT / ContentVec "
                    "encoder (compress train --content-model PATH)"
                )
            return (lambda rng, opt, step: self._content_step(clips, rng, opt),
                    list(m.content.parameters()), self.cfg.lr)
        if comp == "vocoder":
            self._disc = None
            if self.cfg.vocoder_gan:
                self._disc = MultiScaleDiscriminator().to(self.device)
                self._dopt = torch.optim.AdamW(self._disc.parameters(), lr=self.cfg.vocoder_lr,
                                               betas=(0.8, 0.99))
            return (lambda rng, opt, step: self._vocoder_step(rng, opt, step),
                    list(m.vocoder.parameters()), self.cfg.vocoder_lr)
        params = list(m.conditioner.parameters()) + list(m.decoder.parameters())
        return (lambda rng, opt, step: self._decoder_step(rng, opt),
                params, self.cfg.decoder_lr)

    def _content_step(self, clips: list[Clip], rng: np.random.Generator, opt) -> float:  # type: ignore[no-untyped-def]
        n = self.cfg.content_frames
        dev = self.device
        segs = _segments(clips, self.cfg.batch, n, rng)
        mel = torch.from_numpy(np.stack([_crop(c.mel, s, n) for c, s in segs])).to(dev)
        lab = torch.from_numpy(np.stack([_crop(c.phonemes, s, n) for c, s in segs])).to(dev)  # type: ignore[arg-type]
        # small random gain / tilt augmentation so posteriors ignore level and timbre
        gain = torch.from_numpy(rng.uniform(-1.0, 1.0, (len(segs), 1, 1)).astype(np.float32))
        tilt = torch.from_numpy(rng.uniform(-0.5, 0.5, (len(segs), 1, 1)).astype(np.float32))
        gain, tilt = gain.to(dev), tilt.to(dev)
        ramp = torch.linspace(-1, 1, mel.shape[1], device=dev).view(1, -1, 1)
        logits = self.model.content.logits_from_mel(mel + gain + tilt * ramp)
        loss = F.cross_entropy(logits, lab)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.content.parameters(), 5.0)
        opt.step()
        return float(loss.detach())

    def _vocoder_step(self, rng: np.random.Generator, opt, step: int) -> float:  # type: ignore[no-untyped-def]
        n = self.cfg.vocoder_frames
        hop = self.model.hop_length
        dev = self.device
        segs = _segments(self.train_clips, self.cfg.batch, n, rng)
        mel = torch.from_numpy(np.stack([_crop(c.mel, s, n) for c, s in segs])).to(dev)
        wav = torch.from_numpy(np.stack([_crop(c.wav, s * hop, n * hop) for c, s in segs]))
        wav = wav.to(dev)
        voc = self.model.vocoder
        f0 = torch.from_numpy(np.stack([_crop(c.f0, s, n) for c, s in segs])).to(dev)
        y = self.model.vocode(mel, f0)  # (B, n * hop)
        loss = multi_resolution_stft_loss(y, wav)
        mel_hat = self.model.mel(y)[:, :, :n]
        mel_loss = F.l1_loss(mel_hat, self.model.mel(wav)[:, :, :n])
        loss = loss + mel_loss * self.cfg.vocoder_mel_weight
        use_gan = self._disc is not None and step >= self.cfg.gan_start
        if use_gan:
            real = self._disc(wav)
            fake = self._disc(y)
            adv, fm = generator_adv_loss(real, fake)
            loss = loss + 0.1 * adv + 1.0 * fm
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(voc.parameters(), 10.0)
        opt.step()
        if use_gan:
            d_loss = discriminator_loss(self._disc(wav), self._disc(y.detach()))
            self._dopt.zero_grad()
            d_loss.backward()
            self._dopt.step()
        return float(loss.detach())

    def _content_of(self, clip: Clip) -> np.ndarray:
        return self.batches.content_of(clip)

    def decoder_batch(
        self, rng: np.random.Generator, conditioner: Callable[..., torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoder training batch ``(x (B, 80, F), cond (B, D, F))`` (see
        :class:`DecoderBatches`), drawn with `rng` from the train split."""
        return self.batches(rng, conditioner)

    @functools.cached_property
    def _envelope_loss(self) -> BandEnvelopeLoss:
        m = self.model
        return BandEnvelopeLoss(m.sample_rate, m.hop_length, m.n_mels).to(self.device)

    def _decoder_step(self, rng: np.random.Generator, opt) -> float:  # type: ignore[no-untyped-def]
        m = self.model
        x, cond = self.decoder_batch(rng)
        t = torch.rand(x.shape[0], device=x.device)
        noise = torch.randn_like(x)
        z = diffusion.q_sample(x, t, noise)
        out = m.decoder(z, t, cond)
        loss = diffusion.training_loss(out, z, x, noise, t, m.prediction, m.weighting)
        if m.decoder.mel_prior:  # μ regresses x̃ (L1), the decoder diffuses x̃ - μ
            mu = m.conditioner.prior_mean(cond)
            loss = loss + self.cfg.prior_weight * F.l1_loss(mu, x)
            if self.cfg.prior_envelope_weight > 0:  # + STOI's band-envelope correlation
                loss = loss + self.cfg.prior_envelope_weight * self._envelope_loss(
                    m.denormalize_mel(mu), m.denormalize_mel(x))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(m.conditioner.parameters())
                                       + list(m.decoder.parameters()), 1.0)
        opt.step()
        return float(loss.detach())


def train(
    model_name: str,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    components: list[str] | None = None,
    steps: int | None = None,
    resume: bool = False,
    cfg: TrainConfig | None = None,
    show_progress: bool | None = None,
    max_clips: int | None = None,
    content_model: str | os.PathLike[str] | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
    f0_method: str = "dio",
) -> Path:
    """Train preset `model_name` on the corpus at `data`; returns the checkpoint path.

    ``f0_method``: the F0 the model is conditioned on in training — ``dio`` (the paper's
    preprocessing, §IV.B) or CREPE ``crepe`` (tiny) / ``crepe-full``. It is recorded in the
    checkpoint (``extra.f0_method``) so that ``compress convert`` uses the same estimator by
    default; a resume must use the checkpoint's.

    ``steps`` overrides every selected component's step budget. With ``resume`` and an
    existing checkpoint in `out`, training continues where it stopped. ``content_model``: a
    local HuBERT / ContentVec checkpoint (transformers directory, fairseq ``.pt``,
    ``.safetensors``) used, frozen, as the content encoder instead of the preset's built-in
    one, which needs phoneme labels; ``allow_pickle`` lets a ``.pt`` unpickle its config
    (trusted files only). ``device``: where training runs.
    """
    spec = registry.get(model_name)
    if spec.component != "pipeline" or spec.family != "lhq-svc":
        raise DataError(
            f"compress train trains LHQ-SVC pipelines; {model_name!r} is a {spec.component}. "
            "Use --component to train one part of a pipeline preset (e.g. lhq-svc-demo)"
        )
    comps = list(components or COMPONENTS)
    bad = [c for c in comps if c not in COMPONENTS]
    if bad:
        raise DataError(f"unknown component(s) {bad}; valid: {list(COMPONENTS)} or 'all'")
    if cfg is None:
        if model_name in PRESET_TRAINING:
            cfg = PRESET_TRAINING[model_name]
        else:
            cfg = TrainConfig()
            log.warning(
                "no training budget for %r in PRESET_TRAINING (presets with one: %s); using "
                "the TrainConfig() defaults (%d content / %d vocoder / %d decoder steps, "
                "batch %d); pass cfg= (or steps=) to choose", model_name,
                ", ".join(sorted(PRESET_TRAINING)), cfg.content_steps, cfg.vocoder_steps,
                cfg.decoder_steps, cfg.batch,
            )
    if steps is not None:
        cfg = TrainConfig(**{**cfg.__dict__, **{f"{c}_steps": int(steps) for c in comps}})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    ckpt = out / checkpoint.DEFAULT_FILENAME
    progress: dict[str, int] = {}
    history: list[dict[str, Any]] = []
    if ckpt.exists() and not resume:
        raise CheckpointError(
            f"{ckpt} exists; pass --resume to continue it or choose another --out"
        )
    base = spec.config()
    resuming = resume and ckpt.exists()
    encoder = None
    provenance: dict[str, Any] = {}
    if content_model is not None and not resuming:  # a bad path fails before the corpus loads
        encoder, provenance = _pretrained_content(content_model, base, allow_pickle)
    if resuming:  # the estimator the checkpoint was trained with, checked before the corpus
        trained_with = checkpoint.read_header(ckpt).extra.get("f0_method", "dio")
        if trained_with != f0_method:
            raise CheckpointError(f"{ckpt} was trained on {trained_with} F0; resume it with "
                                  f"--f0 {trained_with} (not {f0_method})")
    corpus = load_corpus(data, sample_rate=base["sample_rate"], hop_length=base["hop_length"],
                         max_clips=max_clips, f0_method=f0_method)
    model: SVCPipeline
    if resuming:
        loaded, header = checkpoint.load_model(ckpt)
        model = cast(SVCPipeline, loaded)
        if header.model != model_name:
            raise CheckpointError(f"{ckpt} holds {header.model!r}, not {model_name!r}")
        if content_model is not None and model.content.kind == "builtin":
            raise CheckpointError(f"{ckpt} was trained with the built-in content encoder; "
                                  "--content-model cannot change it on --resume")
        progress = {k: int(v) for k, v in header.extra.get("progress", {}).items()}
        history = header.history
        if "content_model" in header.extra:
            provenance = {"content_model": header.extra["content_model"]}
        log.info("resuming %s at %s", ckpt, progress)
    else:
        build: dict[str, Any] = {"n_speakers": len(corpus.singers), "speakers": corpus.singers,
                                 "n_phonemes": max(len(corpus.phonemes), base["n_phonemes"])}
        if encoder is not None:
            build.update(content_kind="hubert", content_path=None, hubert=encoder.config)
        model = cast(SVCPipeline, spec.build(**build))
        if encoder is not None:
            model.content.load_state_dict(encoder.state_dict())
    if model.speakers != corpus.singers:
        raise DataError(f"checkpoint speakers {model.speakers} differ from the corpus's "
                        f"singers {corpus.singers}")
    provenance["f0_method"] = f0_method
    trainer = Trainer(model, model_name, corpus, out, cfg, progress, history, show_progress,
                      device=device, provenance=provenance)
    trainer.run(comps)
    return ckpt


def _pretrained_content(path: str | os.PathLike[str], base: dict[str, Any], allow_pickle: bool
                        ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The HuBERT / ContentVec encoder at `path` for a pipeline of build config `base`, and
    the checkpoint header entry that records where it came from."""
    from models.lhq_svc.content import load_hubert

    if base["sample_rate"] != 16000:
        raise DataError(f"a HuBERT / ContentVec content encoder runs at 16000 Hz; this preset "
                        f"runs at {base['sample_rate']} Hz")
    p = Path(path).expanduser()
    enc = load_hubert(p, hop_length=base["hop_length"], allow_pickle=allow_pickle)
    fmt = "transformers" if p.is_dir() else p.suffix.lstrip(".") or "torch"
    log.info("content encoder: %s (%s, %d layers, %d-d, frozen)", p, fmt,
             enc.config["layers"], enc.dim)
    return enc, {"content_model": {"source": str(p.resolve()), "format": fmt,
                                   "kind": "hubert", "output_layer": enc.output_layer}}
