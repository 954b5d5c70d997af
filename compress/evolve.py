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
between rounds. The search stops when under budget and no duplication fits (convergence), or
after ``max_rounds``.

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
