"""Per-layer int8 sensitivity and the choice of layers that stay fp32.

For each quantizable layer group of the model (a dotted submodule path), only that group is
quantized with the same PT2E + XNNPACK quantizer the exporter uses
(:func:`export.pte.quantize_pt2e_xnnpack` with ``only_modules``), calibrated on real clips, and
the converted graph is run on validation inputs. Two numbers per group:

* ``sqnr_db`` — SQNR of the graph's output against the fp32 model's (the export gate's
  measure);
* ``score_drop`` — the configured quality score of fp32 minus that of the partly quantized
  model (:mod:`compress.scores`).

:func:`choose_fp32` keeps a group fp32 when its score drop exceeds the threshold, then — since
independent quantization noises add — keeps the noisiest remaining groups fp32 until the
predicted SQNR of quantizing all the others, ``-10 log10 Σ 10^(-SQNR_g / 10)``, clears the
export gate's floor plus a margin.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from export.calibration import CalibrationSet

log = logging.getLogger(__name__)

Inputs = tuple[torch.Tensor, ...]


def layer_groups(model: nn.Module, keep_fp32: Sequence[str] = ()) -> list[str]:
    """Quantizable groups: top-level children with weights, the evolvable decoder per child
    and per block; groups under `keep_fp32` are left out."""
    keep = tuple(k.strip(".") for k in keep_fp32)

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in keep)

    def has_weights(m: nn.Module) -> bool:
        return any(True for _ in m.parameters())

    groups: list[str] = []
    for name, child in model.named_children():
        if kept(name) or not has_weights(child):
            continue
        blocks = getattr(child, "blocks", None)
        if isinstance(blocks, nn.ModuleList):
            for sub, grand in child.named_children():
                full = f"{name}.{sub}"
                if sub == "blocks":
                    groups += [f"{full}.{i}" for i in range(len(blocks)) if not kept(f"{full}.{i}")]
                elif has_weights(grand) and not kept(full):
                    groups.append(full)
        else:
            groups.append(name)
    return groups


def sqnr_db(ref: Sequence[torch.Tensor], out: Sequence[torch.Tensor]) -> float:
    """SQNR of `out` against `ref` over all outputs together (dB; inf when identical)."""
    sig = sum(float(r.double().pow(2).sum()) for r in ref)
    noise = sum(float((o.double() - r.double()).pow(2).sum()) for r, o in zip(ref, out))
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _outputs(graph: Callable[..., Any], inputs: Sequence[Inputs]) -> list[torch.Tensor]:
    outs = []
    with torch.no_grad():
        for x in inputs:
            y = graph(*x)
            outs.append((y[0] if isinstance(y, list | tuple) else y).detach().float())
    return outs


def sensitivity(
    model: nn.Module,
    groups: Sequence[str],
    val_inputs: Sequence[Inputs],
    calibration: Sequence[Inputs],
    *,
    keep_fp32: Sequence[str] = (),
    score_fn: Callable[[Callable[..., Any], str], float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Quantize one group at a time; rows ``{layer, sqnr_db, score, score_drop}`` and a summary
    with the fp32 score and the SQNR / score of quantizing every group (ops between groups,
    such as the sampler's arithmetic or an F0 shift, always stay fp32).

    ``score_fn(graph, tag) -> score`` scores a callable on the validation set (``tag`` names
    the variant for caching); without it scores are None.
    """
    from export.pte import quantize_pt2e_xnnpack

    if not val_inputs:
        raise CompressError("sensitivity analysis needs at least one validation input")
    model.eval()
    calib = CalibrationSet([tuple(c) for c in calibration], {"kind": "real clips"})
    ref = _outputs(model, val_inputs)
    base_score = score_fn(model, "fp32") if score_fn else None
    rows = []
    variants: list[tuple[str, list[str]]] = [(g, [g]) for g in groups]
    variants.append(("(all)", list(groups)))
    summary: dict[str, Any] = {"score_fp32": base_score}
    for name, only in variants:
        if progress:
            progress(name)
        graph = quantize_pt2e_xnnpack(model, tuple(val_inputs[0]), calib,
                                      what=f"sensitivity of {name}", keep_fp32=keep_fp32,
                                      only_modules=only)
        out = _outputs(graph, val_inputs)
        q = sqnr_db(ref, out)
        score = score_fn(graph, f"int8:{name}") if score_fn else None
        drop = None if score is None or base_score is None else base_score - score
        if name == "(all)":
            summary.update({"sqnr_db_all": q, "score_all": score, "score_drop_all": drop})
        else:
            rows.append({"layer": name, "sqnr_db": q, "score": score, "score_drop": drop})
        log.info("int8 sensitivity %s: SQNR %.1f dB, score drop %s", name, q, drop)
    return rows, summary


def predicted_sqnr_db(sqnrs: Sequence[float]) -> float:
    """SQNR of quantizing several groups whose noises add independently."""
    total = sum(10.0 ** (-s / 10.0) for s in sqnrs if math.isfinite(s))
    return math.inf if total == 0.0 else -10.0 * math.log10(total)


def choose_fp32(
    rows: list[dict[str, Any]],
    *,
    score_threshold: float,
    sqnr_floor_db: float,
    margin_db: float = 3.0,
) -> list[str]:
    """Groups to keep fp32 (see the module docstring); marks each row's ``kept_fp32``."""
    keep = [r["layer"] for r in rows
            if r.get("score_drop") is not None and r["score_drop"] > score_threshold]
    quantized = sorted((r for r in rows if r["layer"] not in keep), key=lambda r: r["sqnr_db"])
    while quantized and predicted_sqnr_db([r["sqnr_db"] for r in quantized]) < (
        sqnr_floor_db + margin_db
    ):
        keep.append(quantized.pop(0)["layer"])
    for r in rows:
        r["kept_fp32"] = r["layer"] in keep
    return keep
