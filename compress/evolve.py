"""Architecture evolution: remove, duplicate and narrow units by score-per-latency value.

LHQ-SVC §III.A, after SnapFusion §3 (Algorithm 1): once robust training (LHQ-SVC eq. 1) has made
units skippable, each action on the current architecture A is valued on the target's latency:

    value(remove u)    = (score(A) - score(A \\ u)) / (lat(A) - lat(A \\ u))   # lost per ms saved
    value(narrow u)    = (score(A) - score(A ▽ u)) / (lat(A) - lat(A ▽ u))
    value(duplicate u) = (score(A + u) - score(A)) / (lat(A + u) - lat(A))   # won per ms spent

Units are those of the whole on-device path (a recipe's ``units``), not just one component.
While the predicted latency is over the budget the action with the *lowest* value is applied
("modules that contribute to latency but not performance"); an action that raises the score
counts as costing nothing, and ties — several actions that cost no measurable score — go to
the larger saving. Under the budget the most valuable duplicate that
fits is applied — its copy initialised from the original and briefly fine-tuned before it is
valued, as SnapFusion does — if it gains score beyond the noise. When no copy fits, a **swap**
is tried: duplicate a valuable unit and pay for it with the cheapest removal that brings the
program back under the budget, taken only if the pair gains score. The search stops when
neither gains, or after ``max_rounds``. A short fine-tune follows every decision.

Honest values: a score difference smaller than its noise counts as zero. The noise is the larger
of the paired standard error of the two models' per-item differences
(:meth:`ScoreResult.paired_noise`) and the start model's own standard error over the
validation items (a paired estimate from a handful of items is itself noisy). Every
evaluated candidate is kept (the Pareto plot); the result is the **best applied architecture
that meets the budget** (highest score), or, when none does, the fastest one with
``budget_met = False``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from compress.errors import CompressError
from compress.recipes.base import Action, ScoreResult, Unit

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """One evaluated architecture (the start, every candidate, every applied state)."""

    round: int
    action: str  # "start", "remove", "duplicate", "narrow", "applied"
    unit: str
    kind: str
    component: str
    score: float
    noise: float
    latency_ms: float
    architecture: dict[str, Any]


@dataclass
class Decision:
    """One applied action (an entry of the evolution history)."""

    round: int
    action: str
    unit: str
    kind: str
    component: str
    value: float
    score: float
    latency_ms: float
    architecture: dict[str, Any]
    score_before_finetune: float = math.nan


@dataclass
class EvolutionResult:
    history: list[Decision] = field(default_factory=list)
    evaluated: list[Candidate] = field(default_factory=list)
    budget_ms: float = 0.0
    chosen_round: int = 0  # index of the chosen state: 0 = the start, k = after round k
    chosen_decisions: int = 0  # how many decisions of the history the chosen state contains
    budget_met: bool = False
    converged: bool = False
    final_score: float = 0.0
    final_noise: float = 0.0
    final_latency_ms: float = 0.0
    start_score: float = 0.0
    start_latency_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"history": [asdict(d) for d in self.history],
                "evaluated": [asdict(c) for c in self.evaluated],
                "budget_ms": self.budget_ms, "chosen_round": self.chosen_round,
                "chosen_decisions": self.chosen_decisions,
                "budget_met": self.budget_met, "converged": self.converged,
                "final_score": self.final_score, "final_noise": self.final_noise,
                "final_latency_ms": self.final_latency_ms, "start_score": self.start_score,
                "start_latency_ms": self.start_latency_ms}


@dataclass
class Evolver:
    """The callbacks the loop needs (a recipe and a latency table provide them)."""

    units: Callable[[nn.Module], list[Unit]]
    apply: Callable[[nn.Module, Action], None]
    architecture: Callable[[nn.Module], dict[str, Any]]
    score: Callable[[nn.Module], ScoreResult]
    latency: Callable[[nn.Module], float]  # predicted ms; CompressError when unpredictable
    finetune: Callable[[nn.Module, Action, int], None] | None = None
    finetune_duplicate: Callable[[nn.Module, Action], None] | None = None


def significant(delta: float, noise: float) -> float:
    """`delta`, or 0 when its magnitude is within `noise`."""
    return 0.0 if abs(delta) <= noise else delta


def _candidate(ev: Evolver, model: nn.Module, action: Action
               ) -> tuple[nn.Module, float] | None:
    cand = copy.deepcopy(model)
    try:
        ev.apply(cand, action)
        lat = ev.latency(cand)
    except (CompressError, ValueError) as exc:
        log.info("evolve: %s %s not evaluated: %s", action.kind, action.unit, exc)
        return None
    return cand, lat


def evolve(
    model: nn.Module,
    ev: Evolver,
    *,
    budget_ms: float,
    max_rounds: int = 8,
    narrow_factor: float = 0.75,
    duplicate_candidates: int = 4,
    swap_candidates: int = 2,
    on_event: Callable[[str], None] | None = None,
) -> tuple[nn.Module, EvolutionResult]:
    """Evolve a copy of `model` under `budget_ms` (see the module docstring).

    Returns the chosen model (best applied state under the budget, else the fastest) and the
    result with every evaluated candidate and decision.
    """
    if budget_ms <= 0:
        raise CompressError(f"evolve: budget_ms must be > 0, got {budget_ms}")
    say = on_event or (lambda s: None)
    res = EvolutionResult(budget_ms=budget_ms)
    model = copy.deepcopy(model)
    cur = ev.score(model)
    cur_lat = ev.latency(model)
    floor = cur.noise
    res.start_score, res.start_latency_ms = cur.value, cur_lat
    res.evaluated.append(Candidate(0, "start", "", "", "", cur.value, cur.noise, cur_lat,
                                   ev.architecture(model)))
    states: list[tuple[nn.Module, ScoreResult, float, int]] = [
        (copy.deepcopy(model), cur, cur_lat, 0)]
    removal_value: dict[str, float] = {}
    for rnd in range(1, max_rounds + 1):
        over = cur_lat > budget_ms
        units = ev.units(model)
        options: list[tuple[float, float, Action, Unit, ScoreResult, float]] = []
        if over:
            for u in units:
                for kind in ("remove", "narrow"):
                    if kind not in u.actions:
                        continue
                    action = Action(kind, u.name, narrow_factor)
                    got = _candidate(ev, model, action)
                    if got is None:
                        continue
                    cand, lat = got
                    saved = cur_lat - lat
                    if saved <= 1e-6:
                        continue
                    s = ev.score(cand)
                    res.evaluated.append(Candidate(rnd, kind, u.name, u.kind, u.component,
                                                   s.value, s.noise, lat,
                                                   ev.architecture(cand)))
                    # a removal that raises the score is as free as one that costs nothing
                    # measurable: ties at 0 go to the larger saving, so the budget is reached
                    # in few rounds instead of by tiny lucky removals
                    lost = max(0.0, significant(cur.value - s.value,
                                                max(floor, cur.paired_noise(s))))
                    value = lost / saved
                    if kind == "remove":
                        removal_value[u.name] = value
                    options.append((value, -saved, action, u, s, lat))
            if not options:
                say(f"round {rnd}: over budget and no action saves latency")
                break
            value, _, action, unit, s, lat = min(options, key=lambda o: (o[0], o[1]))
        else:
            ranked = sorted((u for u in units if "duplicate" in u.actions),
                            key=lambda u: -removal_value.get(u.name, 0.0))
            for u in ranked[: max(0, duplicate_candidates)]:
                action = Action("duplicate", u.name)
                got = _candidate(ev, model, action)
                if got is None:
                    continue
                cand, lat = got
                spent = lat - cur_lat
                if lat > budget_ms or spent <= 1e-6:
                    continue
                if ev.finetune_duplicate is not None:
                    ev.finetune_duplicate(cand, action)  # SnapFusion: value a trained copy
                s = ev.score(cand)
                res.evaluated.append(Candidate(rnd, "duplicate", u.name, u.kind, u.component,
                                               s.value, s.noise, lat, ev.architecture(cand)))
                gain = significant(s.value - cur.value, max(floor, cur.paired_noise(s)))
                if gain <= 0:
                    continue  # no measurable gain: a copy would only cost latency
                options.append((gain / spent, spent, action, u, s, lat))
            if not options and swap_candidates > 0:
                pair = _swap(ev, model, units, removal_value, cur, cur_lat, budget_ms, floor,
                             narrow_factor, swap_candidates, rnd, res)
                if pair is not None:
                    model, cur, cur_lat = pair
                    states.append((copy.deepcopy(model), cur, cur_lat, len(res.history)))
                    say(f"round {rnd}: swap {res.history[-2].unit} (duplicate) + "
                        f"{res.history[-1].action} {res.history[-1].unit} -> score "
                        f"{cur.value:.4f}, {cur_lat:.2f} ms")
                    continue
            if not options:
                res.converged = True
                say(f"round {rnd}: under budget, no duplicate (or swap) that fits gains score; "
                    "done")
                break
            value, _, action, unit, s, lat = max(options, key=lambda o: (o[0], -o[1]))
        ev.apply(model, action)
        before = s.value
        if ev.finetune is not None:
            ev.finetune(model, action, rnd)
            s = ev.score(model)
        lat = ev.latency(model)
        arch = ev.architecture(model)
        dec = Decision(rnd, action.kind, unit.name, unit.kind, unit.component, value, s.value,
                       lat, arch, before)
        res.history.append(dec)
        res.evaluated.append(Candidate(rnd, "applied", unit.name, unit.kind, unit.component,
                                       s.value, s.noise, lat, arch))
        say(f"round {rnd}: {action.kind} {unit.name} (value {value:.4g}/ms) -> score "
            f"{s.value:.4f}, {lat:.2f} ms")
        cur, cur_lat = s, lat
        states.append((copy.deepcopy(model), cur, cur_lat, len(res.history)))
    idx = choose_state([(sc.value, lat) for _, sc, lat, _ in states], budget_ms)
    chosen, sc, lat, n_dec = states[idx]
    res.chosen_round = idx
    res.chosen_decisions = n_dec
    res.budget_met = lat <= budget_ms
    res.final_score, res.final_noise, res.final_latency_ms = sc.value, sc.noise, lat
    return chosen, res


def _swap(ev: Evolver, model: nn.Module, units: list[Unit], removal_value: dict[str, float],
          cur: ScoreResult, cur_lat: float, budget_ms: float, floor: float, factor: float,
          k: int, rnd: int, res: EvolutionResult
          ) -> tuple[nn.Module, ScoreResult, float] | None:
    """Under budget with no room for a copy: duplicate one of the `k` most valuable units (its
    copy fine-tuned) and pay for it with the cheapest remove / narrow that brings the program
    back under the budget (tried in the order of the last removal values). Taken only when the
    pair gains score beyond the noise; both halves are recorded as decisions."""
    for u in units:  # value every removal once when no over-budget round did
        if u.name in removal_value or "remove" not in u.actions:
            continue
        got = _candidate(ev, model, Action("remove", u.name))
        if got is not None and cur_lat - got[1] > 1e-6:
            s_r = ev.score(got[0])
            res.evaluated.append(Candidate(rnd, "remove", u.name, u.kind, u.component,
                                           s_r.value, s_r.noise, got[1],
                                           ev.architecture(got[0])))
            removal_value[u.name] = (cur.value - s_r.value) / (cur_lat - got[1])
    dups = sorted((u for u in units if "duplicate" in u.actions),
                  key=lambda u: -removal_value.get(u.name, 0.0))[:k]
    best: tuple[float, Any] | None = None
    for d in dups:
        got = _candidate(ev, model, Action("duplicate", d.name))
        if got is None:
            continue
        dup, lat_d = got
        if ev.finetune_duplicate is not None:
            ev.finetune_duplicate(dup, Action("duplicate", d.name))
        s_d = ev.score(dup)
        pays = sorted((u for u in ev.units(dup) if u.name != d.name
                       and ({"remove", "narrow"} & set(u.actions))),
                      key=lambda u: removal_value.get(u.name, math.inf))
        for r in pays[:3]:
            kind = "remove" if "remove" in r.actions else "narrow"
            got2 = _candidate(ev, dup, Action(kind, r.name, factor))
            if got2 is None:
                continue
            cand, lat = got2
            if lat > budget_ms:
                continue
            s = ev.score(cand)
            res.evaluated.append(Candidate(rnd, f"swap:{kind}", f"{d.name}+{r.name}", r.kind,
                                           r.component, s.value, s.noise, lat,
                                           ev.architecture(cand)))
            gain = significant(s.value - cur.value, max(floor, cur.paired_noise(s)))
            if gain > 0 and (best is None or s.value > best[0]):
                best = (s.value, (d, r, kind, dup, lat_d, s_d, cand, s, lat))
    if best is None:
        return None
    d, r, kind, dup, lat_d, s_d, cand, s, lat = best[1]
    if ev.finetune is not None:
        ev.finetune(cand, Action(kind, r.name, factor), rnd)
        s = ev.score(cand)
        lat = ev.latency(cand)
    res.history.append(Decision(rnd, "duplicate", d.name, d.kind, d.component,
                                (s_d.value - cur.value) / max(lat_d - cur_lat, 1e-9),
                                s_d.value, lat_d, ev.architecture(dup)))
    res.history.append(Decision(rnd, kind, r.name, r.kind, r.component,
                                (s_d.value - s.value) / max(lat_d - lat, 1e-9), s.value, lat,
                                ev.architecture(cand)))
    res.evaluated.append(Candidate(rnd, "applied", f"{d.name}+{r.name}", r.kind, r.component,
                                   s.value, s.noise, lat, ev.architecture(cand)))
    return cand, s, lat


def choose_state(states: list[tuple[float, float]], budget_ms: float) -> int:
    """Index of the best ``(score, latency)`` state under the budget (highest score, then the
    faster), or of the fastest state when none meets it."""
    if not states:
        raise CompressError("evolve: no state to choose from")
    under = [i for i, (_, lat) in enumerate(states) if lat <= budget_ms]
    if under:
        return max(under, key=lambda i: (states[i][0], -states[i][1]))
    return min(range(len(states)), key=lambda i: states[i][1])


def replay(model: nn.Module, history: list[dict[str, Any]],
           apply: Callable[[nn.Module, Action], None]) -> nn.Module:
    """Apply recorded decisions (``{action, unit}``) in order to `model` in place."""
    for rec in history:
        apply(model, Action(rec["action"], rec["unit"], float(rec.get("factor", 0.75))))
    return model
