"""The speech-to-singing recipe: an ``sts-*`` model (Parekh et al., ICASSP 2020) through
`compress run`.

What the family tells the pipeline (:class:`~compress.recipes.base.Recipe`):

* **data** — the synthetic corpus's NUS-48E layout (``corpus/nus48e/<singer>/{sing,read}/``) or
  a NUS-48E-layout folder (``data.path``). The splits are the ones the trainer uses
  (:class:`models.sts.data.StsData`): the corpus's held-out songs are ``test`` (the report),
  one other song is ``val`` (decisions; the teacher's early stopping reads it too, nothing
  trains on it), the rest ``train``.
* **the model the pipeline holds** is the device program itself,
  :class:`models.sts.program.StsDeviceProgram` (the network ``net`` inside, ``forward(x, c, h1,
  h2) -> (y, h1', h2')``): module paths are then the same for the search (``net.*``), the
  latency probes and the int8 groups. Training stages train ``net`` with its own loss.
* **units** — two widths (kind ``width``, component ``net``): ``net.width`` narrows every one of
  the six channel levels of both encoders and the decoder by ``evolve.narrow_factor``
  (:func:`models.sts.surgery.narrow_level`: keep-by-norm, every reader sliced), ``net.gru`` the
  hidden units of every GRU (:func:`models.sts.surgery.narrow_gru`). Two axes keep the latency
  table small: each axis costs ``latency.width_steps`` lowerings of the whole program, and a
  program with its GRUs unrolled lowers in tens of seconds. No removable unit: every
  encoder block halves an axis (removing one changes the latent's shape) and a GRU is the
  only path from the encoder to the decoder at the latent.
* **device program** — the network on a chunk of ``chunk_frames`` STFT frames (a multiple of 8,
  so the GRU states carry over; ``export.chunk_seconds`` rounded up), the phoneme decoder left
  out, Griffin-Lim outside (:mod:`models.sts.program` says why). int8 groups: each
  encoder's latent GRU and linear map, each decoder block and the output conv (the encoders'
  convolutions and latent norms stay fp32: :mod:`models.sts.program`, "int8").
* **robust / fine-tunes** — short training with the model's own loss (MSE + λ/T Σ CE,
  :func:`models.sts.net.mtl_loss`) on augmented training crops of the chunk length. No skip
  probability: no unit is removable.
* **distillation** — from the full model: half the loss against the true singing, half
  against the teacher's ``Ŷ`` (:data:`DISTILL_WEIGHT`), guarded by the val score as for the
  separators.
* **scores** (higher is better) — on held-out samples (§3.1: ≥ 1 s of speech), each cut to
  ``seconds`` and run chunk by chunk through the device program with its states carried, the
  way it ships: ``neg_lsd_db`` (minus the LSD of §3.1, dB, 100 Hz–3.5 kHz; cheap, the default
  decision score) and ``rca`` (raw chroma accuracy of the Griffin-Lim rendering's pYIN
  contour against the melody given, §3.1; about a second per item).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compress.errors import CompressError
from compress.recipes.base import (
    Action,
    DataSplits,
    Inputs,
    ItemScoredRecipe,
    Say,
    Unit,
    guarded_distill,
    synthetic_corpus,
)

log = logging.getLogger(__name__)

HEADER_ATTR = "_checkpoint_header"
SCORES = ("neg_lsd_db", "rca")
WIDTH_UNIT = "net.width"
GRU_UNIT = "net.gru"
#: distillation: weight of the loss against the teacher's Ŷ (the rest: the true singing)
DISTILL_WEIGHT = 0.5
#: Griffin-Lim iterations for the RCA score (the paper's 100 for the report's rendering)
SCORE_GL_ITERS = 32


def _program(model: nn.Module) -> Any:
    from models.sts.program import StsDeviceProgram

    if not isinstance(model, StsDeviceProgram):
        raise CompressError(f"the speech-to-singing recipe holds an StsDeviceProgram, got "
                            f"{type(model).__name__}")
    return model


def _net(model: nn.Module) -> Any:
    return _program(model).net


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


def chunk_frames(chunk_seconds: float) -> int:
    """STFT frames of a chunk of `chunk_seconds` (``(frames - 1) · hop`` samples, as the
    registry's presets count), rounded up to a multiple of 8: the network pads its input to
    one, and a chunk without padding hands the next a GRU state that followed real frames."""
    from models.sts.net import FACTOR
    from models.sts.preprocess import HOP, SAMPLE_RATE

    if not chunk_seconds > 0:
        raise CompressError(f"export.chunk_seconds={chunk_seconds}; must be > 0")
    frames = int(round(chunk_seconds * SAMPLE_RATE / HOP)) + 1
    return -(-frames // FACTOR) * FACTOR


def run_chunks(program: Any, x: np.ndarray, c: np.ndarray, frames: int) -> np.ndarray:
    """``Ŷ (F, T)`` of `program` (an :class:`StsDeviceProgram` or a callable with its
    signature) on a whole ``(F, T)`` sample: chunks of `frames`, the last zero-padded, the
    GRU states carried from chunk to chunk (zeros first), outputs concatenated."""
    from models.sts.program import StsDeviceProgram

    f, t = x.shape
    n = -(-t // frames)
    xp = np.zeros((f, n * frames), np.float32)
    cp = np.zeros((f, n * frames), np.float32)
    xp[:, :t], cp[:, :t] = x, c
    if isinstance(program, StsDeviceProgram):
        state = list(program.initial_state())
        call = program
    else:
        state = list(getattr(program, "sts_state", ()))
        call = program
    outs = []
    with torch.no_grad():
        for i in range(n):
            sl = slice(i * frames, (i + 1) * frames)
            res = call(torch.from_numpy(np.ascontiguousarray(xp[None, :, sl])),
                       torch.from_numpy(np.ascontiguousarray(cp[None, :, sl])), *state)
            res = list(res) if isinstance(res, list | tuple) else [res]
            outs.append(torch.as_tensor(res[0]).detach().float().reshape(f, frames).numpy())
            if len(res) > 1:
                state = [torch.as_tensor(s).detach().contiguous() for s in res[1:]]
    return np.concatenate(outs, axis=1)[:, :t]


class StsRecipe(ItemScoredRecipe):
    family = "sts"
    scores = SCORES
    family_label = "speech-to-singing"
    default_score = "neg_lsd_db"

    def __init__(self) -> None:
        self.cfg: Any = None
        self._data: dict[str, Any] = {}

    def configure(self, cfg: Any) -> None:
        self.cfg = cfg

    def decision_scores(self) -> list[str]:
        return list(SCORES)

    def score_names(self) -> list[str]:
        return list(SCORES)

    # ---- data ---------------------------------------------------------------------------
    @staticmethod
    def _corpus_root(path: Path) -> Path:
        from models.sts.data import StsDataError, corpus_root

        try:
            return Path(corpus_root(path))
        except StsDataError as exc:
            raise CompressError(str(exc)) from None

    def sts_data(self, root: str) -> Any:
        """The :class:`StsData` of `root` (built once: pYIN of the sung files, cached)."""
        from models.sts.data import StsData, StsDataError

        if root not in self._data:
            try:
                self._data[root] = StsData(root)
            except StsDataError as exc:
                raise CompressError(str(exc)) from None
        return self._data[root]

    def load_data(self, cfg: Any, out: Path, say: Say) -> DataSplits:
        self.configure(cfg)
        dc = cfg.data
        if dc.source == "synthetic":
            root = synthetic_corpus(cfg, out, say)
        else:
            root = Path(str(dc.path)).expanduser()
        root = self._corpus_root(root)
        say(f"data: speech / singing pairs of {root} (pYIN of the sung files, cached)")
        data = self.sts_data(str(root))
        songs = data.songs
        return DataSplits(str(root), tuple(songs["train"]), tuple(songs["val"]),
                          tuple(songs["test"]), "song",
                          {"layout": "nus48e", "samples": {k: len(data.split(k))
                                                           for k in ("train", "val", "test")}})

    # ---- teacher ------------------------------------------------------------------------
    def _build(self, name: str, root: str) -> Any:
        from models import registry
        from models.sts.data import phoneme_list

        spec = registry.get(name)
        over = {}
        if spec.defaults.get("phonemes"):
            over["phonemes"] = len(phoneme_list(root))  # the corpus's dictionary
        return spec.build(**over)

    def train_teacher(self, cfg: Any, data: DataSplits, out: Path, say: Say) -> Path:
        from models.sts import StsError
        from models.sts.train import PRESET_TRAINING, StsTrainConfig, train_sts

        name = cfg.model.name
        tc = cfg.train
        steps = max(1, tc.steps)
        base = PRESET_TRAINING.get(name, StsTrainConfig())
        tcfg = replace(base, steps=steps, batch=tc.batch_size, lr=tc.lr, seed=tc.seed,
                       val_every=min(base.val_every, steps),
                       ckpt_every=min(base.ckpt_every, steps),
                       epoch_steps=min(base.epoch_steps, steps))
        net = self._build(name, data.root)
        say(f"teacher: training {name} for up to {steps} steps (batch {tcfg.batch} x "
            f"{tcfg.frames} frames, lr {tcfg.lr}, validation every {tcfg.val_every} steps by "
            f"{tcfg.select_by}) on {self.device}")
        try:
            return train_sts(net, name, data.root, out, tcfg, resume=True, device=self.device,
                             show_progress=False)
        except StsError as exc:
            raise CompressError(str(exc)) from None

    def load(self, path: str | Path) -> nn.Module:
        from models import registry
        from models.checkpoint import load_into, load_state
        from models.sts.program import StsDeviceProgram

        header, state = load_state(path)
        spec = registry.get(header.model)
        if spec.family != self.family:
            raise CompressError(f"{path}: a {spec.family} checkpoint ({header.model}), not "
                                "speech-to-singing")
        cfg = {k: v for k, v in header.config.items() if k in spec.defaults}
        try:
            net = spec.factory(**cfg)
        except (TypeError, ValueError) as exc:
            raise CompressError(f"{path}: cannot rebuild {header.model!r} from its config "
                                f"{cfg}: {exc}") from exc
        load_into(net, state, source=str(path))
        prog = StsDeviceProgram(net).eval()
        object.__setattr__(prog, HEADER_ATTR, header)
        return prog

    def save(self, model: nn.Module, path: Path, event: dict[str, Any]) -> Path:
        from models.checkpoint import save_checkpoint

        header = getattr(model, HEADER_ATTR, None)
        if header is None and self.cfg is None:
            raise CompressError("save: the model has no checkpoint header and the recipe no "
                                "run config to name it")
        name = header.model if header is not None else self.cfg.model.name
        history = [*(header.history if header is not None else []), event]
        extra = dict(header.extra) if header is not None else {}
        return save_checkpoint(path, _net(model), model_name=name,
                               config=dict(_net(model).config), history=history, extra=extra)

    def check_teacher(self, model: nn.Module, path: Path) -> None:
        try:
            _program(model)
        except CompressError as exc:
            raise CompressError(f"{path}: {exc}") from None

    # ---- architecture -------------------------------------------------------------------
    def units(self, model: nn.Module) -> list[Unit]:
        from models.sts.surgery import MIN_WIDTH

        cfg = _net(model).cfg
        chans = list(cfg.channels)
        return [
            Unit(WIDTH_UNIT, "width", "net", 0,
                 ("narrow",) if max(chans) > MIN_WIDTH else (), sum(chans), None),
            Unit(GRU_UNIT, "width", "net", 1,
                 ("narrow",) if cfg.gru_hidden > MIN_WIDTH else (), int(cfg.gru_hidden), None),
        ]

    def apply(self, model: nn.Module, action: Action) -> None:
        from models.sts import StsError
        from models.sts.surgery import MIN_WIDTH, narrow_gru, narrow_level
        from models.units import narrowed_width

        if action.kind != "narrow":
            raise CompressError(f"speech-to-singing units can only be narrowed, not "
                                f"{action.kind!r}")
        net = _net(model)
        try:
            if action.unit == WIDTH_UNIT:
                chans = list(net.cfg.channels)
                if max(chans) <= MIN_WIDTH:
                    raise CompressError(f"{WIDTH_UNIT}: every level is at the minimum width "
                                        f"{MIN_WIDTH}")
                for level, w in enumerate(chans):
                    if w > MIN_WIDTH:
                        narrow_level(net, level, narrowed_width(w, action.factor, 1, MIN_WIDTH))
            elif action.unit == GRU_UNIT:
                h = int(net.cfg.gru_hidden)
                narrow_gru(net, narrowed_width(h, action.factor, 1, MIN_WIDTH))
            else:
                raise CompressError(f"unit {action.unit!r}; the speech-to-singing units are "
                                    f"{WIDTH_UNIT!r} and {GRU_UNIT!r}")
        except (StsError, ValueError) as exc:
            if isinstance(exc, CompressError):
                raise
            raise CompressError(f"unit {action.unit!r}: {exc}") from None

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        cfg = _net(model).cfg
        return {"arch": "sts", "channels": list(cfg.channels), "gru_hidden": cfg.gru_hidden,
                "kernel": cfg.kernel, "use_melody": cfg.use_melody, "skips": cfg.skips,
                "norm": cfg.norm, "phonemes": cfg.phonemes}

    def components(self, model: nn.Module) -> dict[str, str]:
        return {"net": "net"}

    # ---- training -----------------------------------------------------------------------
    def _train(self, model: nn.Module, data: DataSplits, steps: int, lr: float, seed: int,
               teacher: nn.Module | None = None) -> dict[str, Any]:
        """`steps` Adam steps of the network's MTL loss on augmented training crops of the
        chunk length; with `teacher`, ``(1 - w) · L(true singing) + w · MSE(Ŷ, teacher's Ŷ)``,
        w = :data:`DISTILL_WEIGHT`. The model ends in eval mode."""
        from models.sts.net import mtl_loss

        if steps <= 0:
            return {"steps": 0}
        net = _net(model)
        sd = self.sts_data(data.root)
        cfg = self.cfg
        frames = chunk_frames(cfg.export.chunk_seconds) if cfg else 64
        batch = cfg.train.batch_size if cfg else 4
        rng = np.random.default_rng(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        losses = []
        lam = float(net.cfg.lam)
        tnet = _net(teacher).eval() if teacher is not None else None
        net.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(steps):
                x, c, y, lab = sd.batch(rng, batch, frames, "train", augment=True)
                out = net(x, c)
                y_hat, logits = out if isinstance(out, tuple) else (out, None)
                loss, _ = mtl_loss(y_hat, y, logits, lab, lam)
                if tnet is not None:
                    with torch.no_grad():
                        y_t = _first(tnet(x, c))
                    kd = torch.mean((y_hat - y_t) ** 2)
                    loss = (1.0 - DISTILL_WEIGHT) * loss + DISTILL_WEIGHT * kd
                if not torch.isfinite(loss):
                    raise CompressError(f"speech-to-singing fine-tune: loss {float(loss)}; "
                                        f"lower lr ({lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        net.eval()
        what = "MSE + lambda/T sum CE (eq. 1) on training crops"
        if teacher is not None:
            what += (f", {1 - DISTILL_WEIGHT:g} x against the singing + {DISTILL_WEIGHT:g} x "
                     "MSE against the teacher's output")
        return {"steps": steps, "loss_start": losses[0], "loss_end": losses[-1], "loss": what}

    def robust(self, model: nn.Module, data: DataSplits, cfg: Any, seed: int
               ) -> dict[str, Any]:
        rc = cfg.robust
        rec = self._train(model, data, rc.steps, rc.lr, seed)
        rec["skip_prob"] = "not applied: no unit of this family is removable; plain training"
        return rec

    def finetune(self, model: nn.Module, teacher: nn.Module, action: Action,
                 data: DataSplits, steps: int, seed: int) -> dict[str, Any]:
        lr = self.cfg.robust.lr if self.cfg else 3e-4
        return self._train(model, data, steps, lr, seed)

    def finetune_scope(self, model: nn.Module, action: Action
                       ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        return (("net",), ("net",))

    def distill(self, model: nn.Module, data: DataSplits, cfg: Any, out: Path, say: Say,
                teacher: nn.Module | None = None) -> dict[str, Any]:
        """Distil the evolved student from the full model (module docstring)."""
        if teacher is None:
            return {"skipped": "no teacher given"}
        dc, ec = cfg.distill, cfg.evolve
        score = None
        if dc.guard:
            score = self.scorer(model, data, "val", items=ec.val_clips, seconds=ec.val_seconds,
                                chunk_seconds=cfg.export.chunk_seconds, score=ec.score)
        say(f"distill: {dc.steps_per_stage} steps from the full model (lr {dc.lr})")

        def train() -> dict[str, Any]:
            rec = self._train(model, data, dc.steps_per_stage, dc.lr, cfg.seed + 5101, teacher)
            rec["teacher"] = "the full model (robust stage)"
            return rec

        return guarded_distill(model, score, train, ec.score, say)

    # ---- what ships ---------------------------------------------------------------------
    def device_program(self, model: nn.Module) -> nn.Module:
        return _program(model).eval()

    def example_inputs(self, model: nn.Module, data: DataSplits, split: str, n: int,
                       chunk_seconds: float, offset: int = 0) -> list[Inputs]:
        """`n` real chunks ``(x, c, *zero states)`` of `split`'s samples (speech version 0)."""
        frames = chunk_frames(chunk_seconds)
        sd = self.sts_data(data.root)
        pool = sd.split(split)
        if not pool:
            raise CompressError(f"{data.root}: no {split} sample")
        prog = _program(model)
        out: list[Inputs] = []
        for i in range(n):
            s = pool[(offset + i * 7) % len(pool)]
            x, c, _, _ = sd.arrays(s, 0)
            t = x.shape[1]
            start = 0 if t <= frames else ((i // len(pool)) * frames) % (t - frames + 1)
            xs = np.zeros((x.shape[0], frames), np.float32)
            cs = np.zeros_like(xs)
            m = min(frames, t - start)
            xs[:, :m], cs[:, :m] = x[:, start:start + m], c[:, start:start + m]
            out.append((torch.from_numpy(xs)[None], torch.from_numpy(cs)[None],
                        *prog.initial_state()))
        return out

    def inputs_for(self, model: nn.Module, inputs: Inputs) -> Inputs:
        """``(x, c)`` kept, the latent GRU states replaced by `model`'s zero states (their
        width follows a narrowed GRU; :meth:`example_inputs` always gives zeros)."""
        return (*inputs[:2], *_program(model).initial_state())

    def int8_groups(self, model: nn.Module) -> list[str]:
        """Each encoder's latent GRU and its linear map, and the decoder's blocks and output
        conv: the encoders' convolutions and latent instance norms stay fp32
        (:attr:`StsDeviceProgram.export_keep_fp32`: the norm amplifies their int8 noise)."""
        net = _net(model)
        groups = [f"net.{e}.{part}" for e in ("encoder1", "encoder2")
                  if getattr(net, e) is not None for part in ("gru", "proj")]
        groups += [f"net.decoder.blocks.{i}" for i in range(len(net.decoder.blocks))]
        return [*groups, "net.decoder.out"]

    def export_metadata(self, model: nn.Module, cfg: Any) -> dict[str, Any]:
        frames = chunk_frames(cfg.export.chunk_seconds)
        return {**_program(model).export_metadata(), "chunk_frames": int(frames),
                "outputs_meaning": "y = log(1 + |STFT|) of the singing (513 bins, hop 256, "
                                   "16 kHz); render with Griffin-Lim (power 1.2)"}

    def audio_seconds(self, model: nn.Module, inputs: Inputs) -> float:
        from models.sts.preprocess import HOP, SAMPLE_RATE

        return float(inputs[0].shape[-1]) * HOP / SAMPLE_RATE

    # ---- scores -------------------------------------------------------------------------
    def _items(self, data: DataSplits, split: str, items: int, seconds: float
               ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """``(key, X, C, Y, f0)`` of up to `items` eligible samples of `split` (≥ 1 s of
        speech, §3.1), each cut to its first `seconds`, in a fixed seeded order."""
        from models.sts.evaluate import eligible_samples
        from models.sts.preprocess import HOP, SAMPLE_RATE

        if split == "train":
            raise CompressError("scores are never computed on the train split")
        sd = self.sts_data(data.root)
        pool = eligible_samples(sd, split)
        if not pool:
            raise CompressError(f"{data.root}: no {split} sample has >= 1 s of speech")
        order = np.random.default_rng(0).permutation(len(pool))[:items]
        limit = max(8, int(seconds * SAMPLE_RATE / HOP) + 1)
        out = []
        for i in sorted(order.tolist()):
            s = pool[i]
            x, c, y, _ = sd.arrays(s, 0)
            out.append((s.key, x[:, :limit], c[:, :limit], y[:, :limit], s.f0[:limit]))
        return out

    def _score_all(self, subject: Any, model: nn.Module, data: DataSplits, split: str,
                   items: int, seconds: float, chunk_seconds: float, names: tuple[str, ...],
                   first: int | None = None) -> dict[str, list[float]]:
        from models.sts.metrics import lsd_db, pyin_f0, raw_chroma_accuracy
        from models.sts.preprocess import HOP, SAMPLE_RATE
        from models.sts.synthesis import griffin_lim

        frames = chunk_frames(chunk_seconds)
        if isinstance(subject, nn.Module) and not hasattr(subject, "initial_state"):
            raise CompressError(f"score: a {type(subject).__name__} is not a device program")
        if isinstance(subject, nn.Module):
            subject.eval()
        else:  # a lowered program / quantized graph: the states start at zeros
            subject = _Stateful(subject, _program(model).initial_state())
        vals: dict[str, list[float]] = {k: [] for k in names}
        for _key, x, c, y, f0 in self._items(data, split, items, seconds)[:first]:
            pred = run_chunks(subject, x, c, frames)
            if "neg_lsd_db" in names:
                vals["neg_lsd_db"].append(-lsd_db(y, pred))
            if "rca" in names:
                wav = griffin_lim(pred, n_iter=SCORE_GL_ITERS)
                est_t, est_f0 = pyin_f0(wav)
                ref_t = np.arange(len(f0)) * HOP / SAMPLE_RATE
                vals["rca"].append(raw_chroma_accuracy(ref_t, f0, est_t, est_f0))
        return vals

    def _warm(self, model: nn.Module, data: DataSplits, split: str, items: int,
              seconds: float) -> None:
        self._items(data, split, items, seconds)

    def write_examples(self, out: Path, teacher: nn.Module, program: Any, student: nn.Module,
                       data: DataSplits, teacher_steps: int, chunk_seconds: float
                       ) -> list[dict[str, Any]]:
        """One test sample: the speech, and the teacher's and the program's singing
        (Griffin-Lim, 100 iterations, §2.4)."""
        from models.audio import write_wav
        from models.sts.preprocess import SAMPLE_RATE
        from models.sts.synthesis import griffin_lim

        frames = chunk_frames(chunk_seconds)
        sd = self.sts_data(data.root)
        rows = []
        for i, (key, x, c, _y, _f0) in enumerate(self._items(data, "test", 1, 6.0)):
            sample = next(s for s in sd.split("test") if s.key == key)
            rec: dict[str, Any] = {"name": key}
            prog = program if isinstance(program, nn.Module) else _Stateful(
                program, _program(student).initial_state())
            for role, wav in (
                    ("source", sd.speech(sample, 0)),
                    ("teacher", griffin_lim(run_chunks(_program(teacher), x, c, frames))),
                    ("student", griffin_lim(run_chunks(prog, x, c, frames)))):
                p = out / "audio" / f"{i}_{role}.wav"
                write_wav(p, np.asarray(wav, dtype=np.float32), SAMPLE_RATE)
                rec[role] = str(p)
            rows.append(rec)
        return rows


class _Stateful:
    """A program callable (``.pte`` runner, quantized graph) with the zero initial states
    :func:`run_chunks` feeds its first chunk."""

    def __init__(self, fn: Any, state: tuple[torch.Tensor, ...]):
        self.fn = fn
        self.sts_state = tuple(state)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)
