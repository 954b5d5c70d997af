"""Architecture evolution: remove and duplicate blocks by score-per-latency value.

LHQ-SVC §III.A (after SnapFusion, Algorithm 1): once robust training (eq. 1) has made every
block skippable, each action on the current architecture is scored by

    value(remove b)    = (score(A) - score(A \\ b)) / (lat(A) - lat(A \\ b))  # lost per ms saved
    value(duplicate b) = (score(A + b) - score(A)) / (lat(A + b) - lat(A))  # won per ms spent

While the predicted latency is over the budget, the block with the *lowest* removal value is
removed ("modules that contribute to latency but not performance"); once under budget, the block
with the *highest* duplication value ("the highest performance contribution") is duplicated if
the result still fits — as the paper states it, whatever the sign of the value; with
``require_gain`` only a duplication that raises the score is taken. A short robust fine-tune runs
between rounds.

When under budget but no duplication fits, a **swap** is tried (``swap=True``): duplicate block
d (its value as above, though the copy alone overshoots) and then remove block r, the pair
chosen by the best score among pairs that fit; it is taken only if that score beats the current
one, so swaps strictly improve the score and the search cannot cycle. Both halves are recorded
as their own decisions. The search stops when under budget and neither a duplication nor an
improving swap fits (convergence), or after ``max_rounds``.

The model only needs the evolvable-block API: ``block_names()``, ``remove_block(name)``,
``duplicate_block(name)`` and ``architecture``. The history is a list of plain records and
:func:`replay` re-applies it to a fresh teacher.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from compress.errors import CompressError

log = logging.getLogger(__name__)


class Evolvable(Protocol):
    architecture: list[str]

    def block_names(self) -> list[str]: ...
    def remove_block(self, name: str) -> None: ...
    def duplicate_block(self, name: str) -> None: ...


@dataclass
class Candidate:
    architecture: list[str]
    score: float
    latency_ms: float
    action: str = "start"
    block: str = ""
    round: int = 0


@dataclass
class EvolutionResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    evaluated: list[Candidate] = field(default_factory=list)
    final_score: float = 0.0
    final_latency_ms: float = 0.0
    met_budget: bool = False
    converged: bool = False


def apply_action(model: Evolvable, action: str, block: str) -> None:
    if action == "remove":
        model.remove_block(block)
    elif action == "duplicate":
        model.duplicate_block(block)
    else:
        raise CompressError(f"evolution: unknown action {action!r}; valid: remove, duplicate")


def replay(model: Evolvable, history: list[dict[str, Any]]) -> Evolvable:
    """Apply a recorded history (in order) to `model` in place and return it."""
    for rec in history:
        if rec.get("action") not in ("remove", "duplicate"):
            continue
        names = model.block_names()
        if rec["block"] not in names:
            raise CompressError(
                f"evolution replay: round {rec.get('round')}: no block {rec['block']!r} "
                f"in {names}; the history does not fit this model"
            )
        apply_action(model, rec["action"], rec["block"])
    return model


def evolve(
    model: Evolvable,
    *,
    score_fn: Callable[[Any], float],
    latency_fn: Callable[[list[str]], float],
    budget_ms: float,
    max_rounds: int = 8,
    finetune_fn: Callable[[Any, int], None] | None = None,
    min_blocks: int = 1,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    require_gain: bool = False,
    swap: bool = True,
) -> EvolutionResult:
    """Evolve `model` in place under `budget_ms` (see the module docstring).

    ``score_fn(model) -> float`` (higher is better) evaluates a candidate;
    ``latency_fn(architecture) -> ms`` predicts its latency (e.g. from a LatencyTable);
    ``finetune_fn(model, round)`` runs a short robust fine-tune after each applied action.
    """
    res = EvolutionResult()
    cur_score = score_fn(model)
    cur_lat = latency_fn(list(model.architecture))
    res.evaluated.append(Candidate(list(model.architecture), cur_score, cur_lat))
    for rnd in range(1, max_rounds + 1):
        over = cur_lat > budget_ms
        names = model.block_names()
        options: list[tuple[float, str, str, float, float]] = []
        kinds = ("remove",) if over else ("duplicate",)
        for action in kinds:
            if action == "remove" and len(names) <= min_blocks:
                continue
            for name in names:
                cand = copy.deepcopy(model)
                apply_action(cand, action, name)
                lat = latency_fn(list(cand.architecture))
                score = score_fn(cand)
                res.evaluated.append(
                    Candidate(list(cand.architecture), score, lat, action, name, rnd)
                )
                d_lat = abs(cur_lat - lat)
                if d_lat <= 1e-9:
                    continue
                if action == "remove":
                    value = (cur_score - score) / d_lat
                else:
                    if cur_lat + d_lat > budget_ms:
                        continue  # would not fit
                    value = (score - cur_score) / d_lat
                options.append((value, action, name, score, lat))
        if not options and not over and swap:
            pair = _best_swap(model, score_fn, latency_fn, budget_ms, cur_score, cur_lat, rnd,
                              res, min_blocks)
            if pair is not None:
                for rec in pair:
                    apply_action(model, rec["action"], rec["block"])
                if finetune_fn is not None:
                    finetune_fn(model, rnd)
                    pair[-1]["score"] = score_fn(model)
                pair[-1]["architecture"] = list(model.architecture)
                for rec in pair:
                    res.history.append(rec)
                    log.info("evolve round %d: %s %s (value %.4g, swap)", rnd, rec["action"],
                             rec["block"], rec["value"])
                    if on_round is not None:
                        on_round(rec)
                cur_score, cur_lat = pair[-1]["score"], pair[-1]["latency_ms"]
                continue
        if not options:
            res.converged = not over
            break
        if over:
            value, action, name, score, lat = min(options, key=lambda o: o[0])
        else:
            value, action, name, score, lat = max(options, key=lambda o: o[0])
            if require_gain and value <= 0:
                res.converged = True
                break
        apply_action(model, action, name)
        if finetune_fn is not None:
            finetune_fn(model, rnd)
            score = score_fn(model)
        rec = {
            "round": rnd,
            "action": action,
            "block": name,
            "value": value,
            "score": score,
            "latency_ms": lat,
            "architecture": list(model.architecture),
        }
        res.history.append(rec)
        log.info("evolve round %d: %s %s (value %.4g) -> %.2f ms", rnd, action, name, value, lat)
        if on_round is not None:
            on_round(rec)
        cur_score, cur_lat = score, lat
    res.final_score, res.final_latency_ms = cur_score, cur_lat
    res.met_budget = cur_lat <= budget_ms
    return res


def _best_swap(
    model: Evolvable,
    score_fn: Callable[[Any], float],
    latency_fn: Callable[[list[str]], float],
    budget_ms: float,
    cur_score: float,
    cur_lat: float,
    rnd: int,
    res: EvolutionResult,
    min_blocks: int,
) -> list[dict[str, Any]] | None:
    """The best improving (duplicate d, remove r) pair under the budget, as two records."""
    best: tuple[float, list[dict[str, Any]]] | None = None
    start = list(model.architecture)
    for d in model.block_names():
        dup = copy.deepcopy(model)
        apply_action(dup, "duplicate", d)
        lat_d = latency_fn(list(dup.architecture))
        score_d = score_fn(dup)
        res.evaluated.append(Candidate(list(dup.architecture), score_d, lat_d, "duplicate", d,
                                       rnd))
        if lat_d - cur_lat <= 1e-9 or len(dup.block_names()) <= min_blocks:
            continue
        for r in dup.block_names():
            cand = copy.deepcopy(dup)
            apply_action(cand, "remove", r)
            if list(cand.architecture) == start:
                continue  # undoes the duplication
            lat = latency_fn(list(cand.architecture))
            if lat > budget_ms or lat_d - lat <= 1e-9:
                continue
            score = score_fn(cand)
            res.evaluated.append(Candidate(list(cand.architecture), score, lat, "remove", r,
                                           rnd))
            if score <= cur_score or (best is not None and score <= best[0]):
                continue
            best = (score, [
                {"round": rnd, "action": "duplicate", "block": d,
                 "value": (score_d - cur_score) / (lat_d - cur_lat), "score": score_d,
                 "latency_ms": lat_d, "architecture": list(dup.architecture), "swap": True},
                {"round": rnd, "action": "remove", "block": r,
                 "value": (score_d - score) / (lat_d - lat), "score": score,
                 "latency_ms": lat, "architecture": list(cand.architecture), "swap": True},
            ])
    return None if best is None else best[1]
