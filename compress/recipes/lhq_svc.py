"""The LHQ-SVC recipe: teacher → LHQ-SVC_mobile through the generic `compress run`.

What the family tells the pipeline (:class:`~compress.recipes.base.Recipe`):

* **data** — the synthetic corpus (``models.data.corpus``, at least two held-out songs) or a
  folder; splits by song: the corpus's training songs train everything, its held-out songs
  are divided into ``val`` (decisions) and ``test`` (the report), so no decision or report
  is made on audio a training stage saw, and the references are the corpus's parallel
  renderings (target singer on the source's performance: aligned to the converted audio).
* **units** — of the whole on-device path (:meth:`SVCPipeline.units`): content-encoder
  layers and width, conditioner context and prior layers, decoder blocks and width, vocoder
  residual layers, width, harmonic count and Griffin-Lim iterations.
* **device program** — the pipeline at one DDIM step: ``(audio, speaker, shift) -> audio``.
* **fine-tunes** after an action, per component: the conditioner and decoder with the robust
  diffusion loss (LHQ-SVC eq. 1, blocks skipped with p), the content encoder and the vocoder
  by output distillation from the robust teacher's same component on training audio.
* **distillation** — progressive step distillation N → … → 1 (Salimans & Ho) from the start
  distribution the shipped sampler uses (its temperature).
* **scores** — :mod:`compress.scores` on conversion jobs A → B of held-out songs, per item so
  their noise is known; the decision score is ``combined`` by default (similarity,
  DNSMOS P.808 naturalness, intelligibility and CREPE pitch, weighted alike).
* **iso-quality teacher** — the teacher's fewest DDIM steps, at the best of a few sampler
  temperatures, that keep ``bench.iso_quality`` of its own score at ``bench.teacher_steps``
  (:meth:`LHQSVCRecipe.iso_quality_teacher`): the honest baseline of the speed-up.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CompressError
from compress.evolve import significant
from compress.recipes.base import (
    Action,
    DataSplits,
    Inputs,
    Recipe,
    Say,
    ScoreResult,
    Unit,
    synthetic_corpus,
)
from models.fileio import atomic_write_text

log = logging.getLogger(__name__)

COMPONENTS = {"f0": "f0", "content": "content", "conditioner": "conditioner",
              "decoder": "decoder", "vocoder": "vocoder"}
HEADER_ATTR = "_checkpoint_header"


class LHQSVCRecipe(Recipe):
    family = "lhq-svc"
    default_score = "combined"

    def __init__(self) -> None:
        self.cfg: Any = None
        self._corpora: dict[str, Any] = {}
        self._emb: dict[str, dict[str, np.ndarray]] = {}
        self._jobs: dict[tuple[Any, ...], Any] = {}

    def configure(self, cfg: Any) -> None:
        self.cfg = cfg

    # ---- data ---------------------------------------------------------------------------
    def corpus(self, root: str) -> Any:
        from models import registry
        from models.lhq_svc.data import load_corpus

        if root not in self._corpora:
            mc = registry.get(self.cfg.model.name).config() if self.cfg else {}
            self._corpora[root] = load_corpus(root, sample_rate=mc.get("sample_rate", 16000),
                                              hop_length=mc.get("hop_length", 128))
        return self._corpora[root]

    def load_data(self, cfg: Any, out: Path, say: Say) -> DataSplits:
        self.configure(cfg)
        dc = cfg.data
        if dc.source == "synthetic":
            root = synthetic_corpus(cfg, out, say)
        else:
            root = Path(str(dc.path)).expanduser()
            if not root.is_dir():
                raise CompressError(f"data.path {root} is not a directory")
        corpus = self.corpus(str(root.resolve()))
        train = sorted({c.song for c in corpus.split("train")})
        held = sorted({c.song for c in corpus.split("test")})
        if len(held) < 2:
            raise CompressError(
                f"corpus {root}: {len(held)} held-out song(s) ({held}); compress run needs at "
                "least two (one for decisions, one for the report) — give more minutes of "
                "audio or more held-out songs")
        k = (len(held) + 1) // 2
        return DataSplits(str(root.resolve()), tuple(train), tuple(held[:k]), tuple(held[k:]),
                          "song", {"clips": len(corpus.clips), "singers": corpus.singers})

    def _clips(self, data: DataSplits, split: str) -> list[Any]:
        corpus = self.corpus(data.root)
        songs = set(getattr(data, split))
        src = corpus.split("train") if split == "train" else corpus.split("test")
        clips = [c for c in src if c.song in songs]
        if not clips:
            raise CompressError(f"corpus {data.root}: no clip in the {split} split")
        return clips

    # ---- teacher ------------------------------------------------------------------------
    def train_teacher(self, cfg: Any, data: DataSplits, out: Path, say: Say) -> Path:
        from models.lhq_svc.train import PRESET_TRAINING, TrainConfig, train

        if cfg.model.name not in PRESET_TRAINING:
            log.warning("no training budget is registered for %s; using TrainConfig() "
                        "defaults", cfg.model.name)
        base = PRESET_TRAINING.get(cfg.model.name, TrainConfig())
        tc = cfg.train
        train_cfg = TrainConfig(**{
            **asdict(base), "decoder_steps": tc.steps,
            "content_steps": base.content_steps if tc.content_steps is None else tc.content_steps,
            "vocoder_steps": base.vocoder_steps if tc.vocoder_steps is None else tc.vocoder_steps,
            "batch": tc.batch_size, "decoder_lr": tc.lr, "seed": tc.seed,
        })
        content = cfg.model.content_model
        say(f"teacher: training {cfg.model.name} (content "
            f"{'frozen ' + str(content) if content else train_cfg.content_steps}, "
            f"vocoder {train_cfg.vocoder_steps}, decoder {train_cfg.decoder_steps} steps, "
            f"on {self.device})")
        train(cfg.model.name, data.root, out, cfg=train_cfg, resume=True, show_progress=False,
              content_model=content, allow_pickle=cfg.model.content_allow_pickle,
              device=self.device)
        return out / "model.safetensors"

    def load(self, path: str | Path) -> nn.Module:
        from models.checkpoint import load_model

        model, header = load_model(path)
        model.eval()
        object.__setattr__(model, HEADER_ATTR, header)
        return model

    def save(self, model: nn.Module, path: Path, event: dict[str, Any]) -> Path:
        from models.checkpoint import save_checkpoint

        header = getattr(model, HEADER_ATTR, None)
        name = header.model if header is not None else self.cfg.model.name
        history = [*(header.history if header is not None else []), event]
        extra = header.extra if header is not None else {}
        return save_checkpoint(path, model, model_name=name, config=model.config,
                               architecture=list(model.architecture), history=history,
                               extra=extra)

    def check_teacher(self, model: nn.Module, path: Path) -> None:
        if not hasattr(model, "units") or not hasattr(model, "convert_long"):
            raise CompressError(f"{path}: not an evolvable SVC pipeline")

    # ---- architecture -------------------------------------------------------------------
    def units(self, model: nn.Module) -> list[Unit]:
        return list(model.units())

    def apply(self, model: nn.Module, action: Action) -> None:
        model.apply_action(action.kind, action.unit, action.factor)

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        return dict(model.arch_summary())

    def components(self, model: nn.Module) -> dict[str, str]:
        return dict(COMPONENTS)

    # ---- training -----------------------------------------------------------------------
    def robust(self, model: nn.Module, data: DataSplits, cfg: Any, seed: int
               ) -> dict[str, Any]:
        from compress.robust import robust_finetune

        rc = cfg.robust
        model.to(self.device)
        try:
            return robust_finetune(model, self.corpus(data.root), steps=rc.steps,
                                   skip_prob=rc.skip_prob, lr=rc.lr, seed=seed)
        finally:
            model.to("cpu")  # the later stages (search, export) run on the CPU

    def finetune(self, model: nn.Module, teacher: nn.Module, action: Action,
                 data: DataSplits, steps: int, seed: int) -> dict[str, Any]:
        comp = action.unit.split(".")[0]
        if comp == "f0":  # a DSP estimator: no weights to train
            return {"steps": 0, "reason": "the F0 estimator has no trainable weights"}
        if comp in ("conditioner", "decoder"):
            from compress.robust import robust_finetune

            rc = self.cfg.robust
            return robust_finetune(model, self.corpus(data.root), steps=steps,
                                   skip_prob=rc.skip_prob, lr=rc.lr, seed=seed)
        if comp == "content":
            return self._distil_content(model, teacher, data, steps, seed)
        if comp == "vocoder":
            return self._distil_vocoder(model, teacher, data, steps, seed)
        raise CompressError(f"fine-tune: unit {action.unit!r} is in no component of "
                            f"{sorted(COMPONENTS)}")

    def finetune_scope(self, model: nn.Module, action: Action
                       ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """What :meth:`finetune` reads and writes: the content encoder is distilled from the
        teacher's on audio alone; the vocoder from the teacher's on the mel and the F0
        estimator's contour; conditioner and decoder train together on the content
        encoder's features (and the corpus's own F0 and mels); the F0 path trains nothing."""
        comp = action.unit.split(".")[0]
        return {"f0": ((), ()), "content": (("content",), ("content",)),
                "vocoder": (("f0", "vocoder"), ("vocoder",)),
                "conditioner": (("content", "conditioner", "decoder"),
                                ("conditioner", "decoder")),
                "decoder": (("content", "conditioner", "decoder"),
                            ("conditioner", "decoder"))}.get(comp)

    def _audio_batches(self, model: nn.Module, data: DataSplits, seed: int, batch: int = 4,
                       seconds: float = 1.0) -> Callable[[], torch.Tensor]:
        clips = self._clips(data, "train")
        n = int(seconds * model.sample_rate)
        clips = [c for c in clips if len(c.wav) > n]
        rng = np.random.default_rng(seed)

        def next_batch() -> torch.Tensor:
            out = []
            for _ in range(batch):
                c = clips[int(rng.integers(len(clips)))]
                s = int(rng.integers(len(c.wav) - n))
                out.append(np.asarray(c.wav[s : s + n], dtype=np.float32))
            return torch.from_numpy(np.stack(out))  # (B, T)

        return next_batch

    def _distil_content(self, model: nn.Module, teacher: nn.Module, data: DataSplits,
                        steps: int, seed: int) -> dict[str, Any]:
        from compress.distill import output_distill

        def kl(student_p: torch.Tensor, teacher_p: torch.Tensor) -> torch.Tensor:
            return F.kl_div(torch.log(student_p.clamp_min(1e-6)), teacher_p,
                            reduction="batchmean") / student_p.shape[-1]

        for p in model.content.parameters():
            p.requires_grad_(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, rec = output_distill(teacher.content, model.content,
                                    self._audio_batches(model, data, seed), steps, lr=3e-4,
                                    loss=kl)
        model.eval()
        return rec

    def _distil_vocoder(self, model: nn.Module, teacher: nn.Module, data: DataSplits,
                        steps: int, seed: int) -> dict[str, Any]:
        from compress.distill import LogMelL1, output_distill

        audio = self._audio_batches(model, data, seed, batch=2)

        hn = getattr(model, "vocoder_kind", "hn") == "hn"

        def next_batch() -> tuple[torch.Tensor, ...]:
            wav = audio()
            with torch.no_grad():
                mel = model.mel(wav)  # (B, M, F)
                if not hn:  # MelGAN (the paper-sized preset): mel -> audio
                    return (mel,)
                f0, voiced = model.f0(wav)  # (B, F)
            n = mel.shape[-1]
            return mel, f0[:, :n] * voiced[:, :n]  # harmonic-plus-noise: mel, F0 -> audio

        loss = LogMelL1(sample_rate=model.sample_rate, n_fft=512, hop=128)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _, rec = output_distill(teacher.vocoder, model.vocoder, next_batch, steps, lr=2e-4,
                                    loss=loss)
        model.eval()
        return rec

    # ---- what ships ---------------------------------------------------------------------
    def device_program(self, model: nn.Module) -> nn.Module:
        model.device_steps = 1  # the distilled student's sampler: one DDIM step
        return model.eval()

    def chunk_samples(self, model: nn.Module, chunk_seconds: float) -> int:
        hop = model.hop_length
        n = int(round(chunk_seconds * model.sample_rate / hop)) * hop
        limit = (model.noise.shape[-1] - 1) * hop
        if n > limit:
            raise CompressError(f"export.chunk_seconds={chunk_seconds} is longer than the "
                                f"model's noise buffer allows ({limit / model.sample_rate:.2f} s)")
        return n

    def example_inputs(self, model: nn.Module, data: DataSplits, split: str, n: int,
                       chunk_seconds: float, offset: int = 0) -> list[Inputs]:
        """`n` chunks ``(audio (1, T), speaker, shift)`` of `split`, converted to other
        singers of the corpus."""
        corpus = self.corpus(data.root)
        t = self.chunk_samples(model, chunk_seconds)
        clips = [c for c in self._clips(data, split) if len(c.wav) >= t]
        if not clips:
            raise CompressError(f"corpus {data.root}: no {split} clip is as long as one chunk "
                                f"({chunk_seconds} s)")
        out: list[Inputs] = []
        for i in range(n):
            c = clips[(offset + i * 7) % len(clips)]
            start = min(len(c.wav) - t, len(c.wav) // 3)
            wav = torch.from_numpy(np.ascontiguousarray(c.wav[start : start + t],
                                                        dtype=np.float32))
            spk = (corpus.singers.index(c.singer) + 1 + i) % len(corpus.singers)
            out.append((wav.unsqueeze(0), torch.tensor([spk], dtype=torch.long),
                        torch.tensor([0.0])))
        return out

    def int8_groups(self, model: nn.Module) -> list[str]:
        from compress.quantize import layer_groups

        return layer_groups(model, self.keep_fp32(model))

    def export_metadata(self, model: nn.Module, cfg: Any) -> dict[str, Any]:
        """What the app (and ``compress convert --model X.pte``) needs beside the audio fields:
        the singers' names in index order and their F0 medians (``--pitch auto``), as JSON."""
        from export.metadata import speaker_metadata

        header = getattr(model, HEADER_ATTR, None)
        stats = header.extra.get("f0_stats") if header is not None else None
        return {"device_steps": 1, "architecture": ",".join(model.architecture),
                "arch_summary": json.dumps(model.arch_summary(), sort_keys=True),
                **speaker_metadata(list(model.speakers), stats)}

    def extra_programs(self, model: nn.Module, inputs: Inputs, calibration: list[Inputs]
                       ) -> dict[str, tuple[nn.Module, Inputs, list[Inputs], str]]:
        """The decoder alone (Table I reports the decoder's size): one DDIM step's denoiser
        ``(z_t, t, cond) -> prediction`` on the real clips' conditioning."""
        return {"decoder": (model.decoder, _decoder_inputs(model, [inputs])[0],
                            _decoder_inputs(model, calibration), "decoder.")}

    # ---- scores -------------------------------------------------------------------------
    def _eval_items(self, model: nn.Module, data: DataSplits, split: str, items: int,
                    seconds: float, steps: int, temperature: float | None = None,
                    seed: int = 0) -> list[Any]:
        from compress.scores import DEFAULT_WEIGHTS, EvalSet, build_eval_set

        if split == "train":
            raise CompressError("scores are never computed on the train split")
        # the corpus's held-out jobs, read once per corpus and clip length (the bench stage
        # scores the teacher at several sampler settings on the same jobs)
        key = (data.root, tuple(model.speakers), int(model.sample_rate),
               int(model.hop_length), seconds)
        if key not in self._jobs:
            self._jobs[key] = build_eval_set(
                data.root, model.speakers, sample_rate=model.sample_rate,
                hop_length=model.hop_length, max_items=None, seconds=seconds, split="test",
                f0_method="dio")
        full = self._jobs[key]
        songs = set(getattr(data, split))
        corpus = self.corpus(data.root)
        song_of = {c.id: c.song for c in corpus.clips}
        by_song: dict[str, list[Any]] = {}
        for it in full.items:
            song = song_of.get(it.id.split("->")[0])
            if song in songs:
                by_song.setdefault(song, []).append(it)
        if not by_song:
            raise CompressError(f"no conversion job in the {split} split of {data.root}")
        # round robin over the split's songs: n items span min(n, songs) songs
        queues = [by_song[s] for s in sorted(by_song)]
        chosen = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        chosen = chosen[:items]
        emb = self._emb.setdefault(data.root, {})
        ec = self.cfg.evolve if self.cfg else None
        judges = {"weights": ec.weights() if ec else dict(DEFAULT_WEIGHTS),
                  "pitch_judge": ec.pitch_judge if ec else "tiny",
                  "naturalness_judge": ec.naturalness_judge if ec else "p808",
                  "pitch_stride": ec.pitch_stride if ec else 2}
        return [EvalSet(items=[it], sample_rate=full.sample_rate, hop_length=full.hop_length,
                        speaker_refs=full.speaker_refs, steps=steps, sampler=full.sampler,
                        seed=seed, f0_method=full.f0_method, temperature=temperature,
                        _emb=emb, **judges) for it in chosen]

    def _subject(self, subject: Any, model: nn.Module, tag: str, chunk_seconds: float) -> Any:
        if hasattr(subject, "convert_long"):
            return subject
        from compress.svc_adapter import ChunkedSVC

        return ChunkedSVC(subject, self.chunk_samples(model, chunk_seconds), model.speakers,
                          model.sample_rate, tag)

    def scorer(self, model: nn.Module, data: DataSplits, split: str, *, items: int,
               seconds: float, chunk_seconds: float, score: str, steps: int | None = None
               ) -> Callable[[Any, str], ScoreResult]:
        from compress.scores import fingerprint_pinned, get_score

        fn = get_score(score)
        n_steps = steps if steps is not None else self.decision_steps(model)
        sets = self._eval_items(model, data, split, items, seconds, n_steps)

        def run(subject: Any, tag: str, first: int | None = None) -> ScoreResult:
            s = self._subject(subject, model, tag, chunk_seconds)
            with fingerprint_pinned(s):
                return ScoreResult.from_items(score, [fn(s, es) for es in sets[:first]])

        return run

    def decision_steps(self, model: nn.Module) -> int:
        """Sampler steps an undistilled candidate is scored with: one (the shipped count) when
        the pipeline samples at temperature 0 — DDIM from the prior mean is then an ODE whose
        one-step and 50-step outputs score alike (README, LHQ-SVC probes: A → A STOI 0.808 vs
        0.803) — else the distillation teacher's step count."""
        if float(model.temperature) == 0.0:
            return 1
        return int(self.cfg.distill.teacher_steps) if self.cfg else 8

    def evaluate(self, subject: Any, tag: str, model: nn.Module, data: DataSplits, split: str,
                 *, items: int, seconds: float, chunk_seconds: float, teacher_steps: int | None,
                 temperature: float | None = None, names: list[str] | None = None,
                 seed: int = 0) -> dict[str, ScoreResult]:
        from compress.scores import fingerprint_pinned, get_score, score_names

        sets = self._eval_items(model, data, split, items, seconds, teacher_steps or 1,
                                temperature, seed)
        s = self._subject(subject, model, tag, chunk_seconds)
        out: dict[str, ScoreResult] = {}
        with fingerprint_pinned(s):
            for name in names or score_names():
                fn = get_score(name)
                vals = []
                for es in sets:
                    try:
                        vals.append(float(fn(s, es)))
                    except CompressError as exc:
                        log.warning("score %s on %s: %s", name, es.items[0].id, exc)
                if vals:
                    out[name] = ScoreResult.from_items(name, vals)
        return out

    def iso_quality_teacher(self, teacher: nn.Module, data: DataSplits, cfg: Any,
                            reference: ScoreResult, say: Say) -> dict[str, Any] | None:
        """The teacher's fewest DDIM steps (``bench.iso_steps``, fewest first, below
        ``bench.teacher_steps``), at the best of ``bench.iso_temperatures``, whose decision
        score on the test clips keeps ``bench.iso_quality`` of `reference` (the teacher's own
        score at ``teacher_steps``, its own temperature) — or loses no more than the paired
        noise of the items (a drop below the noise counts as none). None of them: the
        teacher's own setting. The LHQ-SVC paper's Table III compares its 1-step student with
        the teacher at 100 steps; this is the baseline such a table should use instead.

        Returns ``{steps, temperature, score, reference, kept_fraction, tried: [...]}``."""
        bc, name = cfg.bench, cfg.evolve.score
        if bc.iso_quality <= 0:
            return None
        if not (math.isfinite(reference.value) and reference.value > 0):
            say(f"bench: iso-quality teacher not searched: its {name} "
                f"{reference.value:.4f} is not positive (a fraction of it means nothing)")
            return None
        ev = {"items": bc.eval_clips, "seconds": bc.eval_seconds,
              "chunk_seconds": cfg.export.chunk_seconds}
        own_t = float(teacher.temperature)
        tried: list[dict[str, Any]] = []
        for steps in sorted({int(k) for k in bc.iso_steps if 0 < int(k) < bc.teacher_steps}):
            ok = []
            for temp in bc.iso_temperatures:
                r = self.evaluate(teacher, "teacher", teacher, data, "test", teacher_steps=steps,
                                  temperature=float(temp), names=[name], **ev)[name]
                noise = r.paired_noise(reference)
                kept = r.value / reference.value
                keeps = kept >= bc.iso_quality or reference.value - r.value <= noise
                row = {"steps": steps, "temperature": float(temp), "score": r.value,
                       "paired_noise": noise, "kept_fraction": kept, "keeps": bool(keeps)}
                tried.append(row)
                say(f"bench: teacher at {steps} step(s), temperature {temp:g}: {name} "
                    f"{r.value:.4f} = {100 * kept:.1f} % of {reference.value:.4f} "
                    f"(paired noise {noise:.4f}){' keeps it' if keeps else ''}")
                if keeps:
                    ok.append(row)
            if ok:
                best = max(ok, key=lambda row: row["score"])
                return {"steps": steps, "temperature": best["temperature"],
                        "score": best["score"], "reference": reference.value,
                        "kept_fraction": best["kept_fraction"], "tried": tried}
        say(f"bench: no setting of fewer than {bc.teacher_steps} steps keeps "
            f"{100 * bc.iso_quality:.0f} % of the teacher's {name}: the iso-quality teacher is "
            "the teacher's own setting")
        return {"steps": int(bc.teacher_steps), "temperature": own_t,
                "score": reference.value, "reference": reference.value, "kept_fraction": 1.0,
                "tried": tried}

    def write_examples(self, out: Path, teacher: nn.Module, program: Any, student: nn.Module,
                       data: DataSplits, teacher_steps: int, chunk_seconds: float
                       ) -> list[dict[str, Any]]:
        from compress.scores import converted
        from models.audio import write_wav

        sets = self._eval_items(teacher, data, "test", 2, 4.0, teacher_steps)
        s = self._subject(program, student, "examples", chunk_seconds)
        rows = []
        for i, es in enumerate(sets):
            it = es.items[0]
            rec = {"name": it.id}
            t_out = converted(teacher, es)[0]
            s_out = converted(s, es)[0]  # the program's sampler is baked in
            for role, wav in (("source", it.source), ("teacher", t_out), ("student", s_out)):
                p = out / "audio" / f"{i}_{role}.wav"
                write_wav(p, np.asarray(wav, dtype=np.float32), teacher.sample_rate)
                rec[role] = str(p)
            rows.append(rec)
        atomic_write_text(out / "audio.json", json.dumps(rows, indent=2))
        return rows

    # ---- distillation ---------------------------------------------------------------------
    def distill(self, model: nn.Module, data: DataSplits, cfg: Any, out: Path,
                say: Say, teacher: nn.Module | None = None) -> dict[str, Any]:
        # the sampler's own teacher: the student at more steps (progressive distillation)
        from compress.distill import distill_progressive

        dc = cfg.distill
        prediction = model.prediction if dc.prediction == "auto" else dc.prediction
        if prediction != model.prediction:
            raise CompressError(f"distill.prediction={dc.prediction!r} but the decoder is "
                                f"trained for {model.prediction!r}-prediction; use 'auto'")
        temperature = float(model.temperature)
        progress_path = out / "progress.json"
        done: list[dict[str, Any]] = []
        teacher = model.decoder
        steps = dc.teacher_steps
        if progress_path.exists():  # resume after the last finished halving
            done = json.loads(progress_path.read_text())["stages"]
            if done:
                last = done[-1]
                teacher = self.load(last["checkpoint"]).decoder
                steps = int(last["to_steps"])
                say(f"distill: resuming at {steps} steps")
        history = list(done)

        def on_stage(rec: dict[str, Any], student: nn.Module) -> None:
            model.decoder = student
            p = self.save(model, out / f"student_{rec['to_steps']}steps.safetensors",
                          {"event": "distill-stage", **rec})
            history.append({**rec, "checkpoint": str(p)})
            atomic_write_text(progress_path, json.dumps({"stages": history}, indent=2))
            say(f"distill: {rec['from_steps']} -> {rec['to_steps']} steps from temperature "
                f"{temperature} starts, loss {rec['loss_start']:.4g} -> {rec['loss_end']:.4g}")

        guard: dict[str, Any] = {}
        undistilled = model.decoder  # the evolved decoder; distillation trains a copy
        one_step = None
        if steps > 1 and dc.guard:
            one_step, s1, guard = self._distill_guard(model, data, cfg, steps, not done, say)
            if guard.get("skipped"):
                steps = 1
        if steps > 1:
            say(f"distill: {steps} -> 1 DDIM steps, {dc.steps_per_stage} steps per halving, "
                f"start distribution temperature {temperature} (the shipped sampler's)")
            batches = self._decoder_batches(model, data, cfg, cfg.seed + len(done), out)
            student, _ = distill_progressive(teacher, batches, steps, dc.steps_per_stage,
                                             lr=dc.lr, prediction=prediction,
                                             on_stage=on_stage, seed=cfg.seed + len(done),
                                             start_temperature=temperature)
        else:
            student = teacher
        model.decoder = student
        model.device_steps = 1
        if one_step is not None and not guard.get("skipped"):
            after = one_step(model, "distill:after")
            noise = s1.paired_noise(after)
            guard["distilled"] = after.to_json()
            if significant(after.value - s1.value, noise) < 0:
                model.decoder = undistilled
                guard["kept"] = "undistilled"
                guard["reason"] = (f"distillation lowered val {cfg.evolve.score} "
                                   f"{s1.value:.4f} -> {after.value:.4f} (paired noise "
                                   f"{noise:.4f}); the undistilled one-step student ships")
            else:
                guard["kept"] = "distilled"
                guard["reason"] = (f"distillation took val {cfg.evolve.score} {s1.value:.4f} "
                                   f"-> {after.value:.4f} (paired noise {noise:.4f})")
            say(f"distill: {guard['reason']}")
        return {"teacher_steps": dc.teacher_steps, "prediction": prediction,
                "start_temperature": temperature, "guard": guard,
                "history": [{k: v for k, v in h.items() if k != "checkpoint"}
                            for h in history]}

    def _distill_guard(self, model: nn.Module, data: DataSplits, cfg: Any, steps: int,
                       check_teacher: bool, say: Say
                       ) -> tuple[Callable[[Any, str], ScoreResult], ScoreResult, dict[str, Any]]:
        """Is there anything to distil? Scores, on the val split, the student as it would ship
        undistilled (one DDIM step) and — when `check_teacher` (not on a resume) — the
        distillation teacher (the same decoder at `steps` steps). Step distillation (Salimans
        & Ho; LHQ-SVC §III.B) makes one step imitate `steps`; when `steps` score no better
        than one beyond the paired noise, distilling can only pull the student towards the
        worse output, and the stage is skipped. At temperature 0 the sampler is an ODE from
        the prior mean, and a student fine-tuned during the search at one step can score
        better there (demo of 19736ef: val sim_stoi 0.776 at one step, 0.724 at eight, 0.736
        after distillation). Returns the one-step scorer, the one-step score and the record."""
        ec = cfg.evolve
        kw = {"items": ec.val_clips, "seconds": ec.val_seconds,
              "chunk_seconds": cfg.export.chunk_seconds, "score": ec.score}
        one = self.scorer(model, data, "val", steps=1, **kw)
        s1 = one(model, "distill:one-step")
        rec: dict[str, Any] = {"one_step": s1.to_json(), "teacher_steps": steps}
        if not check_teacher:
            return one, s1, rec
        sn = self.scorer(model, data, "val", steps=steps, **kw)(model, f"distill:{steps}-step")
        noise = s1.paired_noise(sn)
        rec.update(teacher=sn.to_json(), paired_noise=noise)
        if significant(sn.value - s1.value, noise) <= 0:
            rec.update(skipped=True, kept="undistilled", reason=(
                f"the {steps}-step distillation teacher scores val {ec.score} {sn.value:.4f} "
                f"against {s1.value:.4f} at one step (paired noise {noise:.4f}): nothing to "
                "distil; the one-step student ships undistilled"))
            say(f"distill: {rec['reason']}")
        return one, s1, rec

    def _decoder_batches(self, model: nn.Module, data: DataSplits, cfg: Any, seed: int,
                         out: Path) -> Callable[[], Any]:
        """Distillation batches ``(x0 (B, 80, F), cond (B, 256, F))`` from the train split."""
        from models.lhq_svc.train import PRESET_TRAINING, TrainConfig, Trainer

        base = PRESET_TRAINING.get(cfg.model.name, TrainConfig())
        tr = Trainer(model, cfg.model.name, self.corpus(data.root), out / "batches",
                     TrainConfig(**{**asdict(base), "batch": cfg.train.batch_size}),
                     show_progress=False)
        rng = np.random.default_rng(seed)

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                x, cond = tr.decoder_batch(rng)[:2]
            return x.detach(), cond.detach()

        return batch

    # ---- speed --------------------------------------------------------------------------
    def eager_ms(self, model: nn.Module, inputs: Inputs, steps: int | None, *, repeats: int,
                 threads: int) -> float:
        """Eager wall time of one chunk: ``steps`` DDIM steps through ``convert`` (the
        teacher's path), or the one-step device program (``steps`` None)."""
        audio, spk, shift = inputs
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                if steps is None:
                    prog = self.device_program(model)

                    def call() -> Any:
                        return prog(audio, spk, shift)
                else:
                    def call() -> Any:
                        return model.convert(audio[0], int(spk), float(shift), steps=steps,
                                             f0_method="torch")
                call()
                times = []
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - t0) * 1000.0)
        finally:
            torch.set_num_threads(old)
        return float(statistics.median(times))


@torch.no_grad()
def _decoder_inputs(model: nn.Module, clips: list[Inputs]) -> list[Inputs]:
    """``(z_1, t = 1, cond)`` the one-step decoder sees for each input clip."""
    out: list[Inputs] = []
    for audio, spk, shift in clips:
        cond, _ = model.features(audio, spk, shift)  # (1, D, F)
        z = model.device_latent(cond.shape[-1])  # (1, M, F)
        out.append((z, torch.ones(1), cond))
    return out
