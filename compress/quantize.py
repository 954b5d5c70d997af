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

A group whose SQNR cannot be measured (NaN: the partly quantized graph, or the fp32 model,
produced NaN / inf on the validation inputs) stays fp32 — for an int8 plan keeping fp32 is the
safe side — and the decision is logged as a warning naming the group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from export import parity
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
    """SQNR of `out` against `ref` over all outputs together (dB; inf when identical, NaN when
    either holds NaN / inf): :func:`export.parity.sqnr_db` of the concatenated outputs."""
    if len(ref) != len(out):
        raise CompressError(f"SQNR: {len(out)} outputs against {len(ref)} references")
    for i, (r, o) in enumerate(zip(ref, out)):
        if tuple(r.shape) != tuple(o.shape):
            raise CompressError(
                f"SQNR: output {i} has shape {tuple(o.shape)}, its reference {tuple(r.shape)}"
            )
    if not ref:
        return math.inf
    return parity.sqnr_db(torch.cat([r.reshape(-1) for r in ref]),
                          torch.cat([o.reshape(-1) for o in out]))


def _non_finite(outs: Sequence[torch.Tensor]) -> int:
    return sum(int((~torch.isfinite(o)).sum()) for o in outs)


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
    accept_all: Callable[[float, float | None], bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Quantize one group at a time; rows ``{layer, sqnr_db, score, score_drop}`` and a summary
    with the fp32 score and the SQNR / score of quantizing every group (ops between groups,
    such as the sampler's arithmetic or an F0 shift, always stay fp32).

    ``score_fn(graph, tag) -> score`` scores a callable on the validation set (``tag`` names
    the variant for caching); without it scores are None. With ``accept_all(sqnr_db,
    score_drop)``, every group quantized together is measured first, and when it accepts
    that, no group needs to stay fp32 and the one-at-a-time rows are not computed (``rows``
    is empty, ``summary["per_group"]`` says so): the analysis is only needed to choose which
    groups to keep fp32.
    """
    from export.pte import quantize_pt2e_xnnpack

    if not val_inputs:
        raise CompressError("sensitivity analysis needs at least one validation input")
    model.eval()
    calib = CalibrationSet([tuple(c) for c in calibration], {"kind": "real clips"})
    ref = _outputs(model, val_inputs)
    bad_ref = _non_finite(ref)
    if bad_ref:
        raise CompressError(
            f"sensitivity analysis: the fp32 model's outputs on the {len(val_inputs)} validation "
            f"input(s) hold {bad_ref} NaN / inf values, so no SQNR can be measured; check the "
            "model and its inputs"
        )
    base_score = score_fn(model, "fp32") if score_fn else None
    rows = []
    variants: list[tuple[str, list[str]]] = [(g, [g]) for g in groups]
    variants.append(("(all)", list(groups)))
    if accept_all is not None:
        variants.insert(0, variants.pop())
    summary: dict[str, Any] = {"score_fp32": base_score, "per_group": "measured"}
    for name, only in variants:
        if progress:
            progress(name)
        graph = quantize_pt2e_xnnpack(model, tuple(val_inputs[0]), calib,
                                      what=f"sensitivity of {name}", keep_fp32=keep_fp32,
                                      only_modules=only)
        out = _outputs(graph, val_inputs)
        q = sqnr_db(ref, out)
        if math.isnan(q):
            log.warning("int8 sensitivity %s: SQNR cannot be measured (the int8 graph produced "
                        "%d NaN / inf output values)%s", name, _non_finite(out),
                        "" if name == "(all)" else "; choose_fp32 keeps this group fp32")
        score = score_fn(graph, f"int8:{name}") if score_fn else None
        drop = None if score is None or base_score is None else base_score - score
        log.info("int8 sensitivity %s: SQNR %.1f dB, score drop %s", name, q, drop)
        if name != "(all)":
            rows.append({"layer": name, "sqnr_db": q, "score": score, "score_drop": drop})
            continue
        summary.update({"sqnr_db_all": q, "score_all": score, "score_drop_all": drop})
        if accept_all is not None and accept_all(q, drop):
            summary["per_group"] = "skipped: every group int8 together passed"
            break
    return rows, summary


def predicted_sqnr_db(sqnrs: Sequence[float]) -> float:
    """SQNR of quantizing several groups whose noises add independently,
    ``-10 log10 Σ 10^(-SQNR_g / 10)``.

    A group at ``inf`` (quantizing it changed nothing) adds no noise; one at ``-inf`` makes the
    prediction ``-inf``. NaN (not measured) cannot be predicted from and is a
    :class:`CompressError`: :func:`choose_fp32` keeps such groups fp32 before predicting.
    """
    vals = [float(s) for s in sqnrs]
    bad = [i for i, s in enumerate(vals) if math.isnan(s)]
    if bad:
        raise CompressError(
            f"predicted SQNR: the SQNRs at positions {bad} are NaN (not measured); a group whose "
            "SQNR cannot be measured must stay fp32, not be counted as noise-free"
        )
    if any(s == -math.inf for s in vals):
        return -math.inf
    exps = [-s / 10.0 for s in vals if s != math.inf]  # log10 of each group's noise share
    if not exps:
        return math.inf
    top = max(exps)  # factored out so that very low SQNRs do not overflow
    return -10.0 * (top + math.log10(sum(10.0 ** (e - top) for e in exps)))


def choose_fp32(
    rows: list[dict[str, Any]],
    *,
    score_threshold: float,
    sqnr_floor_db: float,
    margin_db: float = 3.0,
) -> list[str]:
    """Groups to keep fp32 (see the module docstring); marks each row's ``kept_fp32``.

    Order of the decisions: groups whose SQNR or score drop is NaN (not measurable) stay fp32,
    with a logged warning; so do groups whose score drop exceeds `score_threshold`; then the
    noisiest of the rest until the predicted SQNR clears ``sqnr_floor_db + margin_db``. A row
    whose ``sqnr_db`` is not a number is a :class:`CompressError` naming the group.
    """
    for r in rows:
        v = r.get("sqnr_db")
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise CompressError(
                f"int8 plan: group {r.get('layer')!r} has sqnr_db={v!r}; expected a number "
                "in dB (inf, -inf and NaN allowed)"
            )
    keep: list[str] = []
    for r in rows:
        drop = r.get("score_drop")
        if math.isnan(r["sqnr_db"]):
            log.warning("int8 plan: group %r stays fp32 because its SQNR could not be measured "
                        "(NaN: NaN / inf outputs during the sensitivity analysis)", r["layer"])
            keep.append(r["layer"])
        elif drop is not None and math.isnan(drop):
            log.warning("int8 plan: group %r stays fp32 because its score drop could not be "
                        "measured (NaN score)", r["layer"])
            keep.append(r["layer"])
        elif drop is not None and drop > score_threshold:
            keep.append(r["layer"])
    quantized = sorted((r for r in rows if r["layer"] not in keep), key=lambda r: r["sqnr_db"])
    while quantized and predicted_sqnr_db([r["sqnr_db"] for r in quantized]) < (
        sqnr_floor_db + margin_db
    ):
        keep.append(quantized.pop(0)["layer"])
    for r in rows:
        r["kept_fp32"] = r["layer"] in keep
    return keep
