"""The `compress run` configuration: one frozen dataclass per pipeline stage.

YAML maps one-to-one onto these classes (see :mod:`compress.config_io`); `compress validate
CONFIG` reports every problem at once. Example (every key optional, defaults shown in
``configs/default.yaml``)::

    name: demo
    data: {source: synthetic, singers: 4, minutes: 4.0}
    model: {name: lhq-svc-demo, content_model: null}
    evolve: {budget_ms: 40.0, score: speaker_similarity}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from compress.config_io import option
from compress.errors import CompressError, Problem

_TARGET_RE = re.compile(r"^(host|host:threads=[1-9][0-9]*|adb:[^\s]+)$")
TARGET_FORMS = ("host", "host:threads=N", "adb:SERIAL")


def target_problems(value: str, path: str) -> list[Problem]:
    """Problems with a latency target string (`host`, `host:threads=N`, `adb:SERIAL`)."""
    if _TARGET_RE.match(value):
        return []
    return [Problem(path, value, "a latency target", TARGET_FORMS)]


def synthetic_song_plan(minutes: float, held_out: int, song_seconds: float = 15.0
                        ) -> tuple[int, float] | None:
    """``(songs, seconds per song)`` of a synthetic corpus of `minutes` per singer with
    `held_out` held-out songs and at least one training song (songs of 3 to `song_seconds`
    s); None when the minutes cannot hold that many songs."""
    total = minutes * 60.0
    need = held_out + 1
    if total / 3.0 < need:
        return None
    song_s = min(song_seconds, max(3.0, total / need))
    return max(need, int(round(total / song_s))), song_s


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "folder"] = "synthetic"
    path: str | None = option(None, help="dataset folder (source: folder) or corpus output dir")
    singers: int = option(4, lo=2, hi=64, help="synthetic corpus: number of singers")
    minutes: float = option(2.0, lo=0.1, hi=600.0, help="synthetic corpus: minutes per singer")
    held_out_songs: int = option(2, lo=2, hi=64,
                                 help="synthetic corpus: songs no stage trains on, split half for "
                                      "search decisions (val) and half for the report (test)")
    sample_rate: int = option(16000, lo=8000, hi=96000)
    seed: int = 0
    voice_noise: float = option(0.25, lo=0.0, hi=4.0,
                                help="synthetic corpus: scale of cycle-level jitter / shimmer / "
                                     "aspiration (models.data.corpus.VOICE_NOISE)")

    def problems(self, path: str) -> list[Problem]:
        if self.source == "folder" and not self.path:
            return [Problem(f"{path}.path", self.path, "a dataset folder when source is 'folder'")]
        if self.source == "synthetic" and synthetic_song_plan(self.minutes,
                                                              self.held_out_songs) is None:
            need = self.held_out_songs + 1
            return [Problem(f"{path}.minutes", self.minutes,
                            f"at least {need * 3.0 / 60:.2f} (3 s songs: {self.held_out_songs} "
                            "held out and 1 to train on)")]
        return []


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lhq-svc-demo"
    checkpoint: str | None = option(None, help="start from this checkpoint instead of training")
    overrides: dict[str, Any] = field(default_factory=dict)
    content_model: str | None = option(
        None, help="a local pretrained HuBERT / ContentVec checkpoint the teacher uses, frozen, "
                   "as its content encoder (then the corpus needs no phoneme labels)")
    content_allow_pickle: bool = option(
        False, help="let content_model, a fairseq .pt, unpickle its config: unpickling runs "
                    "code stored in the file, so only for files you trust")

    def problems(self, path: str) -> list[Problem]:
        if self.content_model is None:
            return []
        if self.checkpoint:
            return [Problem(f"{path}.content_model", self.content_model,
                            "null when model.checkpoint is given (the checkpoint holds its "
                            "own content encoder)")]
        if not Path(self.content_model).expanduser().exists():
            return [Problem(f"{path}.content_model", self.content_model,
                            "an existing local HuBERT / ContentVec checkpoint: a transformers "
                            "directory (config.json + model.safetensors or pytorch_model.bin), "
                            "a fairseq / ContentVec .pt or a .safetensors file")]
        return []


@dataclass(frozen=True)
class TrainConfig:
    steps: int = option(600, lo=0, help="teacher decoder steps (when no checkpoint is given)")
    content_steps: int | None = option(200, lo=0, help="content encoder steps (None: preset)")
    vocoder_steps: int | None = option(300, lo=0, help="vocoder steps (None: preset)")
    batch_size: int = option(8, lo=1)
    lr: float = option(1e-3, lo=0.0, hi=1.0, help="decoder learning rate")
    seed: int = 0


@dataclass(frozen=True)
class RobustConfig:
    # p = 0.3 by experiment: benchmarks/results/robust_skip_prob.md (full-model score kept,
    # cheapest single-block removals among p in {0, 0.1, 0.2, 0.3})
    skip_prob: float = option(0.3, lo=0.0, hi=0.9, help="p of eq. (1): each block skipped")
    steps: int = option(150, lo=0)
    lr: float = option(3e-4, lo=0.0, hi=1.0)


@dataclass(frozen=True)
class LatencyConfig:
    target: str = "host"
    threads: int = option(1, lo=1, hi=64)
    warmup: int = option(3, lo=0)
    iterations: int = option(20, lo=1)
    repeats: int = option(3, lo=1, help="interleaved timing rounds per probe (samples pooled)")
    table: str | None = option(None, help="reuse a saved latency table (JSON)")
    width_steps: int = option(1, lo=0, hi=6,
                              help="narrowings per width unit the table covers")
    validate: bool = option(True, help="check the table on a whole non-teacher program")
    export_workers: int = option(2, lo=1, hi=16,
                                 help="processes exporting probes at once (timing is serial)")

    def problems(self, path: str) -> list[Problem]:
        return target_problems(self.target, f"{path}.target")


DEFAULT_BUDGET_FRACTION = 0.55
DEFAULT_PARAMS_FRACTION = 0.6


@dataclass(frozen=True)
class EvolveConfig:
    """The architecture search. The budget is one of ``budget_ms`` (ms of the on-device
    program per second of audio on the latency target), ``budget_rtf`` (the same as a
    real-time factor: 0.02 = 20 ms per second) or ``budget_fraction`` (a fraction of the
    teacher architecture's predicted latency); none given means ``budget_fraction`` 0.55.
    ``params_fraction`` (default 0.6) adds a parameter budget, a fraction of the teacher's
    parameters; null for none."""

    budget_ms: float | None = option(
        None, lo=0.0, help="latency budget of the on-device program per second of audio (ms)"
    )
    budget_rtf: float | None = option(
        None, lo=0.0, help="latency budget as a real-time factor (budget_ms / 1000)"
    )
    budget_fraction: float | None = option(
        None, lo=0.0, hi=1.0,
        help=f"latency budget as a fraction of the teacher architecture's (default "
             f"{DEFAULT_BUDGET_FRACTION} when no budget is given)",
    )
    params_fraction: float | None = option(
        DEFAULT_PARAMS_FRACTION, lo=0.0, hi=1.0,
        help="parameter budget as a fraction of the teacher's parameters (null: no limit)")
    latency_margin: float = option(
        0.03, lo=0.0, hi=0.5,
        help="the search aims this fraction under the latency budget: a guard band for the "
             "table's prediction error and the timing noise of the shipped program (a student "
             "predicted 0.1 % under the budget measured 1 % over it)")
    score: str = option("combined", help="a registered score (compress/scores.py); "
                        "LHQ-SVC's default, combined, weighs the parts of score_weights")
    score_weights: dict[str, float] = field(default_factory=dict, metadata={"help": (
        "weights of the combined score's parts (similarity, naturalness, intelligibility, "
        "pitch); a part not given keeps its default (1 each: compress/scores.py says why)")})
    naturalness_judge: Literal["p808", "distillmos", "ovrl", "sig", "bak"] = option(
        "p808", help="the MOS of the naturalness part: DNSMOS P.808 (the judge that passes "
                     "the degradation ladder on singing), Distill-MOS or a DNSMOS P.835 score")
    pitch_judge: Literal["tiny", "full"] = option(
        "tiny", help="the CREPE model of the pitch scores in the search and the report (tiny: "
                     "the same chroma accuracy as full on sung clips at 1/20 of its cost)")
    pitch_stride: int = option(2, lo=1, hi=8, help="CREPE on every k-th frame (cost / k)")
    max_rounds: int = option(12, lo=0)
    narrow_factor: float = option(0.5, lo=0.05, hi=0.95,
                                  help="a narrow action keeps this fraction of the channels")
    duplicate_candidates: int = option(
        3, lo=0, help="under budget: duplicates tried per round (the most valuable units)")
    swap_candidates: int = option(
        2, lo=0, help="under budget with no room for a copy: units tried in a duplicate + "
                      "remove swap (0: no swaps)")
    finetune_steps: int = option(40, lo=0, help="fine-tune steps after each decision")
    duplicate_finetune_steps: int = option(
        30, lo=0, help="fine-tune steps of a duplicated copy before it is valued (SnapFusion)")
    narrow_finetune_steps: int = option(
        30, lo=0, help="fine-tune steps of a narrowed candidate before it is valued")
    val_clips: int = option(4, lo=1, help="val conversions the search decides on (round "
                                          "robin over the val songs)")
    val_seconds: float = option(3.0, lo=0.5, hi=60.0)
    screen_clips: int = option(
        2, lo=0, help="over the budget every candidate is first scored on this many of the val "
                      "clips (0: no screening) ...")
    screen_keep: int = option(
        3, lo=1, help="... and the best screen_keep by that value are scored on all val_clips "
                      "and decided on")
    batch_free: bool = option(
        True, help="over the budget, apply a round's actions that each cost no measurable "
                   "score together (one per component), when together they cost none either")

    def weights(self) -> dict[str, float]:
        """The combined score's weights: the defaults, updated by ``score_weights``."""
        from compress.scores import DEFAULT_WEIGHTS

        return {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in self.score_weights.items()}}

    def problems(self, path: str) -> list[Problem]:
        # the score is checked by RunConfig.problems: the valid names are the model family's
        from compress.scores import PARTS, check_weights

        out: list[Problem] = []
        for msg in check_weights(self.weights()):
            out.append(Problem(f"{path}.score_weights", dict(self.score_weights), msg,
                               tuple(PARTS)))
        given = [k for k in ("budget_ms", "budget_rtf", "budget_fraction")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            vals = {k: getattr(self, k) for k in given}
            same = (set(given) == {"budget_ms", "budget_rtf"}
                    and abs(float(vals["budget_ms"]) - 1000.0 * float(vals["budget_rtf"]))
                    <= 1e-9 * max(1.0, float(vals["budget_ms"])))
            if not same:
                out.append(Problem(f"{path}.budget_*", vals,
                                   "one budget: budget_ms, budget_rtf or budget_fraction "
                                   "(budget_ms and budget_rtf only together when equal)"))
        for k in given:
            if float(getattr(self, k)) <= 0.0:
                out.append(Problem(f"{path}.{k}", getattr(self, k), "a budget > 0"))
        if self.screen_clips >= self.val_clips:
            out.append(Problem(f"{path}.screen_clips", self.screen_clips,
                               f"fewer than val_clips ({self.val_clips}), or 0 for no "
                               "screening"))
        if self.params_fraction is not None and not 0.0 < self.params_fraction < 1.0:
            out.append(Problem(f"{path}.params_fraction", self.params_fraction,
                               "a fraction in (0, 1) of the teacher's parameters"))
        if self.budget_rtf is not None and self.budget_rtf >= 1.0:
            out.append(Problem(f"{path}.budget_rtf", self.budget_rtf,
                               "a real-time factor < 1 (an on-device program slower than real "
                               "time cannot stream)"))
        if self.budget_ms is not None and self.budget_ms >= 1000.0:
            out.append(Problem(f"{path}.budget_ms", self.budget_ms,
                               "< 1000 ms per second of audio (slower than real time)"))
        return out


def resolve_budget(ec: EvolveConfig, teacher_ms: float, teacher_params: int | None = None
                   ) -> dict[str, Any]:
    """The budget in ms per second of audio, from the config and the teacher architecture's
    predicted latency; ``mode`` says which key set it. ``params_budget``: the parameter
    budget (``params_fraction`` x `teacher_params`), or None."""
    if ec.budget_ms is not None:
        ms, mode = float(ec.budget_ms), f"budget_ms {ec.budget_ms}"
    elif ec.budget_rtf is not None:
        ms, mode = 1000.0 * float(ec.budget_rtf), f"budget_rtf {ec.budget_rtf}"
    else:
        f = DEFAULT_BUDGET_FRACTION if ec.budget_fraction is None else float(ec.budget_fraction)
        ms, mode = f * teacher_ms, f"budget_fraction {f} of the teacher's {teacher_ms:.2f} ms"
    params_budget = None
    if ec.params_fraction is not None:
        if not teacher_params:
            raise CompressError("evolve.params_fraction needs the teacher's parameter count")
        params_budget = int(ec.params_fraction * teacher_params)
    return {"budget_ms": ms, "budget_rtf": ms / 1000.0, "mode": mode, "teacher_ms": teacher_ms,
            "search_ms": ms * (1.0 - ec.latency_margin), "latency_margin": ec.latency_margin,
            "fraction_of_teacher": ms / teacher_ms if teacher_ms > 0 else None,
            "params_budget": params_budget, "teacher_params": teacher_params}


@dataclass(frozen=True)
class DistillConfig:
    teacher_steps: int = option(8, lo=1, help="teacher DDIM steps; halved until one")
    steps_per_stage: int = option(120, lo=1)
    lr: float = option(1e-4, lo=0.0, hi=1.0)
    prediction: Literal["auto", "x", "v"] = option(
        "auto", help="the decoder's parameterisation (auto: the model's own)"
    )
    guard: bool = option(
        True, help="score the distillation teacher and the one-step student on val first: "
        "skip distillation when the teacher is not better beyond the noise, and keep the "
        "undistilled student when distillation lowers its score"
    )

    def problems(self, path: str) -> list[Problem]:
        n = self.teacher_steps
        if n & (n - 1):
            return [Problem(f"{path}.teacher_steps", n, "a power of two (halved down to 1)")]
        return []


@dataclass(frozen=True)
class QuantizeConfig:
    enabled: bool = True
    calibration_clips: int = option(4, lo=1)
    sensitivity_threshold: float = option(0.02, lo=0.0, help="score drop that keeps a layer fp32")
    sqnr_margin_db: float = option(3.0, lo=0.0, help="predicted SQNR above the export floor")
    qat: bool = False

    def problems(self, path: str) -> list[Problem]:
        if self.qat:
            return [Problem(f"{path}.qat", True, "false: quantization-aware training is not "
                            "implemented; post-training int8 with per-layer sensitivity is")]
        return []


@dataclass(frozen=True)
class ExportConfig:
    formats: list[Literal["pte", "onnx", "tflite"]] = field(default_factory=lambda: ["pte"])
    precision: Literal["fp32", "int8"] = "int8"
    sqnr_floor_db: float = option(20.0, lo=0.0)
    allow_fallback_ops: list[str] = field(default_factory=list)
    chunk_seconds: float = option(1.0, lo=0.1, hi=60.0, help="fixed input length of the .pte")


@dataclass(frozen=True)
class BenchConfig:
    targets: list[str] = field(default_factory=lambda: ["host"])
    threads: int = option(1, lo=1, hi=64)
    warmup: int = option(3, lo=0)
    iterations: int = option(20, lo=1)
    repeats: int = option(3, lo=1)
    teacher_steps: int = option(50, lo=1, help="DDIM steps of the eager teacher")
    eval_clips: int = option(6, lo=1, help="held-out clips scored for teacher and student")
    eval_seconds: float = option(4.0, lo=0.5, hi=60.0)
    iso_quality: float = option(
        0.95, lo=0.0, hi=1.0,
        help="the iso-quality teacher: its fewest DDIM steps (at the best of iso_temperatures) "
             "keeping this fraction of its own teacher_steps score (0: no search)")
    iso_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16], metadata={
        "help": "teacher step counts tried, fewest first"})
    iso_temperatures: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0], metadata={
        "help": "sampler temperatures tried at each count"})

    def problems(self, path: str) -> list[Problem]:
        out: list[Problem] = []
        out += [Problem(f"{path}.iso_steps", k, "a step count >= 1")
                for k in self.iso_steps if k < 1]
        out += [Problem(f"{path}.iso_temperatures", t, "a temperature in [0, 2]")
                for t in self.iso_temperatures if not 0.0 <= t <= 2.0]
        for i, t in enumerate(self.targets):
            out += target_problems(t, f"{path}.targets[{i}]")
        return out


@dataclass(frozen=True)
class RunConfig:
    """Everything `compress run` needs; each field is one stage's section."""

    name: str = "demo"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    def problems(self, path: str) -> list[Problem]:
        from compress.recipes import families, family_of
        from models import registry

        known = registry.names()
        if self.model.name not in known:
            return [Problem("model.name", self.model.name, "a registered model", tuple(known))]
        try:
            fam = family_of(self.model.name)
        except CompressError:
            return []
        if fam not in families():
            return [Problem("model.name", self.model.name,
                            f"a model whose family has a compress-run recipe (its family "
                            f"{fam!r} has none)", tuple(families()))]
        from compress.recipes import recipe_for
        from compress.scores import score_names

        recipe = recipe_for(self.model.name)
        fn = getattr(recipe, "decision_scores", None)
        scores = fn() if callable(fn) else score_names()
        if self.evolve.score not in scores:
            return [Problem("evolve.score", self.evolve.score,
                            f"a score of the {fam!r} family", tuple(scores))]
        return []
