"""The family-recipe interface: what `compress run` needs to know about a model family.

`compress run` (:mod:`compress.pipeline`) is written once: data → teacher → robust → latency →
evolve → distill → quantize → export → bench → report. Everything that differs between LHQ-SVC,
the separators, speech-to-singing or a user's model is a :class:`Recipe`, looked up by the
registered model's family (:func:`compress.recipes.recipe_for`), the way torchao looks up a
handler by config type. A recipe names its evolvable units (``models.units.Unit``: name, kind,
component, position, which of remove / duplicate / narrow apply), applies actions to them, builds
the program that ships (one chunk in, one chunk out), gives real example inputs from its data
splits, scores a model or an exported program on a split, fine-tunes after an action, distils,
and names the groups that may go int8.

Stages hand typed results to each other (the dataclasses of :mod:`compress.results`), never a
dictionary of string keys. Scores are higher-is-better and come with their per-item values, so
the pipeline can measure their noise (:class:`ScoreResult`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from compress.errors import CompressError
from models.units import ACTIONS, Unit

if TYPE_CHECKING:
    from compress.config import RunConfig

Inputs = tuple[torch.Tensor, ...]
Say = Callable[[str], None]

__all__ = ["ACTIONS", "Action", "DataSplits", "Inputs", "Recipe", "ScoreResult", "Unit"]


@dataclass(frozen=True)
class Action:
    """One architecture edit: ``kind`` (remove / duplicate / narrow) of ``unit``."""

    kind: str
    unit: str
    factor: float = 0.75

    def __post_init__(self) -> None:
        if self.kind not in ACTIONS:
            raise CompressError(f"action {self.kind!r}; valid: {', '.join(ACTIONS)}")
        if self.kind == "narrow" and not 0.0 < self.factor < 1.0:
            raise CompressError(f"narrow factor {self.factor!r}; expected 0 < factor < 1")


@dataclass(frozen=True)
class DataSplits:
    """A corpus and three disjoint splits of it.

    ``train`` feeds every training stage (teacher, robust, fine-tunes, distillation,
    calibration); ``val`` decides (evolution values, int8 sensitivity, score noise); ``test``
    is only scored for the final report. ``groups`` are what the splits are made of (songs of
    a corpus), so disjointness is checked on the unit that matters, not on file names.
    """

    root: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    unit: str = "song"
    info: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """CompressError unless the three splits are non-empty and pairwise disjoint."""
        names = ("train", "val", "test")
        for n in names:
            if not getattr(self, n):
                raise CompressError(f"data {self.root}: the {n} split is empty")
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
                if both:
                    raise CompressError(f"data {self.root}: {self.unit}s {both} are in both "
                                        f"the {a} and the {b} split")

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "train": list(self.train), "val": list(self.val),
                "test": list(self.test), "unit": self.unit, "info": dict(self.info)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DataSplits:
        return cls(d["root"], tuple(d["train"]), tuple(d["val"]), tuple(d["test"]),
                   d.get("unit", "song"), dict(d.get("info", {})))


@dataclass(frozen=True)
class ScoreResult:
    """A score (higher is better) with its per-item values and their noise.

    ``noise`` is the standard error of the mean over items (``std / sqrt(n)``): how much the
    score moves when other clips of the same population are drawn. A difference between two
    models scored on the same items is compared with :meth:`paired_noise`.
    """

    name: str
    value: float
    items: tuple[float, ...]

    @property
    def noise(self) -> float:
        a = np.asarray(self.items, dtype=float)
        if a.size < 2:
            return 0.0
        return float(a.std(ddof=1) / math.sqrt(a.size))

    def paired_noise(self, other: ScoreResult) -> float:
        """Standard error of the per-item differences against `other` (same items)."""
        a, b = np.asarray(self.items, dtype=float), np.asarray(other.items, dtype=float)
        if a.size != b.size or a.size < 2:
            return max(self.noise, other.noise)
        return float((a - b).std(ddof=1) / math.sqrt(a.size))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "noise": self.noise,
                "items": list(self.items)}

    @classmethod
    def from_items(cls, name: str, items: Sequence[float]) -> ScoreResult:
        vals = [float(v) for v in items if math.isfinite(float(v))]
        if not vals:
            raise CompressError(f"score {name}: no item could be scored")
        return cls(name, float(np.mean(vals)), tuple(vals))


def score_results(vals: dict[str, list[float]], tag: str, split: str
                  ) -> dict[str, ScoreResult]:
    """A :class:`ScoreResult` per score name from its per-item values; a score none of whose
    items could be computed (NaN everywhere: silent windows) is left out with a warning."""
    import logging

    out: dict[str, ScoreResult] = {}
    for k, v in vals.items():
        try:
            out[k] = ScoreResult.from_items(k, v)
        except CompressError as exc:
            logging.getLogger(__name__).warning("score %s of %s on %s: %s", k, tag, split, exc)
    return out


def synthetic_corpus(cfg: RunConfig, out: Path, say: Say) -> Path:
    """Render the run's synthetic corpus (``data.source: synthetic``) into ``out/corpus``:
    ``data.held_out_songs`` songs that no stage trains on (the corpus's test songs), at least
    one to train on; every layout (RVC, MUSDB, NUS-48E) is written, each family reads its
    own. Returns the corpus root."""
    from dataclasses import replace

    from compress.config import synthetic_song_plan
    from models.data.corpus import CorpusConfig, synthesize_corpus

    dc = cfg.data
    base = CorpusConfig(singers=dc.singers, minutes=dc.minutes, seed=dc.seed,
                        sample_rate=dc.sample_rate, voice_noise=dc.voice_noise)
    plan = synthetic_song_plan(dc.minutes, dc.held_out_songs, base.song_seconds)
    if plan is None:
        raise CompressError(f"data.minutes={dc.minutes} cannot hold "
                            f"{dc.held_out_songs} held-out songs and a training song")
    n, song_s = plan
    ccfg = replace(base, song_seconds=song_s, test_fraction=dc.held_out_songs / n)
    root = out / "corpus"
    say(f"data: synthesising {dc.singers} singers x {dc.minutes} min into {root}")
    synthesize_corpus(root, ccfg)
    return root


def guarded_distill(model: nn.Module, score: Callable[[Any, str], ScoreResult] | None,
                    train: Callable[[], dict[str, Any]], score_name: str, say: Say
                    ) -> dict[str, Any]:
    """Run `train` (distillation in place) on `model`; with `score` (the val scorer, None:
    no guard) the model is scored before and after and the undistilled weights are put back
    when the score did not rise. Returns `train`'s record with ``guard`` and ``kept``."""
    before = score(model, "undistilled") if score else None
    undistilled = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rec = train()
    if score is not None and before is not None:
        after = score(model, "distilled")
        rec["guard"] = {"score": score_name, "undistilled": before.to_json(),
                        "distilled": after.to_json(), "paired_noise": after.paired_noise(before)}
        if after.value <= before.value:
            model.load_state_dict(undistilled)
            rec["kept"] = "undistilled"
            say(f"distill: val {score_name} {before.value:.3f} -> {after.value:.3f}: kept the "
                "undistilled student")
        else:
            rec["kept"] = "distilled"
            say(f"distill: val {score_name} {before.value:.3f} -> {after.value:.3f}")
    return rec


class Recipe(ABC):
    """What one model family tells `compress run` (see the module docstring).

    A user's model gets a recipe by subclassing this (or a family's recipe), naming its
    units and implementing the hooks; :func:`compress.recipes.register_recipe` makes it
    known to ``compress run``.
    """

    family: str = ""
    #: the default decision score (higher is better)
    default_score: str = ""
    #: where the teacher trains and the robust fine-tune runs ("cpu", "cuda"; set by
    #: ``compress run --device``)
    device: str = "cpu"

    # ---- data and teacher -------------------------------------------------------------------
    @abstractmethod
    def load_data(self, cfg: RunConfig, out: Path, say: Say) -> DataSplits:
        """Make or read the corpus under `out`; three disjoint splits."""

    @abstractmethod
    def train_teacher(self, cfg: RunConfig, data: DataSplits, out: Path, say: Say) -> Path:
        """Train the teacher into `out` and return its checkpoint (resumable)."""

    @abstractmethod
    def load(self, path: str | Path) -> nn.Module:
        """A checkpoint written by :meth:`save` (or a compatible one), in eval mode."""

    @abstractmethod
    def save(self, model: nn.Module, path: Path, event: dict[str, Any]) -> Path:
        """Write `model` with `event` appended to its history; return the path."""

    def check_teacher(self, model: nn.Module, path: Path) -> None:  # noqa: B027
        """Raise CompressError when `model` (loaded from `path`) cannot be compressed."""

    # ---- architecture ------------------------------------------------------------------------
    @abstractmethod
    def units(self, model: nn.Module) -> list[Unit]:
        """The evolvable units of `model`, in program order."""

    @abstractmethod
    def apply(self, model: nn.Module, action: Action) -> None:
        """Apply `action` to `model` in place (ValueError / CompressError when invalid)."""

    @abstractmethod
    def architecture(self, model: nn.Module) -> dict[str, Any]:
        """A JSON-able description of `model`'s architecture (what a checkpoint rebuilds)."""

    def components(self, model: nn.Module) -> dict[str, str]:
        """``component -> module path`` of the parts the units live in (latency segments)."""
        return {}

    # ---- robust training and fine-tunes -------------------------------------------------------
    @abstractmethod
    def robust(self, model: nn.Module, data: DataSplits, cfg: RunConfig, seed: int
               ) -> dict[str, Any]:
        """Fine-tune `model` so that its units can be removed (LHQ-SVC eq. 1)."""

    @abstractmethod
    def finetune(self, model: nn.Module, teacher: nn.Module, action: Action,
                 data: DataSplits, steps: int, seed: int) -> dict[str, Any]:
        """A short fine-tune of `model` after `action` (towards `teacher`'s outputs)."""

    def finetune_scope(self, model: nn.Module, action: Action
                       ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """Components (names of :meth:`components`) that :meth:`finetune` for `action` reads
        and those it writes, or None when unknown. When given, a fine-tune whose read
        components are unchanged (architecture and weights) since an earlier identical call
        is not run again: its written components' weights are reused (evolution re-values
        the same narrowed candidates round after round)."""
        return None

    # ---- what ships ---------------------------------------------------------------------------
    @abstractmethod
    def device_program(self, model: nn.Module) -> nn.Module:
        """The module that ships: one chunk of inputs in, one chunk out (sampler baked in)."""

    @abstractmethod
    def example_inputs(self, model: nn.Module, data: DataSplits, split: str, n: int,
                       chunk_seconds: float, offset: int = 0) -> list[Inputs]:
        """`n` real input tuples of the device program from `split`."""

    def inputs_for(self, model: nn.Module, inputs: Inputs) -> Inputs:
        """`inputs` (made by :meth:`example_inputs` for another architecture of the family)
        fitted to `model`'s device program: the same audio, and whatever depends on the
        architecture (e.g. recurrent states sized by a narrowed layer) rebuilt. Default: as
        given."""
        return inputs

    @abstractmethod
    def int8_groups(self, model: nn.Module) -> list[str]:
        """Module paths that may be quantized to int8, one sensitivity group each."""

    def keep_fp32(self, model: nn.Module) -> tuple[str, ...]:
        """Module paths that always stay fp32 (DSP front ends feeding logs, ...)."""
        return tuple(getattr(model, "export_keep_fp32", ()) or ())

    def int8_modules(self, model: nn.Module) -> tuple[str, ...] | None:
        """Quantize only inside these modules (None: the whole program)."""
        return tuple(getattr(model, "export_int8_modules", ()) or ()) or None

    def export_metadata(self, model: nn.Module, cfg: RunConfig) -> dict[str, Any]:
        """Extra metadata baked into the exported program."""
        return {}

    # ---- scores -------------------------------------------------------------------------------
    @abstractmethod
    def scorer(self, model: nn.Module, data: DataSplits, split: str, *, items: int,
               seconds: float, chunk_seconds: float, score: str, steps: int | None = None
               ) -> Callable[[Any, str], ScoreResult]:
        """``(model or program, tag, first=None) -> ScoreResult`` on `split` (on its first
        `first` items when given, in the same order). A program is a callable
        with the device program's signature (a ``.pte`` runner, a quantized graph); `tag`
        names it for caching. An eager model runs with `steps` sampler steps (None: the
        family's choice for decisions)."""

    @abstractmethod
    def evaluate(self, subject: Any, tag: str, model: nn.Module, data: DataSplits, split: str,
                 *, items: int, seconds: float, chunk_seconds: float, teacher_steps: int | None
                 ) -> dict[str, ScoreResult]:
        """Every score of the family for `subject` on `split`: an eager model run with
        `teacher_steps` sampler steps, or a device program (``teacher_steps=None``) of
        `model` (which gives its speakers, rates, ...)."""

    def score_names(self) -> list[str]:
        return [self.default_score]

    def decision_scores(self) -> list[str]:
        """Scores ``evolve.score`` may name for this family (checked by ``compress
        validate``); by default the registered scores of :mod:`compress.scores`."""
        from compress.scores import score_names

        return list(score_names())

    def iso_quality_teacher(self, teacher: nn.Module, data: DataSplits, cfg: RunConfig,
                            reference: ScoreResult, say: Say) -> dict[str, Any] | None:
        """The teacher's cheapest sampler setting that keeps ``bench.iso_quality`` of its own
        score (``{steps, temperature, score, reference, kept_fraction, tried}``); None for a
        family without a sampler (its teacher has one setting)."""
        return None

    def write_examples(self, out: Path, teacher: nn.Module, program: Any, student: nn.Module,
                       data: DataSplits, teacher_steps: int, chunk_seconds: float
                       ) -> list[dict[str, Any]]:
        """Example outputs for the report (``[{name, source, teacher, student}]`` wav paths);
        none by default."""
        return []

    def extra_programs(self, model: nn.Module, inputs: Inputs, calibration: list[Inputs]
                       ) -> dict[str, tuple[nn.Module, Inputs, list[Inputs], str]]:
        """Further programs to export next to the device program: ``name -> (module,
        inputs, calibration, module-path prefix of its int8 groups)``."""
        return {}

    def configure(self, cfg: RunConfig) -> None:  # noqa: B027
        """Called once with the run's config before the first stage."""

    # ---- distillation -------------------------------------------------------------------------
    def distill(self, model: nn.Module, data: DataSplits, cfg: RunConfig, out: Path,
                say: Say, teacher: nn.Module | None = None) -> dict[str, Any]:
        """Distil `model` (the evolved student) in place to what ships: fewer sampler steps,
        or `teacher`'s (the full model's) outputs as targets; the default does nothing."""
        return {"skipped": "this family has no sampler to distil"}

    # ---- speed --------------------------------------------------------------------------------
    def eager_ms(self, model: nn.Module, inputs: Inputs, steps: int | None, *, repeats: int,
                 threads: int) -> float:
        """Median eager wall time (ms) of one chunk; `steps` sampler steps where the family
        has a sampler (None: the device program's own)."""
        import statistics
        import time

        prog = self.device_program(model) if steps is None else model
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                prog(*inputs)
                times = []
                for _ in range(max(1, repeats)):
                    t0 = time.perf_counter()
                    prog(*inputs)
                    times.append((time.perf_counter() - t0) * 1000.0)
        finally:
            torch.set_num_threads(old)
        return float(statistics.median(times))

    def audio_seconds(self, model: nn.Module, inputs: Inputs) -> float:
        """Seconds of audio one call of the device program processes."""
        sr = int(model.sample_rate)
        return float(inputs[0].shape[-1]) / sr

    def params(self, model: nn.Module) -> int:
        return int(sum(p.numel() for p in model.parameters()))


class ItemScoredRecipe(Recipe):
    """A recipe whose every score is a list of per-item values from one :meth:`_score_all`
    (separation, speech-to-singing): :meth:`scorer` (one score, for decisions) and
    :meth:`evaluate` (every score of :attr:`scores`) are written once here."""

    #: the family's score names; ``family_label`` names the family in errors
    scores: tuple[str, ...] = ()
    family_label = ""

    @abstractmethod
    def _warm(self, model: nn.Module, data: DataSplits, split: str, items: int,
              seconds: float) -> None:
        """Build (and cache) the scored items of `split`; raise now when there are none."""

    @abstractmethod
    def _score_all(self, subject: Any, model: nn.Module, data: DataSplits, split: str,
                   items: int, seconds: float, chunk_seconds: float, names: tuple[str, ...],
                   first: int | None = None) -> dict[str, list[float]]:
        """Per-item values of each score in `names` for `subject` (the first `first` items)."""

    def scorer(self, model: nn.Module, data: DataSplits, split: str, *, items: int,
               seconds: float, chunk_seconds: float, score: str, steps: int | None = None
               ) -> Any:
        if score not in self.scores:
            raise CompressError(f"score {score!r}; the {self.family_label} family has "
                                f"{', '.join(self.scores)}")
        self._warm(model, data, split, items, seconds)  # fail early, warm the cache

        def run(subject: Any, tag: str, first: int | None = None) -> ScoreResult:
            vals = self._score_all(subject, model, data, split, items, seconds, chunk_seconds,
                                   (score,), first)
            return ScoreResult.from_items(score, vals[score])

        return run

    def evaluate(self, subject: Any, tag: str, model: nn.Module, data: DataSplits, split: str,
                 *, items: int, seconds: float, chunk_seconds: float, teacher_steps: int | None
                 ) -> dict[str, ScoreResult]:
        return score_results(self._score_all(subject, model, data, split, items, seconds,
                                             chunk_seconds, self.scores), tag, split)
