"""Architecture evolution: remove, duplicate and narrow units by score-per-latency value.

LHQ-SVC §III.A, after SnapFusion §3 (Algorithm 1): once robust training (LHQ-SVC eq. 1) has made
units skippable, each action on the current architecture A is valued on the target's latency:

    value(remove u)    = (score(A) - score(A \\ u)) / (lat(A) - lat(A \\ u))   # lost per ms saved
    value(narrow u)    = (score(A) - score(A ▽ u)) / (lat(A) - lat(A ▽ u))
    value(duplicate u) = (score(A + u) - score(A)) / (lat(A + u) - lat(A))   # won per ms spent

Units are those of the whole on-device path (a recipe's ``units``), not just one component.
While the predicted latency is over the budget the action with the *lowest* value is applied
("modules that contribute to latency but not performance"). The loss in that value is taken
pessimistically: the measured loss (zero when within the noise, or a gain) plus the noise, so
among actions that cost no measurable score the larger saving goes first. (Valued at a bare
zero, the demo spent eight of twelve rounds on 0.1 ms removals and missed a 0.5 budget.) A
saving counts only up to the remaining overshoot: of the actions that close the gap, the one
that loses least wins (per-unit values alone once narrowed the whole conditioner, -0.057 val
sim_stoi as valued, to close a 38 k-parameter gap that removing a content layer, -0.004,
closed).

With ``batch_free``, a round whose chosen action costs no measurable score also applies the
round's other free actions (one per component, fine-tuned narrowings excepted) until the gap
is closed, when the combination, scored once, is free too: DSP iterations, the F0 rate and
the harmonics then go in one round instead of one round each.

Under the budget the most valuable duplicate that fits is applied — its copy initialised from
the original and briefly fine-tuned before it is valued, as SnapFusion does — if it gains score
beyond the noise over the current model given the same fine-tune (so the fine-tune's own gain is
not credited to the copy). A channel-narrowed candidate (kind ``width``) is briefly fine-tuned
before it is valued too: slicing channels out of a trained layer loses what a few dozen steps
recover (demo conditioner 256 -> 128 channels: sim_stoi 0.777 -> 0.608 as sliced, 0.776 after 80
steps), and valuing it as sliced would never pick it. The chosen candidate is adopted as valued.
When no copy fits, a **swap** is tried: duplicate a valuable unit and pay for it with the
cheapest removal that brings the program back under the budget, taken only if the pair gains
score. The search stops when neither gains, or after ``max_rounds`` rounds under the budget;
rounds over it do not count (the budget is a hard limit, and every over-budget decision shrinks
the model, so they end), up to a safety cap of 4 x ``max_rounds`` rounds in all. A short
fine-tune follows every decision.

An optional **parameter budget** (``params_budget``, e.g. 0.6 of the teacher's parameters for a
download / memory limit) joins the latency budget: a state meets the budget only when both hold.
Once the latency fits but the parameters do not, removals and narrowings are valued per million
parameters saved instead of per ms (``value_unit``), so the search turns to the weighted layers
the latency phase left alone (e.g. DSP iterations cost time but hold no weights). Duplicates and
swaps must keep both budgets.

Honest values: a score difference smaller than its noise counts as zero. The noise is the paired
standard error of the two models' per-item differences (:meth:`ScoreResult.paired_noise`): both
are scored on the same validation items, so the spread between items (the models' own standard
errors, about 0.018 sim_stoi on 4 demo clips) is not noise of the comparison. Flooring at that
spread made every single step of the demo's parameter phase "free" while five of them together
cost 0.04. A decision's fine-tune is kept only when it does not lower the val score. Every
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
    params: int = 0


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
    params: int = 0
    value_unit: str = "score/ms"  # "score/Mparam" when only the parameter budget was over


@dataclass
class EvolutionResult:
    history: list[Decision] = field(default_factory=list)
    evaluated: list[Candidate] = field(default_factory=list)
    budget_ms: float = 0.0
    params_budget: int | None = None
    chosen_round: int = 0  # index of the chosen state: 0 = the start, k = after round k
    chosen_decisions: int = 0  # how many decisions of the history the chosen state contains
    budget_met: bool = False
    converged: bool = False
    final_score: float = 0.0
    final_noise: float = 0.0
    final_latency_ms: float = 0.0
    final_params: int = 0
    start_score: float = 0.0
    start_latency_ms: float = 0.0
    start_params: int = 0
    screened_out: int = 0  # candidates dropped after screening (never scored in full)

    def to_json(self) -> dict[str, Any]:
        return {"history": [asdict(d) for d in self.history],
                "evaluated": [asdict(c) for c in self.evaluated],
                "budget_ms": self.budget_ms, "params_budget": self.params_budget,
                "chosen_round": self.chosen_round,
                "chosen_decisions": self.chosen_decisions,
                "budget_met": self.budget_met, "converged": self.converged,
                "final_score": self.final_score, "final_noise": self.final_noise,
                "final_latency_ms": self.final_latency_ms, "final_params": self.final_params,
                "start_score": self.start_score, "start_latency_ms": self.start_latency_ms,
                "start_params": self.start_params, "screened_out": self.screened_out}


def _duplicate_order(units: list[Unit], removal_value: dict[str, float]) -> list[Unit]:
    """Units that can be duplicated, most valuable (costliest to remove) first — the most
    valuable unit of each component ahead of the rest, so that a few candidates (copies or
    swaps) span the whole path instead of one component's blocks."""
    ranked = sorted((u for u in units if "duplicate" in u.actions),
                    key=lambda u: -removal_value.get(u.name, 0.0))
    heads = {id(u) for u in {u.component: u for u in reversed(ranked)}.values()}
    return [u for u in ranked if id(u) in heads] + [u for u in ranked if id(u) not in heads]


Batched = list[tuple[float, Action, Unit]]  # (value, action, unit) of a batched free action


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
    finetune_narrow: Callable[[nn.Module, Action], None] | None = None
    params: Callable[[nn.Module], int] | None = None  # needed with a parameter budget
    # screening: `screen(m)` scores a few of the val items that `score` uses; over the budget
    # every candidate is screened and only the `screen_keep` best by screened value are
    # scored in full and decided on
    screen: Callable[[nn.Module], ScoreResult] | None = None
    screen_keep: int = 0
    # over the budget, apply every free action of a round together (see `_free_batch`)
    batch_free: bool = False

    def count(self, model: nn.Module) -> int:
        return int(self.params(model)) if self.params is not None else 0


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


def _removal_cost(cur: ScoreResult, s: ScoreResult, saved: float, gap: float) -> float:
    """Value of a removal / narrowing from `cur` to `s` that saves `saved` of a `gap` over the
    budget: the pessimistic cost of the module docstring. The loss (0 when within the paired
    noise, or a gain) plus the noise, so among actions that cost nothing measurable the larger
    saving wins and the budget is reached in few rounds instead of by tiny lucky removals; per
    unit saved up to the remaining overshoot, so of the actions that close the gap the one that
    loses least goes first."""
    noise = cur.paired_noise(s)
    lost = max(0.0, significant(cur.value - s.value, noise)) + noise
    return lost / min(saved, gap)


def _tuned_reference(ev: Evolver, model: nn.Module, cur: ScoreResult, action: Action,
                     cache: dict[str, ScoreResult]) -> ScoreResult:
    """What a duplicate's gain is measured against: the current model, or — when it scores
    higher — the current model given the same fine-tune as the copy (same component, steps and
    seed). A copy is fine-tuned before it is valued; without this control the fine-tune's own
    gain would be credited to the copy. Cached per component within a round."""
    if ev.finetune_duplicate is None:
        return cur
    comp = action.unit.split(".")[0]
    if comp not in cache:
        base = copy.deepcopy(model)
        ev.finetune_duplicate(base, action)
        tuned = ev.score(base)
        cache[comp] = tuned if tuned.value > cur.value else cur
    return cache[comp]


def _finetuned(ev: Evolver, model: nn.Module, action: Action, rnd: int, before: ScoreResult
               ) -> tuple[nn.Module, ScoreResult]:
    """`model` after the short fine-tune that follows a decision, or as it was when the
    fine-tune lowered its val score (a few steps on a noisy objective can; measured on the demo:
    six of nine fine-tunes after a decision lowered sim_stoi, by up to 0.021)."""
    assert ev.finetune is not None
    tuned = copy.deepcopy(model)
    ev.finetune(tuned, action, rnd)
    after = ev.score(tuned)
    if after.value >= before.value:
        return tuned, after
    log.info("evolve: fine-tune after %s %s lowered the score %.4f -> %.4f; not kept",
             action.kind, action.unit, before.value, after.value)
    return model, before


def evolve(
    model: nn.Module,
    ev: Evolver,
    *,
    budget_ms: float,
    max_rounds: int = 8,
    narrow_factor: float = 0.75,
    duplicate_candidates: int = 4,
    swap_candidates: int = 2,
    params_budget: int | None = None,
    on_event: Callable[[str], None] | None = None,
) -> tuple[nn.Module, EvolutionResult]:
    """Evolve a copy of `model` under `budget_ms` (and `params_budget` parameters when given;
    see the module docstring).

    Returns the chosen model (best applied state under the budget, else the fastest) and the
    result with every evaluated candidate and decision.
    """
    if budget_ms <= 0:
        raise CompressError(f"evolve: budget_ms must be > 0, got {budget_ms}")
    if params_budget is not None and (params_budget <= 0 or ev.params is None):
        raise CompressError(f"evolve: params_budget={params_budget} needs a count of "
                            "parameters (Evolver.params) and a budget > 0")
    p_budget = math.inf if params_budget is None else params_budget
    say = on_event or (lambda s: None)
    res = EvolutionResult(budget_ms=budget_ms, params_budget=params_budget)
    model = copy.deepcopy(model)
    cur = ev.score(model)
    cur_lat = ev.latency(model)
    cur_p = ev.count(model)
    res.start_score, res.start_latency_ms, res.start_params = cur.value, cur_lat, cur_p
    res.evaluated.append(Candidate(0, "start", "", "", "", cur.value, cur.noise, cur_lat,
                                   ev.architecture(model), cur_p))
    states: list[tuple[nn.Module, ScoreResult, float, int, int]] = [
        (copy.deepcopy(model), cur, cur_lat, 0, cur_p)]
    removal_value: dict[str, float] = {}
    rnd = under_rounds = 0
    while under_rounds < max_rounds and rnd < 4 * max(max_rounds, 1):
        rnd += 1
        batch: Batched = []  # free actions applied with the chosen one (`_free_batch`)
        lat_over = cur_lat > budget_ms
        over = lat_over or cur_p > p_budget
        under_rounds += 0 if over else 1
        unit_of_value = "score/ms" if lat_over or not over else "score/Mparam"
        gap = cur_lat - budget_ms if lat_over else (cur_p - p_budget) / 1e6
        units = ev.units(model)
        options: list[tuple[float, float, Action, Unit, ScoreResult, float, nn.Module]] = []
        if over:
            pending: list[tuple[Action, Unit, nn.Module, float, int, float]] = []
            for u in units:
                for kind in ("remove", "narrow"):
                    if kind not in u.actions:
                        continue
                    action = Action(kind, u.name, narrow_factor)
                    got = _candidate(ev, model, action)
                    if got is None:
                        continue
                    cand, lat = got
                    n_p = ev.count(cand)
                    # latency over: ms saved; only the parameters over: millions saved
                    saved = cur_lat - lat if lat_over else (cur_p - n_p) / 1e6
                    if saved <= 1e-6 or (not lat_over and lat > budget_ms):
                        continue
                    if (kind == "narrow" and u.kind == "width"
                            and ev.finetune_narrow is not None):
                        # channels sliced out of trained layers: value what training
                        # recovers (harmonics / render lobes drop DSP terms, no weights)
                        ev.finetune_narrow(cand, action)
                    pending.append((action, u, cand, lat, n_p, saved))
            if ev.screen is not None and 0 < ev.screen_keep < len(pending):
                # racing: every candidate on the first val items, the best in full
                cur_screen = ev.screen(model)  # the current model on the same few items
                ranked = sorted(range(len(pending)), key=lambda i: (
                    _removal_cost(cur_screen, ev.screen(pending[i][2]), pending[i][5], gap),
                    -pending[i][5]))
                res.screened_out += len(pending) - ev.screen_keep
                pending = [pending[i] for i in sorted(ranked[: ev.screen_keep])]
            for action, u, cand, lat, n_p, saved in pending:
                s = ev.score(cand)
                res.evaluated.append(Candidate(rnd, action.kind, u.name, u.kind, u.component,
                                               s.value, s.noise, lat,
                                               ev.architecture(cand), n_p))
                value = _removal_cost(cur, s, saved, gap)
                if action.kind == "remove" and lat_over:
                    removal_value[u.name] = value
                options.append((value, -saved, action, u, s, lat, cand))
            if not options:
                say(f"round {rnd}: over budget and no action saves "
                    f"{'latency' if lat_over else 'parameters'}")
                break
            best = min(options, key=lambda o: (o[0], o[1]))
            value, _, action, unit, s, lat, chosen_cand = best
            if ev.batch_free:
                got = _free_batch(ev, cur, best, options, budget_ms, p_budget, lat_over)
                if got is not None:
                    chosen_cand, s, lat, batch = got
        else:
            ranked = _duplicate_order(units, removal_value)
            tuned_refs: dict[str, ScoreResult] = {}
            for u in ranked[: max(0, duplicate_candidates)]:
                action = Action("duplicate", u.name)
                got = _candidate(ev, model, action)
                if got is None:
                    continue
                cand, lat = got
                spent = lat - cur_lat
                if lat > budget_ms or spent <= 1e-6 or ev.count(cand) > p_budget:
                    continue
                if ev.finetune_duplicate is not None:
                    ev.finetune_duplicate(cand, action)  # SnapFusion: value a trained copy
                s = ev.score(cand)
                res.evaluated.append(Candidate(rnd, "duplicate", u.name, u.kind, u.component,
                                               s.value, s.noise, lat, ev.architecture(cand),
                                               ev.count(cand)))
                ref = _tuned_reference(ev, model, cur, action, tuned_refs)
                gain = significant(s.value - ref.value, ref.paired_noise(s))
                if gain <= 0:
                    continue  # no measurable gain: a copy would only cost latency
                options.append((gain / spent, spent, action, u, s, lat, cand))
            if not options and swap_candidates > 0:
                pair = _swap(ev, model, units, removal_value, cur, cur_lat, budget_ms,
                             narrow_factor, swap_candidates, rnd, res, tuned_refs, p_budget)
                if pair is not None:
                    model, cur, cur_lat = pair
                    cur_p = ev.count(model)
                    states.append((copy.deepcopy(model), cur, cur_lat, len(res.history), cur_p))
                    say(f"round {rnd}: swap {res.history[-2].unit} (duplicate) + "
                        f"{res.history[-1].action} {res.history[-1].unit} -> score "
                        f"{cur.value:.4f}, {cur_lat:.2f} ms")
                    continue
            if not options:
                res.converged = True
                say(f"round {rnd}: under budget, no duplicate (or swap) that fits gains score; "
                    "done")
                break
            value, _, action, unit, s, lat, chosen_cand = max(options,
                                                              key=lambda o: (o[0], -o[1]))
        model = chosen_cand  # the candidate as valued (a copy or narrowing: already trained)
        before = s.value
        if ev.finetune is not None:
            model, s = _finetuned(ev, model, action, rnd, s)
        lat = ev.latency(model)
        n_p = ev.count(model)
        arch = ev.architecture(model)
        dec = Decision(rnd, action.kind, unit.name, unit.kind, unit.component, value, s.value,
                       lat, arch, before, n_p, unit_of_value)
        res.history.append(dec)
        for b_value, b_action, b_unit in batch:
            res.history.append(Decision(rnd, b_action.kind, b_unit.name, b_unit.kind,
                                        b_unit.component, b_value, s.value, lat, arch, before,
                                        n_p, unit_of_value))
        res.evaluated.append(Candidate(rnd, "applied", "+".join(
            [unit.name] + [b[2].name for b in batch]), unit.kind, unit.component, s.value,
            s.noise, lat, arch, n_p))
        say(f"round {rnd}: {action.kind} {unit.name} (value {value:.4g} "
            f"{dec.value_unit})"
            + "".join(f" + {b[1].kind} {b[2].name} (value {b[0]:.4g})" for b in batch)
            + (" (each free alone and together)" if batch else "")
            + f" -> score {s.value:.4f}, {lat:.2f} ms"
            + (f", {n_p / 1e6:.2f} M params" if params_budget is not None else ""))
        cur, cur_lat, cur_p = s, lat, n_p
        states.append((copy.deepcopy(model), cur, cur_lat, len(res.history), cur_p))
    idx = choose_state([(sc.value, lat, n_p) for _, sc, lat, _, n_p in states], budget_ms,
                       params_budget)
    chosen, sc, lat, n_dec, n_p = states[idx]
    res.chosen_round = idx
    res.chosen_decisions = n_dec
    res.budget_met = lat <= budget_ms and n_p <= p_budget
    res.final_score, res.final_noise, res.final_latency_ms = sc.value, sc.noise, lat
    res.final_params = n_p
    return chosen, res


def _free_batch(ev: Evolver, cur: ScoreResult, best: tuple[Any, ...], options: list[Any],
                budget_ms: float, p_budget: float, lat_over: bool
                ) -> tuple[nn.Module, ScoreResult, float, Batched] | None:
    """Over the budget, when the chosen action costs no measurable score, the other actions of
    the round that cost none either (each in a component of its own, none a fine-tuned
    narrowing) are applied with it, most saving first, until the gap is closed — one round
    instead of one per action (the demo spent four rounds, about a fifth of its search time,
    on Griffin-Lim iterations, the F0 rate and harmonics, each free). The combination is
    scored once and taken only when it too is free against the current model; otherwise
    the round applies the chosen action alone. Returns (model, score, latency, extra
    actions with their values) or None."""
    def free(sc: ScoreResult) -> bool:
        return significant(cur.value - sc.value, cur.paired_noise(sc)) <= 0

    if not free(best[4]):
        return None
    used = {best[3].component}
    extra = []
    for o in sorted(options, key=lambda o: o[1]):  # largest saving first
        if o is best or not free(o[4]) or o[3].component in used:
            continue
        if o[2].kind == "narrow" and o[3].kind == "width" and ev.finetune_narrow is not None:
            continue  # its valued weights were fine-tuned on another model
        used.add(o[3].component)
        extra.append(o)
    if not extra:
        return None
    combo, lat = best[6], best[5]  # never modified: each trial is a copy
    taken: Batched = []
    for o in extra:
        if (lat <= budget_ms) if lat_over else (ev.count(combo) <= p_budget):
            break  # the gap is closed
        trial = copy.deepcopy(combo)
        try:
            ev.apply(trial, o[2])
            t_lat = ev.latency(trial)
        except (CompressError, ValueError) as exc:
            log.info("evolve: batched %s %s not applied: %s", o[2].kind, o[3].name, exc)
            continue
        if (t_lat >= lat - 1e-6) if lat_over else (ev.count(trial) >= ev.count(combo)):
            continue
        combo, lat = trial, t_lat
        taken.append((o[0], o[2], o[3]))
    if not taken:
        return None
    s = ev.score(combo)
    if not free(s):
        log.info("evolve: %d free actions together cost %.4f; applying one",
                 len(taken) + 1, cur.value - s.value)
        return None
    return combo, s, lat, taken


def _swap(ev: Evolver, model: nn.Module, units: list[Unit], removal_value: dict[str, float],
          cur: ScoreResult, cur_lat: float, budget_ms: float, factor: float,
          k: int, rnd: int, res: EvolutionResult, tuned_refs: dict[str, ScoreResult],
          p_budget: float = math.inf) -> tuple[nn.Module, ScoreResult, float] | None:
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
    dups = _duplicate_order(units, removal_value)[:k]
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
            if lat > budget_ms or ev.count(cand) > p_budget:
                continue
            s = ev.score(cand)
            res.evaluated.append(Candidate(rnd, f"swap:{kind}", f"{d.name}+{r.name}", r.kind,
                                           r.component, s.value, s.noise, lat,
                                           ev.architecture(cand)))
            ref = _tuned_reference(ev, model, cur, Action("duplicate", d.name), tuned_refs)
            gain = significant(s.value - ref.value, ref.paired_noise(s))
            if gain > 0 and (best is None or s.value > best[0]):
                best = (s.value, (d, r, kind, dup, lat_d, s_d, cand, s, lat))
    if best is None:
        return None
    d, r, kind, dup, lat_d, s_d, cand, s, lat = best[1]
    if ev.finetune is not None:
        cand, s = _finetuned(ev, cand, Action(kind, r.name, factor), rnd, s)
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


def choose_state(states: list[tuple[float, float]] | list[tuple[float, float, int]],
                 budget_ms: float, params_budget: int | None = None) -> int:
    """Index of the best ``(score, latency[, params])`` state within the budget(s) (highest
    score, then the faster), or, when none meets them, of the fastest state among those within
    the parameter budget (of the fastest of all when none is)."""
    if not states:
        raise CompressError("evolve: no state to choose from")
    p_budget = math.inf if params_budget is None else params_budget
    fits_p = [i for i, st in enumerate(states) if len(st) < 3 or st[2] <= p_budget]
    under = [i for i in fits_p if states[i][1] <= budget_ms]
    if under:
        return max(under, key=lambda i: (states[i][0], -states[i][1]))
    pool = fits_p or list(range(len(states)))
    return min(pool, key=lambda i: states[i][1])


def replay(model: nn.Module, history: list[dict[str, Any]],
           apply: Callable[[nn.Module, Action], None]) -> nn.Module:
    """Apply recorded decisions (``{action, unit}``) in order to `model` in place."""
    for rec in history:
        apply(model, Action(rec["action"], rec["unit"], float(rec.get("factor", 0.75))))
    return model
