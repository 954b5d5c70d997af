"""The `compress run` configuration: one frozen dataclass per pipeline stage.

YAML maps one-to-one onto these classes (see :mod:`compress.config_io`); `compress validate
CONFIG` reports every problem at once. Example (every key optional, defaults shown in
``configs/default.yaml``)::

    name: demo
    data: {source: synthetic, singers: 4, minutes: 4.0}
    model: {name: lhq-svc-demo}
    evolve: {budget_ms: 40.0, score: speaker_similarity}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from compress.config_io import option
from compress.errors import Problem

_TARGET_RE = re.compile(r"^(host|host:threads=[1-9][0-9]*|adb:[^\s]+)$")
TARGET_FORMS = ("host", "host:threads=N", "adb:SERIAL")


def target_problems(value: str, path: str) -> list[Problem]:
    """Problems with a latency target string (`host`, `host:threads=N`, `adb:SERIAL`)."""
    if _TARGET_RE.match(value):
        return []
    return [Problem(path, value, "a latency target", TARGET_FORMS)]


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "folder"] = "synthetic"
    path: str | None = option(None, help="dataset folder (source: folder) or corpus output dir")
    singers: int = option(4, lo=2, hi=64, help="synthetic corpus: number of singers")
    minutes: float = option(2.0, lo=0.1, hi=600.0, help="synthetic corpus: minutes per singer")
    sample_rate: int = option(16000, lo=8000, hi=96000)
    seed: int = 0
    voice_noise: float = option(0.25, lo=0.0, hi=4.0,
                                help="synthetic corpus: scale of cycle-level jitter / shimmer / "
                                     "aspiration (models.data.corpus.VOICE_NOISE)")

    def problems(self, path: str) -> list[Problem]:
        if self.source == "folder" and not self.path:
            return [Problem(f"{path}.path", self.path, "a dataset folder when source is 'folder'")]
        return []


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lhq-svc-demo"
    checkpoint: str | None = option(None, help="start from this checkpoint instead of training")
    overrides: dict[str, Any] = field(default_factory=dict)


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

    def problems(self, path: str) -> list[Problem]:
        return target_problems(self.target, f"{path}.target")


@dataclass(frozen=True)
class EvolveConfig:
    budget_ms: float | None = option(
        None, lo=0.0, help="latency budget of the on-device path per second of audio (ms)"
    )
    budget_fraction: float = option(
        0.75, lo=0.0, hi=1.0,
        help="without budget_ms: base + this fraction of the teacher's block latency",
    )
    score: str = option("sim_stoi", help="a registered score (compress/scores.py)")
    max_rounds: int = option(4, lo=0)
    require_gain: bool = option(
        False, help="duplicate only when the score rises (the paper duplicates the best block)"
    )
    swap: bool = option(
        True, help="under budget with no room to duplicate: try improving duplicate+remove pairs"
    )
    finetune_steps: int = option(80, lo=0)
    val_clips: int = option(4, lo=1)
    val_seconds: float = option(3.0, lo=0.5, hi=60.0)

    def problems(self, path: str) -> list[Problem]:
        from compress.scores import score_names

        if self.score not in score_names():
            return [Problem(f"{path}.score", self.score, "a registered score",
                            tuple(score_names()))]
        return []


@dataclass(frozen=True)
class DistillConfig:
    teacher_steps: int = option(8, lo=1, help="teacher DDIM steps; halved until one")
    steps_per_stage: int = option(120, lo=1)
    lr: float = option(1e-4, lo=0.0, hi=1.0)
    prediction: Literal["auto", "x", "v"] = option(
        "auto", help="the decoder's parameterisation (auto: the model's own)"
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

    def problems(self, path: str) -> list[Problem]:
        out: list[Problem] = []
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
        from models import registry

        known = registry.names()
        if self.model.name not in known:
            return [Problem("model.name", self.model.name, "a registered model", tuple(known))]
        return []
