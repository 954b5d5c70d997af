"""Checks of a run config against the world, before any work: what `compress run` would refuse.

:mod:`compress.config` checks a config on its own (types, ranges, one budget key, a model
whose family has a recipe, minutes for the held-out songs). This module checks what needs the
model's own config and the file system — the files it names exist, the chunk fits the model's
noise buffer, the distillation parameterisation is the decoder's, formats the run can
export — so ``compress validate`` and ``compress run`` refuse the same configs, with the same
messages (``key: got X, expected Y``), before a run directory is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.config import RunConfig, target_problems
from compress.errors import ConfigError, Problem

#: formats `compress run`'s export stage writes
RUN_FORMATS = ("pte", "onnx")


def _model_config(cfg: RunConfig, problems: list[Problem]) -> dict[str, Any] | None:
    """The config of the model the run starts from (checkpoint header, else the preset)."""
    from models import registry
    from models.checkpoint import read_header

    if cfg.model.checkpoint:
        src = Path(cfg.model.checkpoint).expanduser()
        if not src.is_file():
            problems.append(Problem("model.checkpoint", cfg.model.checkpoint,
                                    "an existing checkpoint file"))
            return None
        try:
            return dict(read_header(src).config)
        except Exception as exc:  # a damaged or foreign file: say so, as the run would
            problems.append(Problem("model.checkpoint", cfg.model.checkpoint,
                                    f"a readable checkpoint ({str(exc)[:160]})"))
            return None
    from models.errors import RegistryError

    try:
        return dict(registry.get(cfg.model.name).config())
    except RegistryError:  # an unknown name: RunConfig.problems reports it
        return None


def preflight(cfg: RunConfig, target: str | None = None) -> list[Problem]:
    """Every problem `compress run` would stop on with `cfg` (and `target`, if given)."""
    problems: list[Problem] = []
    t = target if target is not None else cfg.latency.target
    problems += target_problems(t, "--target" if target is not None else "latency.target")
    if cfg.model.overrides and not cfg.model.checkpoint:
        problems.append(Problem("model.overrides", cfg.model.overrides,
                                "empty when compress run trains the teacher (register a preset "
                                "or give model.checkpoint)"))
    mc = _model_config(cfg, problems)
    dc = cfg.data
    if dc.source == "folder":
        if not dc.path:
            problems.append(Problem("data.path", dc.path, "a dataset folder (data.source: "
                                                          "folder)"))
        elif not Path(dc.path).expanduser().is_dir():
            problems.append(Problem("data.path", dc.path, "an existing directory"))
    bad = [f for f in cfg.export.formats if f not in RUN_FORMATS]
    if bad:
        problems.append(Problem("export.formats", cfg.export.formats,
                                "formats compress run exports (use `compress export --format "
                                "tflite` on the run's checkpoint for LiteRT)", RUN_FORMATS))
    if mc:
        frames, hop, sr = mc.get("noise_frames"), mc.get("hop_length"), mc.get("sample_rate")
        if isinstance(frames, int) and hop and sr:
            longest = (frames - 1) * int(hop) / int(sr)
            if cfg.export.chunk_seconds > longest + 1e-9:
                problems.append(Problem("export.chunk_seconds", cfg.export.chunk_seconds,
                                        f"at most {longest:.3f} s (the model's noise buffer "
                                        f"holds {frames} frames)"))
        pred = mc.get("prediction")
        if cfg.distill.prediction != "auto" and pred and cfg.distill.prediction != pred:
            problems.append(Problem("distill.prediction", cfg.distill.prediction,
                                    f"'auto' or {pred!r} (the decoder is trained for "
                                    f"{pred}-prediction)"))
    return problems


def check_run(cfg: RunConfig, source: str, target: str | None = None) -> None:
    """Raise :class:`ConfigError` listing every :func:`preflight` problem."""
    problems = preflight(cfg, target)
    if problems:
        raise ConfigError(problems, source)
