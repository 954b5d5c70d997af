"""The separation recipe: a separator (``models.separation``: CWS, Vox-TasNet, Chimera)
through `compress run`.

What the family tells the pipeline (:class:`~compress.recipes.base.Recipe`):

* **data** — the synthetic corpus's MUSDB layout (``corpus/musdb/{train,test}/<song>__<singer>``)
  or a MUSDB-layout folder (``data.path``: the MUSDB root, or a corpus holding ``musdb/``);
  split by song: the ``train`` folder's songs train everything, the ``test`` folder's songs are
  divided into ``val`` (decisions) and ``test`` (the report).
* **units** — every layer of every dense block of MDenseNet / MMDenseNet
  (:func:`models.separation.nets.remove_dense_layer`: removal keeps the block's shapes; a block
  keeps one layer). Kind ``dense_<band>s<depth>``: layers at the same spectrogram size share a
  latency probe. And one width unit, ``net.width`` (kind ``width``), for every architecture:
  narrowing multiplies every block's width — a dense block's growth rate, a UNet conv block's
  channels — by ``evolve.narrow_factor`` (at least :data:`~models.separation.nets.MIN_WIDTH`),
  keeping each block's channels of largest filter norm and slicing every reader
  (:meth:`Separator.narrow`); one axis for the whole network, so the latency table measures the
  network at each narrowed width and every layer kind's cost at it. A UNet's only unit is that
  width (dropping a level is not shape-preserving).
* **device program** — the whole separator: ``(1, C, T)`` mixture chunk → ``(1, 2, C, T)``
  stems, filter banks and STFT / iSTFT inside as convolutions, kept fp32; only the mask network
  (``net``) may go int8, one group per dense block and per remaining conv stage.
* **robust / fine-tunes** — short training with the model's own loss (L1 + conservation on the
  subband spectra, eqs. 7–8) against the references of augmented training remixes. No skip
  probability: a skipped dense layer is not an identity, so robust training is plain training.
* **distillation** — from the full model (the robust-trained teacher evolution started from):
  ``distill.steps_per_stage`` steps at ``distill.lr`` of the student's loss half against the
  references and half against the teacher's stems on the same training remixes
  (:data:`DISTILL_WEIGHT`); with ``distill.guard`` the student is scored on val before and
  after, and the undistilled one is kept when distillation did not raise the score.
* **scores** — on held-out excerpts (non-overlapping ``seconds``-long pieces of the split's
  tracks with audible vocals, round robin over songs), separated chunk by chunk at the shipped
  chunk length: ``si_sdr`` (vocal SI-SDR, dB; the decision score: it needs no 512-tap BSSEval
  filters, so a candidate is scored in milliseconds instead of seconds), ``si_sdri`` (its
  improvement over the mixture) and ``sdr`` (museval BSSEval v4 vocal SDR, median over 1-s
  windows; the paper's metric, computed for the report). Each score is the mean over items
  (the items are kept so the pipeline knows its noise).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
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
from models.separation.separator import Separator

log = logging.getLogger(__name__)

HEADER_ATTR = "_checkpoint_header"
SCORES = ("si_sdr", "si_sdri", "sdr")
WIDTH_UNIT = "net.width"  # the width unit: every block's width (growth rate, channels)
#: distillation: weight of the loss against the teacher's stems (the rest: the references)
DISTILL_WEIGHT = 0.5
_SILENT = 1e-6  # mean square of the vocals below which an excerpt is not scored


def _song(track: str) -> str:
    """The song of a MUSDB-layout track: the synthetic corpus names tracks ``song__singer``."""
    return track.split("__")[0]


def _sep(model: nn.Module) -> nn.Module:
    """`model` if it is a separator the recipe knows (:data:`_ARCHS`), else CompressError."""
    _arch(model)
    return model


def _arch(model: nn.Module) -> _SeparatorArch:
    for cls, arch in _ARCHS:
        if isinstance(model, cls):
            return arch
    raise CompressError(f"the separation recipe knows {', '.join(c.__name__ for c, _ in _ARCHS)}"
                        f"; got {type(model).__name__}")


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, list | tuple) else out


class SeparationRecipe(ItemScoredRecipe):
    family = "separation"
    scores = SCORES
    family_label = "separation"
    default_score = "si_sdr"

    def __init__(self) -> None:
        self.cfg: Any = None
        self._tracks: dict[tuple[str, str, int, int], list[Any]] = {}
        self._data: dict[tuple[str, int, int], Any] = {}

    def configure(self, cfg: Any) -> None:
        self.cfg = cfg

    def decision_scores(self) -> list[str]:
        return list(SCORES)

    def score_names(self) -> list[str]:
        return list(SCORES)

    # ---- data ---------------------------------------------------------------------------
    @staticmethod
    def _musdb_root(root: Path) -> Path:
        if (root / "musdb" / "train").is_dir():
            return root / "musdb"
        return root

    def load_data(self, cfg: Any, out: Path, say: Say) -> DataSplits:
        self.configure(cfg)
        dc = cfg.data
        if dc.source == "synthetic":
            corpus = synthetic_corpus(cfg, out, say)
            root = corpus / "musdb"
        else:
            root = self._musdb_root(Path(str(dc.path)).expanduser())
        for sub in ("train", "test"):
            if not (root / sub).is_dir():
                raise CompressError(f"{root} is not a MUSDB-layout folder: no {sub}/ in it "
                                    "(expected train/ and test/ with one folder per track)")
        train = sorted({_song(p.name) for p in (root / "train").iterdir() if p.is_dir()})
        held = sorted({_song(p.name) for p in (root / "test").iterdir() if p.is_dir()} -
                      set(train))
        if len(held) < 2:
            raise CompressError(
                f"{root}: {len(held)} held-out song(s) in test/ ({held}); compress run needs at "
                "least two (one for decisions, one for the report)")
        k = (len(held) + 1) // 2
        return DataSplits(str(root.resolve()), tuple(train), tuple(held[:k]), tuple(held[k:]),
                          "song", {"layout": "musdb"})

    def _separation_data(self, root: str, sr: int, channels: int) -> Any:
        from models.separation.data import SeparationData

        key = (root, sr, channels)
        if key not in self._data:
            self._data[key] = SeparationData(root, sr, channels)
        return self._data[key]

    def _split_tracks(self, model: nn.Module, data: DataSplits, split: str) -> list[Any]:
        """Whole tracks of `split` at the model's rate and channels (cached)."""
        from models.separation.data import load_test_tracks

        sr, ch = int(_sep(model).sample_rate), int(_sep(model).channels)
        key = (data.root, split, sr, ch)
        if key not in self._tracks:
            songs = set(getattr(data, split))
            if split == "train":
                src = self._separation_data(data.root, sr, ch).tracks("train")
            else:
                src = load_test_tracks(data.root, sr, ch)
            tracks = [t for t in src if _song(t.name) in songs]
            if not tracks:
                raise CompressError(f"{data.root}: no track of the {split} split "
                                    f"(songs {sorted(songs)})")
            self._tracks[key] = sorted(tracks, key=lambda t: t.name)
        return self._tracks[key]

    # ---- teacher ------------------------------------------------------------------------
    def train_teacher(self, cfg: Any, data: DataSplits, out: Path, say: Say) -> Path:
        from models import registry
        from models.separation.train import (
            PRESET_TRAINING,
            SeparationTrainConfig,
            train_separator,
        )

        name = cfg.model.name
        tc = cfg.train
        steps = max(1, tc.steps)
        run = {"steps": steps, "batch": tc.batch_size, "lr": tc.lr, "seed": tc.seed}
        if name in PRESET_TRAINING:
            # the preset's schedule (chunk length, validation, early stopping), the run's
            # budget (train.steps, batch_size, lr, seed)
            base = PRESET_TRAINING[name]
            tcfg = replace(base, **run, val_every=min(base.val_every, steps),
                           ckpt_every=min(base.ckpt_every, steps))
        else:
            # no preset schedule: chunks of the shipped length, one validation (by loss, on
            # the training folder's own validation tracks) at the end
            base = SeparationTrainConfig()
            tcfg = replace(base, **run, chunk_seconds=cfg.export.chunk_seconds,
                           val_every=steps, ckpt_every=steps, select_by="loss",
                           val_sdr=False, val_seconds=4.0,
                           decay_every=max(base.decay_every, steps))
        model = registry.build(name)
        say(f"teacher: training {name} for up to {steps} steps (batch {tc.batch_size} x "
            f"{tcfg.chunk_seconds} s, lr {tc.lr}, validation every {tcfg.val_every} steps by "
            f"{tcfg.select_by}) on {self.device}")
        return train_separator(model, name, data.root, out, cfg=tcfg, resume=True,
                               show_progress=False, device=self.device)

    def load(self, path: str | Path) -> nn.Module:
        """A separator checkpoint. An evolved network's dense-layer counts and block widths
        are in its config (:attr:`Separator.config`); checkpoints of the first separation runs
        kept the counts in ``extra.dense_layers``, which is read when the config has none."""
        from models import registry
        from models.checkpoint import load_into, load_state

        header, state = load_state(path)
        spec = registry.get(header.model)
        cfg = spec.config(**{k: v for k, v in header.config.items() if k in spec.defaults})
        if cfg.get("layers") is None and header.extra.get("dense_layers") is not None:
            cfg["layers"] = header.extra["dense_layers"]
        try:
            model = spec.factory(**cfg)
        except (TypeError, ValueError) as exc:
            raise CompressError(f"{path}: cannot rebuild {header.model!r} with dense layers "
                                f"{cfg.get('layers')} and block widths "
                                f"{cfg.get('block_widths')}: "
                                f"{exc}") from exc
        load_into(model, state, source=str(path))
        model.eval()
        object.__setattr__(model, HEADER_ATTR, header)
        return model

    def save(self, model: nn.Module, path: Path, event: dict[str, Any]) -> Path:
        from models.checkpoint import save_checkpoint

        header = getattr(model, HEADER_ATTR, None)
        if header is None and self.cfg is None:
            raise CompressError("save: the model has no checkpoint header and the recipe no "
                                "run config to name it")
        name = header.model if header is not None else self.cfg.model.name
        history = [*(header.history if header is not None else []), event]
        extra = dict(header.extra) if header is not None else {}
        extra.pop("dense_layers", None)  # the config holds them (see load)
        return save_checkpoint(path, model, model_name=name, config=dict(_sep(model).config),
                               history=history, extra=extra)

    def check_teacher(self, model: nn.Module, path: Path) -> None:
        try:
            _arch(model)
        except CompressError as exc:
            raise CompressError(f"{path}: {exc}") from None

    # ---- architecture (per network: _ARCHS) ----------------------------------------------
    def units(self, model: nn.Module) -> list[Unit]:
        return _arch(model).units(model)

    def apply(self, model: nn.Module, action: Action) -> None:
        _arch(model).apply(model, action)

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        return _arch(model).architecture(model)

    def components(self, model: nn.Module) -> dict[str, str]:
        return _arch(model).components(model)

    # ---- training -----------------------------------------------------------------------
    def _train(self, model: nn.Module, data: DataSplits, steps: int, lr: float, seed: int,
               teacher: nn.Module | None = None) -> dict[str, Any]:
        """`steps` Adam steps of the model's own loss on augmented training
        remixes at the shipped chunk length; the model ends in eval mode. With `teacher`, the
        loss is ``(1 - w) · L(references) + w · L(teacher's stems)``, w =
        :data:`DISTILL_WEIGHT`."""
        if steps <= 0:
            return {"steps": 0}
        sep = _sep(model)
        sd = self._separation_data(data.root, sep.sample_rate, sep.channels)
        cfg = self.cfg
        chunk = int(round(cfg.export.chunk_seconds * model.sample_rate)) if cfg else 4000
        batch = cfg.train.batch_size if cfg else 4
        rng = np.random.default_rng(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        losses = []
        model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(steps):
                mix, voc, acc = (torch.from_numpy(a) for a in sd.sample(rng, batch, chunk))
                loss, _ = sep.loss(mix, voc, acc)
                if teacher is not None:
                    with torch.no_grad():
                        stems = teacher(mix)  # (B, 2, C, T)
                    kd, _ = sep.loss(mix, stems[:, 0].contiguous(), stems[:, 1].contiguous())
                    loss = (1.0 - DISTILL_WEIGHT) * loss + DISTILL_WEIGHT * kd
                if not torch.isfinite(loss):
                    raise CompressError(f"separator fine-tune: loss {float(loss)}; lower lr "
                                        f"({lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        model.eval()
        what = f"{_arch(model).loss} on training remixes"
        if teacher is not None:
            what += (f", {1 - DISTILL_WEIGHT:g} x against the references + {DISTILL_WEIGHT:g} x "
                     "against the teacher's stems")
        return {"steps": steps, "loss_start": losses[0], "loss_end": losses[-1], "loss": what}

    def robust(self, model: nn.Module, data: DataSplits, cfg: Any, seed: int
               ) -> dict[str, Any]:
        rc = cfg.robust
        rec = self._train(model, data, rc.steps, rc.lr, seed)
        rec["skip_prob"] = ("not applied: a skipped dense layer is not an identity; plain "
                            "training")
        return rec

    def finetune(self, model: nn.Module, teacher: nn.Module, action: Action,
                 data: DataSplits, steps: int, seed: int) -> dict[str, Any]:
        lr = self.cfg.robust.lr if self.cfg else 3e-4
        return self._train(model, data, steps, lr, seed)

    def finetune_scope(self, model: nn.Module, action: Action
                       ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        comps = tuple(self.components(model))
        return (comps, comps)

    def distill(self, model: nn.Module, data: DataSplits, cfg: Any, out: Path, say: Say,
                teacher: nn.Module | None = None) -> dict[str, Any]:
        """Distil the evolved student from the full model (module docstring)."""
        if teacher is None:
            return {"skipped": "no teacher given"}
        dc, ec = cfg.distill, cfg.evolve
        teacher.eval()
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
        return model.eval()

    def chunk_samples(self, model: nn.Module, chunk_seconds: float) -> int:
        sep = _sep(model)
        n = int(round(chunk_seconds * sep.sample_rate))
        if n < sep.min_samples:
            raise CompressError(f"export.chunk_seconds={chunk_seconds} gives {n} samples; "
                                f"{_arch(model).name} needs at least {sep.min_samples}")
        return n

    def example_inputs(self, model: nn.Module, data: DataSplits, split: str, n: int,
                       chunk_seconds: float, offset: int = 0) -> list[Inputs]:
        """`n` real mixture chunks ``(1, C, T)`` of `split`'s tracks."""
        t = self.chunk_samples(model, chunk_seconds)
        tracks = [tr for tr in self._split_tracks(model, data, split)
                  if tr.mixture.shape[-1] >= t]
        if not tracks:
            raise CompressError(f"{data.root}: no {split} track is as long as one chunk "
                                f"({chunk_seconds} s)")
        out: list[Inputs] = []
        for i in range(n):
            tr = tracks[(offset + i * 7) % len(tracks)]
            total = tr.mixture.shape[-1]
            start = min(total - t, (total // 3 + (i // len(tracks)) * t) % max(1, total - t + 1))
            x = np.ascontiguousarray(tr.mixture[:, start : start + t], dtype=np.float32)
            out.append((torch.from_numpy(x).unsqueeze(0),))
        return out

    def int8_groups(self, model: nn.Module) -> list[str]:
        return _arch(model).int8_groups(model)

    def export_metadata(self, model: nn.Module, cfg: Any) -> dict[str, Any]:
        return {**_arch(model).export_metadata(model),
                "outputs": "stems (1, 2, C, T): vocals, accompaniment"}

    # ---- scores -------------------------------------------------------------------------
    def _excerpts(self, model: nn.Module, data: DataSplits, split: str, items: int,
                  seconds: float) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """``(id, mixture, vocals, accompaniment)`` excerpts of `seconds`: consecutive pieces of
        each track of `split` whose vocals are audible, round robin over songs."""
        if split == "train":
            raise CompressError("scores are never computed on the train split")
        n = max(1, int(round(seconds * _sep(model).sample_rate)))
        by_song: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
        for tr in self._split_tracks(model, data, split):
            for s in range(0, tr.mixture.shape[-1] - n + 1, n):
                voc = tr.vocals[:, s : s + n]
                if float(np.mean(voc.astype(np.float64) ** 2)) < _SILENT:
                    continue
                by_song.setdefault(_song(tr.name), []).append(
                    (f"{tr.name}@{s}", tr.mixture[:, s : s + n], voc,
                     tr.accompaniment[:, s : s + n]))
        if not by_song:
            raise CompressError(f"no {seconds} s excerpt with audible vocals in the {split} "
                                f"split of {data.root}")
        queues = [by_song[k] for k in sorted(by_song)]
        chosen = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        return chosen[:items]

    @staticmethod
    @torch.no_grad()
    def _separate(subject: Any, mix: np.ndarray, chunk: int) -> np.ndarray:
        """``(C, T)`` → ``(2, C, T)`` with `subject` (a model or a program of fixed input
        length `chunk`), chunk by chunk without overlap, the last chunk zero-padded."""
        if isinstance(subject, nn.Module):
            subject.eval()
        c, total = mix.shape
        out = np.zeros((2, c, total), np.float32)
        for s in range(0, total, chunk):
            e = min(s + chunk, total)
            piece = np.zeros((1, c, chunk), np.float32)
            piece[0, :, : e - s] = mix[:, s:e]
            y = _first(subject(torch.from_numpy(piece)))  # (1, 2, C, chunk)
            out[:, :, s:e] = y[0, :, :, : e - s].detach().float().cpu().numpy()
        return out

    def _item_scores(self, est: np.ndarray, mix: np.ndarray, voc: np.ndarray,
                     acc: np.ndarray, names: tuple[str, ...], sr: int) -> dict[str, float]:
        from models.separation.metrics import separation_scores, si_sdr

        out: dict[str, float] = {}
        if "si_sdr" in names or "si_sdri" in names:
            v = si_sdr(voc, est[0])
            out["si_sdr"] = v
            out["si_sdri"] = v - si_sdr(voc, mix)
        if "sdr" in names:
            sc = separation_scores(np.stack([voc, acc]), est, None, sr)
            out["sdr"] = sc["vocals"]["sdr"]
        return {k: out[k] for k in names}

    def _score_all(self, subject: Any, model: nn.Module, data: DataSplits, split: str,
                   items: int, seconds: float, chunk_seconds: float, names: tuple[str, ...],
                   first: int | None = None) -> dict[str, list[float]]:
        chunk = self.chunk_samples(model, chunk_seconds)
        ex = self._excerpts(model, data, split, items, seconds)[:first]
        vals: dict[str, list[float]] = {k: [] for k in names}
        for _id, mix, voc, acc in ex:
            est = self._separate(subject, mix, chunk)
            for k, v in self._item_scores(est, mix, voc, acc, names,
                                          _sep(model).sample_rate).items():
                vals[k].append(float(v))
        return vals

    def _warm(self, model: nn.Module, data: DataSplits, split: str, items: int,
              seconds: float) -> None:
        self._excerpts(model, data, split, items, seconds)

    def write_examples(self, out: Path, teacher: nn.Module, program: Any, student: nn.Module,
                       data: DataSplits, teacher_steps: int, chunk_seconds: float
                       ) -> list[dict[str, Any]]:
        """One test excerpt: the mixture, and the vocals of the teacher and the program."""
        from models.audio import write_wav

        chunk = self.chunk_samples(student, chunk_seconds)
        rows = []
        for i, (name, mix, _voc, _acc) in enumerate(
                self._excerpts(teacher, data, "test", 1, 4.0)):
            rec: dict[str, Any] = {"name": name}
            for role, wav in (("source", mix),
                              ("teacher", self._separate(teacher, mix, chunk)[0]),
                              ("student", self._separate(program, mix, chunk)[0])):
                p = out / "audio" / f"{i}_{role}.wav"
                write_wav(p, np.asarray(wav, dtype=np.float32), _sep(teacher).sample_rate)
                rec[role] = str(p)
            rows.append(rec)
        return rows


# ---- what the recipe knows of each separator network -------------------------------------------
class _SeparatorArch(ABC):
    """The network-specific part of the recipe: units, actions, int8 groups, metadata.

    Every separator shares the rest: ``forward (B, C, T) -> (B, 2, C, T)`` stems, ``loss(mix,
    vocals, accompaniment)``, ``config`` (rebuilds an evolved network), ``sample_rate``,
    ``channels``, ``min_samples``.
    """

    name = ""
    #: what the model's loss is, for the training records
    loss = ""

    @abstractmethod
    def units(self, model: Any) -> list[Unit]: ...

    @abstractmethod
    def apply(self, model: Any, action: Action) -> None: ...

    @abstractmethod
    def architecture(self, model: Any) -> dict[str, Any]: ...

    @abstractmethod
    def components(self, model: Any) -> dict[str, str]: ...

    @abstractmethod
    def int8_groups(self, model: Any) -> list[str]: ...

    @abstractmethod
    def export_metadata(self, model: Any) -> dict[str, Any]: ...


class _CwsArch(_SeparatorArch):
    """A CWS separator (:class:`~models.separation.separator.Separator`): every layer of every
    dense block, and one width unit for the whole mask network (module docstring)."""

    name = "CWS separator"
    loss = "L1 + conservation (eqs. 7-8)"

    def units(self, model: Any) -> list[Unit]:
        from models.separation.nets import MIN_WIDTH

        out = []
        for path, block, tag in model.net.dense_blocks():
            n = len(block.layers)
            # the latency probe of every layer of a block is its last layer: removing any
            # layer leaves the structure of the block with one layer fewer (later layers lose
            # the removed one's input channels), so a removal saves what the last, widest-input
            # layer costs. Probing the first layer instead left that out, and the table
            # overestimated the demo run's student by 70 % (2026-12-06).
            last = f"net.{path}.layers.{n - 1}"
            for j in range(n):
                out.append(Unit(f"net.{path}.layers.{j}", f"dense_{tag}", "net", j,
                                ("remove",) if n > 1 else (), int(block.growth), last))
        widths = model.block_widths
        out.append(Unit(WIDTH_UNIT, "width", "net", 0,
                        ("narrow",) if max(widths) > MIN_WIDTH else (), sum(widths), None))
        return out

    def apply(self, model: Any, action: Action) -> None:
        from models.separation.nets import narrow_widths, remove_dense_layer

        if action.kind == "narrow":
            if action.unit != WIDTH_UNIT:
                raise CompressError(f"unit {action.unit!r} cannot be narrowed; the separator's "
                                    f"width unit is {WIDTH_UNIT!r}")
            model.narrow(narrow_widths(model.block_widths, action.factor))
            return
        if action.kind != "remove":
            raise CompressError(f"separation units support remove and narrow, not "
                                f"{action.kind!r}")
        head, sep, idx = action.unit.rpartition(".layers.")
        if not sep or not head.startswith("net.") or not idx.isdigit():
            raise CompressError(f"unit {action.unit!r} is not a dense layer "
                                "(net.<block>.layers.<i>)")
        blocks = {f"net.{p}": b for p, b, _ in model.net.dense_blocks()}
        if head not in blocks:
            raise CompressError(f"unit {action.unit!r}: no dense block {head!r}; blocks: "
                                f"{sorted(blocks)}")
        remove_dense_layer(blocks[head], int(idx))

    def architecture(self, model: Any) -> dict[str, Any]:
        return {"arch": model.arch, "k": model.k, "width": model.width,
                "sample_rate": model.sample_rate, "channels": model.channels,
                "net": list(model.dense_layers), "block_widths": list(model.block_widths)}

    def components(self, model: Any) -> dict[str, str]:
        return {"net": "net"}

    def int8_groups(self, model: Any) -> list[str]:
        """One group per dense block, and per other weighted stage of the network (stems,
        transitions, up-samplers, the mask conv; a UNet's conv blocks)."""
        from models.separation.nets import ConvBlock

        blocks = [f"net.{p}" for p, _, _ in model.net.dense_blocks()]
        groups = list(blocks)
        for name, mod in model.net.named_modules():
            full = f"net.{name}"
            if not name or any(full == b or full.startswith(b + ".") for b in blocks):
                continue
            if isinstance(mod, nn.Conv2d | nn.ConvTranspose2d):
                parent = full.rsplit(".", 1)[0]
                # a UNet's conv block (2 x conv, BN, ReLU) is one group; other convs alone
                grp = parent if isinstance(model.get_submodule(parent), ConvBlock) else full
                if grp not in groups:
                    groups.append(grp)
        return groups

    def export_metadata(self, model: Any) -> dict[str, Any]:
        return {"arch": model.arch, "k": model.k,
                "dense_layers": json.dumps(list(model.dense_layers)),
                "block_widths": json.dumps(list(model.block_widths))}


class _TasNetArch(_SeparatorArch):
    """Vox-TasNet (:class:`~models.separation.tasnet.VoxTasNet`): each of the TCN's X·R
    temporal blocks may be removed (a residual block: its input passes on, its skip no longer
    adds in; one block stays), and one width unit, ``tcn.width``, narrows every block's H
    (:meth:`~models.separation.tasnet.TCN.narrow`). Blocks differ only in dilation and padding,
    so one latency probe (the first block) serves them all. The encoder and decoder stay fp32
    (``VoxTasNet.export_int8_modules``); the int8 groups are the bottleneck, each block and the
    mask conv."""

    name = "Vox-TasNet"
    loss = "negative SI-SDR of the accompaniment"
    width_unit = "tcn.width"

    def units(self, model: Any) -> list[Unit]:
        from models.separation.nets import MIN_WIDTH

        blocks = model.tcn.blocks
        removable = ("remove",) if len(blocks) > 1 else ()
        out = [Unit(f"tcn.blocks.{i}", "tcn_block", "tcn", i, removable, model.tcn.hidden,
                    "tcn.blocks.0") for i in range(len(blocks))]
        h = model.tcn.hidden
        out.append(Unit(self.width_unit, "width", "tcn", 0,
                        ("narrow",) if h > MIN_WIDTH else (), h, None))
        return out

    def apply(self, model: Any, action: Action) -> None:
        from models.separation.nets import narrow_widths

        if action.kind == "narrow":
            if action.unit != self.width_unit:
                raise CompressError(f"unit {action.unit!r} cannot be narrowed; Vox-TasNet's "
                                    f"width unit is {self.width_unit!r}")
            model.narrow(narrow_widths([model.tcn.hidden], action.factor)[0])
            return
        if action.kind != "remove":
            raise CompressError(f"Vox-TasNet units support remove and narrow, not "
                                f"{action.kind!r}")
        head, _, idx = action.unit.rpartition(".")
        if head != "tcn.blocks" or not idx.isdigit():
            raise CompressError(f"unit {action.unit!r} is not a TCN block (tcn.blocks.<i>)")
        try:
            model.remove_block(int(idx))
        except ValueError as exc:
            raise CompressError(f"unit {action.unit!r}: {exc}") from None

    def architecture(self, model: Any) -> dict[str, Any]:
        return {"arch": "vox-tasnet", "sample_rate": model.sample_rate,
                "channels": model.channels, **model.hyper, "blocks": list(model.tcn.keep),
                "lookahead_frames": model.tcn.lookahead_frames, "norm": model.norm}

    def components(self, model: Any) -> dict[str, str]:
        return {"tcn": "tcn"}

    def int8_groups(self, model: Any) -> list[str]:
        return (["tcn.bottleneck"] + [f"tcn.blocks.{i}" for i in range(len(model.tcn.blocks))]
                + ["tcn.out"])

    def export_metadata(self, model: Any) -> dict[str, Any]:
        return {"arch": "vox-tasnet", "hyper": json.dumps(model.hyper),
                "blocks": json.dumps(list(model.tcn.keep)),
                "lookahead_frames": int(model.tcn.lookahead_frames)}


class _ChimeraArch(_SeparatorArch):
    """The Chimera network (:class:`~models.separation.chimera.ChimeraSeparator`): each LSTM
    layer after the first may be removed (``net.body.layers.<i>``, kind ``lstm_layer``: every
    such layer reads ``D·H`` features and has the same shape, so one latency probe — layer 1 —
    serves them all; the first reads the mel features and stays), and two width units:
    ``net.width`` narrows every layer's hidden units per direction (gate rows, recurrent and
    next-layer columns, ``to_z``'s columns: :meth:`ChimeraNet.narrow`), and
    ``net.embedding`` narrows the embedding dimension ``D`` (``to_z``'s rows and the mask
    head's weights, :meth:`ChimeraNet.narrow_embedding`): ``to_z`` maps each frame to
    ``n_mels × D`` values, the largest layer of the demo network. On the demo run the searched
    network was only 37-50 % of the program's latency (the STFT / iSTFT convolutions, mel
    filterbank and mask spreading are the rest), and every action at its limit left 87 % of it
    (2026-12-07): a 50 % budget is out of reach of this search. The STFT, mel
    filterbank and mask spreading stay fp32 (``ChimeraSeparator.export_int8_modules``); the
    int8 groups are each LSTM layer and ``to_z``. The device program is the whole-chunk mask
    inference (the DC head is not computed); its LSTM is exported unrolled over the chunk's
    frames (:mod:`models.separation.lstm`), so the lowering time grows with the chunk: a demo
    run ships short chunks (``configs/chimera-demo.yaml``)."""

    name = "Chimera network"
    loss = "eq. (4): alpha x deep clustering + (1 - alpha) x mask inference on mel magnitudes"
    width_unit = "net.width"
    embedding_unit = "net.embedding"

    def units(self, model: Any) -> list[Unit]:
        from models.separation.nets import MIN_WIDTH

        layers = model.net.body.layers
        n, h = len(layers), model.hidden
        probe = "net.body.layers.1" if n > 1 else "net.body.layers.0"
        out = [Unit(f"net.body.layers.{i}", "lstm_layer", "net", i,
                    ("remove",) if i >= 1 else (), h, probe) for i in range(n)]
        out.append(Unit(self.width_unit, "width", "net", 0,
                        ("narrow",) if h > MIN_WIDTH else (), h, None))
        d = model.embedding
        out.append(Unit(self.embedding_unit, "width", "net", 1,
                        ("narrow",) if d > MIN_WIDTH else (), d, None))
        return out

    def apply(self, model: Any, action: Action) -> None:
        from models.separation import SeparationError
        from models.separation.nets import narrow_widths

        if action.kind == "narrow":
            if action.unit == self.width_unit:
                model.narrow(narrow_widths([model.hidden], action.factor)[0])
            elif action.unit == self.embedding_unit:
                model.narrow_embedding(narrow_widths([model.embedding], action.factor)[0])
            else:
                raise CompressError(f"unit {action.unit!r} cannot be narrowed; the Chimera "
                                    f"network's width units are {self.width_unit!r} and "
                                    f"{self.embedding_unit!r}")
            return
        if action.kind != "remove":
            raise CompressError(f"Chimera units support remove and narrow, not "
                                f"{action.kind!r}")
        head, _, idx = action.unit.rpartition(".")
        if head != "net.body.layers" or not idx.isdigit():
            raise CompressError(f"unit {action.unit!r} is not an LSTM layer "
                                "(net.body.layers.<i>)")
        try:
            model.remove_layer(int(idx))
        except SeparationError as exc:
            raise CompressError(f"unit {action.unit!r}: {exc}") from None

    def architecture(self, model: Any) -> dict[str, Any]:
        return {"arch": "chimera", "sample_rate": model.sample_rate,
                "channels": model.channels, "n_mels": model.n_mels, "hidden": model.hidden,
                "layers": model.layers, "embedding": model.embedding,
                "bidirectional": model.bidirectional, "alpha": model.alpha}

    def components(self, model: Any) -> dict[str, str]:
        return {"net": "net"}

    def int8_groups(self, model: Any) -> list[str]:
        return [f"net.body.layers.{i}" for i in range(len(model.net.body.layers))] + ["net.to_z"]

    def export_metadata(self, model: Any) -> dict[str, Any]:
        return {"arch": "chimera", "hidden": int(model.hidden), "layers": int(model.layers),
                "bidirectional": int(model.bidirectional), "n_mels": int(model.n_mels)}


def _known() -> list[tuple[type, _SeparatorArch]]:
    from models.separation.chimera import ChimeraSeparator
    from models.separation.tasnet import VoxTasNet

    return [(Separator, _CwsArch()), (VoxTasNet, _TasNetArch()),
            (ChimeraSeparator, _ChimeraArch())]


_ARCHS = _known()
